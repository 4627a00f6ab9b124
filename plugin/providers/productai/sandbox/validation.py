"""Generate and upscale bodies, validated as ProductAI documents them (CONTRACTS.md §3). Pure.

The first problem becomes a 400 ApiError whose `details` names it. The documented rules: `model`
is one of seven, `image_url` a URL or an array of at most two for the three multi-reference
models, `prompt` required. Our additions are in contract.py ([ASSUME]).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from . import contract
from .errors import bad_request


@dataclass(frozen=True)
class GenerateRequest:
    model: str
    image_urls: tuple[str, ...]  # 1 or 2; the first is the product
    prompt: str

    @property
    def tokens(self) -> int:
        return contract.MODEL_TOKENS[self.model]


@dataclass(frozen=True)
class UpscaleRequest:
    image_url: str

    @property
    def tokens(self) -> int:
        return contract.UPSCALE_TOKENS


def parse_json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise bad_request("The request body must be valid JSON.") from None
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    return body


def _url(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise bad_request(f"{where} must be a URL string.")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise bad_request(f"{where} must be an absolute http(s) URL.")
    return value


def validate_generate(body: dict[str, Any]) -> GenerateRequest:
    model = body.get("model")
    if model is None:
        raise bad_request("model is required.")
    if not isinstance(model, str) or model not in contract.MODEL_TOKENS:
        raise bad_request(f"model must be one of: {', '.join(contract.MODEL_TOKENS)}.")
    image_url = body.get("image_url")
    if image_url is None:
        raise bad_request("image_url is required.")
    if isinstance(image_url, list):
        most = contract.MAX_REFERENCE_IMAGES if model in contract.MULTI_REFERENCE_MODELS else 1
        if not 1 <= len(image_url) <= most:
            raise bad_request(
                f"image_url accepts 1 to {most} image(s) for model {model}"
                + ("" if most > 1 else f"; only {', '.join(sorted(contract.MULTI_REFERENCE_MODELS))} take 2")
                + "."
            )
        urls = tuple(_url(url, f"image_url[{i}]") for i, url in enumerate(image_url))
    else:
        urls = (_url(image_url, "image_url"),)
    prompt = body.get("prompt")
    if prompt is None:
        raise bad_request("prompt is required.")
    if not isinstance(prompt, str) or not prompt.strip():
        raise bad_request("prompt must be a non-empty string.")
    if len(prompt) > contract.MAX_PROMPT_CHARS:
        raise bad_request(f"prompt must be at most {contract.MAX_PROMPT_CHARS} characters.")
    return GenerateRequest(model=model, image_urls=urls, prompt=prompt)


def validate_upscale(body: dict[str, Any]) -> UpscaleRequest:
    if body.get("image_url") is None:
        raise bad_request("image_url is required.")
    return UpscaleRequest(image_url=_url(body["image_url"], "image_url"))

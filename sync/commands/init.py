"""`retouch init`: from nothing to a checked config in one command.

Asks for what it was not given as a flag (on a terminal; without one, a missing answer is a usage
error): the shop, the Dev Dashboard app's Client ID and secret (or a legacy access token), the
provider and its API key. Writes the config with mode 0600 — or, with `--credentials-dir`, the
secrets into systemd credential files (0600) and a config that names none — then runs `check`.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import typer

from retouch.plugin.providers import registry

from ..config import (
    PROVIDER_KEY_CREDENTIAL,
    SHOPIFY_SECRET_CREDENTIAL,
    SHOPIFY_TOKEN_CREDENTIAL,
    ConfigError,
    load_settings,
)


class InitError(Exception):
    """A usage problem: one line, exit 2."""


@dataclass
class Answers:
    shop: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    access_token: str | None = None
    provider: str | None = None
    api_key: str | None = None
    provider_url: str | None = None


def shop_url(value: str) -> str:
    """ "my-store", "my-store.myshopify.com" or a URL -> the URL the config holds."""
    text = value.strip().rstrip("/")
    if "://" in text:
        return text
    if "." not in text and ":" not in text:
        text += ".myshopify.com"
    return "https://" + text


def complete(answers: Answers, *, interactive: bool) -> Answers:
    """Ask for every missing answer on a terminal; without one, name the first missing flag."""

    def ask(flag: str, text: str, *, secret: bool = False, default: str | None = None) -> str:
        if not interactive:
            raise InitError(f"init: {flag} is required (no terminal to ask on)")
        value = typer.prompt(text, hide_input=secret, default=default, show_default=default is not None)
        return str(value).strip()

    if not answers.shop:
        answers.shop = ask("--shop", "Shop (your-store.myshopify.com)")
    if answers.access_token and (answers.client_id or answers.client_secret):
        raise InitError("init: give either --client-id/--client-secret or --access-token, not both")
    if not answers.access_token:
        if not answers.client_id and interactive:
            answers.client_id = (
                ask(
                    "--client-id",
                    "Client ID (Dev Dashboard → your app → Settings; "
                    "leave empty for an app made in the admin before 2026)",
                    default="",
                )
                or None
            )
        if answers.client_id:
            if not answers.client_secret:
                answers.client_secret = ask("--client-secret", "Client secret", secret=True)
        elif answers.client_secret:
            raise InitError("init: --client-secret needs --client-id")
        else:
            answers.access_token = ask("--client-id", "Access token (shpat_…)", secret=True)
    plugins = registry.available()
    if not answers.provider:
        answers.provider = (
            ask("--provider", f"Provider ({', '.join(sorted(plugins))})", default="aigenstudio")
            if interactive
            else "aigenstudio"
        )
    if answers.provider not in plugins:
        raise InitError(
            f"init: --provider: unknown provider {answers.provider!r}; choose one of {', '.join(sorted(plugins))}"
        )
    if not answers.api_key:
        answers.api_key = ask("--api-key", f"{plugins[answers.provider].title} API key", secret=True)
    for name in ("client_id", "client_secret", "access_token", "api_key"):
        if getattr(answers, name) is not None and not getattr(answers, name):
            raise InitError(f"init: --{name.replace('_', '-')} is empty")
    return answers


def render(answers: Answers, *, credentials: bool) -> str:
    """The config text; with `credentials`, secrets are left to systemd credential files."""
    q = json.dumps  # a JSON string is a valid TOML basic string
    lines = [
        "# Written by `retouch init`; every key is described in config.example.toml.",
        "[shop]",
        f"url = {q(shop_url(answers.shop or ''))}",
    ]
    if answers.client_id:
        lines.append(f"client_id = {q(answers.client_id)}")
        lines.append(
            f"# client_secret: the systemd credential {SHOPIFY_SECRET_CREDENTIAL}"
            if credentials
            else f"client_secret = {q(answers.client_secret)}"
        )
    else:
        lines.append(
            f"# access_token: the systemd credential {SHOPIFY_TOKEN_CREDENTIAL}"
            if credentials
            else f"access_token = {q(answers.access_token)}"
        )
    lines += ["", "[provider]", f"name = {q(answers.provider)}"]
    lines.append(
        f"# api_key: the systemd credential {PROVIDER_KEY_CREDENTIAL}"
        if credentials
        else f"api_key = {q(answers.api_key)}"
    )
    if answers.provider_url:
        lines.append(f"base_url = {q(answers.provider_url)}")
    return "\n".join(lines) + "\n"


def credential_files(answers: Answers) -> dict[str, str]:
    shop = (
        {SHOPIFY_SECRET_CREDENTIAL: answers.client_secret or ""}
        if answers.client_id
        else {SHOPIFY_TOKEN_CREDENTIAL: answers.access_token or ""}
    )
    return {**shop, PROVIDER_KEY_CREDENTIAL: answers.api_key or ""}


def write_private(path: Path, text: str, *, force: bool) -> None:
    """Write `text` readable by its owner only (0600 from the first byte); never over a file unless `force`."""
    if path.exists() and not force:
        raise InitError(f"init: {path} exists; pass --force to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.init-{os.getpid()}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(temporary, 0o600)  # whatever the umask did
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


async def init_command(
    answers: Answers, *, out: Path, credentials_dir: Path | None, force: bool, yes: bool, run_check: bool
) -> int:
    interactive = sys.stdin.isatty() and not yes
    try:
        answers = complete(answers, interactive=interactive)
        if not force:
            for path in (
                [out, *(credentials_dir / name for name in credential_files(answers))] if credentials_dir else [out]
            ):
                if path.exists():
                    raise InitError(f"init: {path} exists; pass --force to overwrite it")
        if credentials_dir is not None:
            for name, value in credential_files(answers).items():
                write_private(credentials_dir / name, value + "\n", force=force)
        write_private(out, render(answers, credentials=credentials_dir is not None), force=force)
    except InitError as exc:
        typer.echo(str(exc), err=True)
        return 2
    typer.echo(f"config written to {out} (mode 0600)")
    environ = dict(os.environ)
    if credentials_dir is not None:
        environ["CREDENTIALS_DIRECTORY"] = str(credentials_dir.resolve())
        names = " ".join(
            f"LoadCredential={name}:{(credentials_dir / name).resolve()}" for name in credential_files(answers)
        )
        typer.echo(f"secrets written to {credentials_dir} (mode 0600); in the unit: {names}")
    try:
        settings = load_settings(out, environ=environ)
    except ConfigError as exc:
        typer.echo(f"config error: {exc}; edit {out} and run `retouch check`", err=True)
        return 2
    if not run_check:
        return 0
    from ..logs import configure
    from .check import check_command

    configure("warning", "console", settings.secrets())
    typer.echo("checking…")
    return await check_command(settings)

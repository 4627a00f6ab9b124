"""How deeply a JSON document nests, read without parsing it: a signed body may still be hostile,
and a few thousand nested brackets make Python's json (or whatever walks the result) raise
RecursionError — a 500 with a traceback instead of the sender's 400."""

from __future__ import annotations

import re

MAX_DEPTH = 32  # Shopify's product payloads nest 4 deep, the providers' events 3: far below this
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(rb"[\[\]{}]")


def nested_deeper_than(raw: bytes, limit: int = MAX_DEPTH) -> bool:
    """True when the brackets of `raw`, outside its strings, open more than `limit` deep (an
    unterminated string counts as text: json will refuse the body anyway)."""
    depth = 0
    for match in _BRACKETS.finditer(_STRING.sub(b"", raw)):
        if match.group() in b"[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False

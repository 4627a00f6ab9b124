"""The demo's before/after page (pure: rows in, HTML out; demo.py gathers the rows and writes the files).

Each row names the product by its title, the provider, what the image cost (credits, and money when
[budget] price_per_credit is set) and shows the merchant's photo and the result under a before/after
slider (a few lines of plain JavaScript, no build step). The "after" is what the provider's SANDBOX
made: a stand-in for the service's AI, and the page says so wherever an "after" is shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import jinja2


@dataclass(frozen=True)
class DemoRow:
    title: str  # the product's title (its id only when the title is unknown)
    filename: str  # the merchant's file name
    state: str  # done, failed, skipped
    cost: str  # "1 credit (0.10 EUR)", from cost_words
    before: str | None  # the page-relative path of the original, when it was kept
    after: str | None  # of the result, when the store shows one
    problem: str | None = None  # why it is not done, in the owner's words


def cost_words(
    credits: float, credit_unit: str, price_per_credit: float | None, currency: str, *, sandbox: bool
) -> str:
    """'1 credit (0.12 EUR); the sandbox charged nothing' — what the image costs with the real service."""
    amount = f"{credits:g}" if credits == int(credits) else f"{credits:.2f}"
    unit = credit_unit[:-1] if credits == 1 and credit_unit.endswith("s") else credit_unit
    words = f"{amount} {unit}"
    if price_per_credit is not None:
        words += f" ({credits * price_per_credit:.2f}{' ' + currency if currency else ''})"
    if sandbox:
        words += "; the sandbox charged nothing"
    return words


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("retouch.sync.commands", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_page(rows: list[DemoRow], *, provider: str, summary: str, priced: bool) -> str:
    """The whole page. `provider`: the service's name for people ("AI Gen Studio"); `summary`: one line
    on what the demo did; `priced`: whether [budget] price_per_credit was set (else a hint says how)."""
    return (
        _environment().get_template("demo.html.j2").render(rows=rows, provider=provider, summary=summary, priced=priced)
    )

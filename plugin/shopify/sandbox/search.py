"""Shopify's search syntax for `products(query:)`, for the filters retouch uses.

    updated_at:>'2026-11-20T10:00:00Z'   also >=, <, <=, no operator (same second / same day),
                                        quoted or not; created_at likewise; values: ISO date-times,
                                        dates (YYYY-MM-DD), years, `now`
    tag:foo   -tag:foo   tag_not:foo     tags compare case-insensitively
    id:123    id:>=123                   numeric comparison
    title:foo                            case-insensitive substring
    free text                            substring of the title, or a tag
    a b / a AND b / a OR b / NOT a / -a / ( ... )

Malformed queries behave like Shopify's (captures/2025-01/products/product-invalid-search-query-syntax.json):
no error is raised; a value that starts with "(" (`tag:(foo`) is a literal that matches nothing; an
unbalanced "(" or a dangling OR is forgiven. Filters on fields the sandbox does not know (vendor,
status, ...) are ignored (they match everything).

`parse_query` builds a small tree of predicates; `matches` evaluates it. `time_range` lifts the
time filters AND-ed at the top of a query out as a range of whole seconds, so that a connection
kept sorted by that time can bisect to them instead of testing every product. All are pure.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Searchable(Protocol):
    id: int
    title: str
    tags: list[str]
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class Term:
    field: str | None  # None: free text
    comparator: str  # ":" ">" ">=" "<" "<="
    value: str


@dataclass(frozen=True)
class Not:
    operand: Node


@dataclass(frozen=True)
class AllOf:
    operands: tuple[Node, ...]


@dataclass(frozen=True)
class AnyOf:
    operands: tuple[Node, ...]


Node = Term | Not | AllOf | AnyOf

_FIELD_TERM = re.compile(
    r"""(?P<field>[A-Za-z_][A-Za-z0-9_.]*):(?P<cmp>>=|<=|>|<)?(?:"(?P<dq>[^"]*)"|'(?P<sq>[^']*)'|(?P<bare>[^\s)]*))"""
)
_BARE_TERM = re.compile(r"""(?:"(?P<dq>[^"]*)"|'(?P<sq>[^']*)'|(?P<bare>[^\s()]+))""")


def _tokens(text: str) -> list[object]:
    """Tokens: "(", ")", "OR", "AND", "NOT", "-" (negation prefix) and Term objects."""
    out: list[object] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        if ch in "()":
            out.append(ch)
            i += 1
            continue
        if ch == "-" and i + 1 < len(text) and not text[i + 1].isspace():
            out.append("-")
            i += 1
            continue
        match = _FIELD_TERM.match(text, i)
        if match:
            value = match.group("dq") if match.group("dq") is not None else match.group("sq")
            if value is None:
                value = match.group("bare")
            out.append(Term(match.group("field").lower(), match.group("cmp") or ":", value))
            i = match.end()
            continue
        match = _BARE_TERM.match(text, i)
        if match and match.end() > i:
            bare = match.group("bare")
            if bare in ("OR", "AND", "NOT"):
                out.append(bare)
            else:
                value = match.group("dq") if match.group("dq") is not None else match.group("sq")
                out.append(Term(None, ":", value if value is not None else bare))
            i = match.end()
            continue
        i += 1  # a stray quote: skip it, as Shopify forgives it
    return out


class _Parser:
    def __init__(self, tokens: list[object]) -> None:
        self.tokens = tokens
        self.pos = 0

    def peek(self) -> object | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> object | None:
        token = self.peek()
        self.pos += 1
        return token

    def parse_or(self) -> Node | None:
        parts = [p for p in [self.parse_and()] if p is not None]
        while self.peek() == "OR":
            self.take()
            right = self.parse_and()
            if right is not None:  # a dangling OR is forgiven
                parts.append(right)
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else AnyOf(tuple(parts))

    def parse_and(self) -> Node | None:
        parts: list[Node] = []
        while True:
            token = self.peek()
            if token is None or token in ("OR", ")"):
                break
            if token == "AND":
                self.take()
                continue
            unary = self.parse_unary()
            if unary is not None:
                parts.append(unary)
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else AllOf(tuple(parts))

    def parse_unary(self) -> Node | None:
        token = self.take()
        if token in ("NOT", "-"):
            operand = self.parse_unary()
            return Not(operand) if operand is not None else None
        if token == "(":
            inner = self.parse_or()
            if self.peek() == ")":
                self.take()
            return inner  # an unclosed "(" is forgiven
        if isinstance(token, Term):
            return token
        return None


def parse_query(text: str | None) -> Node | None:
    """The query as a predicate tree; None matches everything. Never raises."""
    if not text or not text.strip():
        return None
    parser = _Parser(_tokens(text))
    node = parser.parse_or()
    while parser.peek() is not None:  # stray ")" or text after it: keep reading, AND it in
        parser.take()
        more = parser.parse_or()
        if more is not None:
            node = more if node is None else AllOf((node, more))
    return node


def _time_bounds(value: str, now: float) -> tuple[float, float] | None:
    """The [start, end) interval (epoch seconds) a time value denotes; None if unreadable."""
    text = value.strip()
    if text.lower() == "now":
        return now, now + 1
    try:
        if re.fullmatch(r"\d{4}", text):
            start = datetime(int(text), 1, 1, tzinfo=UTC)
            return start.timestamp(), datetime(int(text) + 1, 1, 1, tzinfo=UTC).timestamp()
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            start = datetime.fromisoformat(text).replace(tzinfo=UTC)
            return start.timestamp(), (start + timedelta(days=1)).timestamp()
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    second = float(int(moment.timestamp()))
    return second, second + 1


def _compare_time(actual: float, comparator: str, value: str, now: float) -> bool:
    bounds = _time_bounds(value, now)
    if bounds is None:
        return False
    start, end = bounds
    seconds = float(int(actual))  # Shopify compares whole seconds
    return {
        ":": start <= seconds < end,
        ">": seconds >= end,
        ">=": seconds >= start,
        "<": seconds < start,
        "<=": seconds < end,
    }[comparator]


def _compare_number(actual: int, comparator: str, value: str) -> bool:
    digits = value.rsplit("/", 1)[-1]  # also accept a gid
    if not digits.isdigit():
        return False
    wanted = int(digits)
    return {
        ":": actual == wanted,
        ">": actual > wanted,
        ">=": actual >= wanted,
        "<": actual < wanted,
        "<=": actual <= wanted,
    }[comparator]


def _has_tag(item: Searchable, value: str) -> bool:
    wanted = value.lower()
    return any(tag.lower() == wanted for tag in item.tags)


def _term_matches(term: Term, item: Searchable, now: float) -> bool:
    if term.field is None:
        text = term.value.lower()
        return text in item.title.lower() or _has_tag(item, term.value)
    if term.field == "tag":
        return _has_tag(item, term.value)
    if term.field == "tag_not":
        return not _has_tag(item, term.value)
    if term.field == "updated_at":
        return _compare_time(item.updated_at, term.comparator, term.value, now)
    if term.field == "created_at":
        return _compare_time(item.created_at, term.comparator, term.value, now)
    if term.field == "id":
        return _compare_number(item.id, term.comparator, term.value)
    if term.field == "title":
        return term.value.lower().rstrip("*") in item.title.lower()
    return True  # a filter the sandbox does not know: ignored


def matches(node: Node | None, item: Searchable, now: float) -> bool:
    if node is None:
        return True
    if isinstance(node, Term):
        return _term_matches(node, item, now)
    if isinstance(node, Not):
        return not matches(node.operand, item, now)
    if isinstance(node, AllOf):
        return all(matches(n, item, now) for n in node.operands)
    return any(matches(n, item, now) for n in node.operands)


def _conjuncts(node: Node | None) -> list[Node]:
    if node is None:
        return []
    if isinstance(node, AllOf):
        return [part for operand in node.operands for part in _conjuncts(operand)]
    return [node]


def time_range(node: Node | None, field: str, now: float) -> tuple[int | None, int | None, Node | None]:
    """(low, high, rest): the terms on `field` (a time field) AND-ed at the top of `node` hold
    exactly when low <= int(value) < high (None: unbounded), and `node` matches exactly when they
    hold and `rest` matches (None: nothing else to check). A term whose value is unreadable stays
    in `rest` (it matches nothing there)."""
    low, high = -math.inf, math.inf
    rest: list[Node] = []
    for part in _conjuncts(node):
        bounds = _time_bounds(part.value, now) if isinstance(part, Term) and part.field == field else None
        if bounds is None:
            rest.append(part)
            continue
        start, end = bounds  # as _compare_time: whole seconds s, ":" start <= s < end, ...
        assert isinstance(part, Term)
        if part.comparator in (":", ">="):
            low = max(low, start)
        if part.comparator == ">":
            low = max(low, end)
        if part.comparator in (":", "<="):
            high = min(high, end)
        if part.comparator == "<":
            high = min(high, start)
    remainder = None if not rest else rest[0] if len(rest) == 1 else AllOf(tuple(rest))
    # Whole seconds s: s >= low  <=>  s >= ceil(low), and s < high  <=>  s < ceil(high).
    return (None if low == -math.inf else math.ceil(low), None if high == math.inf else math.ceil(high), remainder)

"""The owner's README stays short and whole; the engineering lives in docs/ (built by `make docs`, checked
for broken links by `mkdocs build --strict` in .ci/run)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")  # [text](target) and ![alt](target)


def readme_links() -> list[str]:
    return LINK.findall(README.read_text())


def test_the_readme_is_under_2000_words() -> None:
    words = len(README.read_text().split())  # what `wc -w README.md` counts: runs of non-space
    assert words < 2000, f"README.md has {words} words; move the engineering to docs/"


def test_the_readme_keeps_its_two_commands_and_says_where_retouch_is() -> None:
    text = README.read_text()
    lines = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    assert "make demo" in lines and "make test" in lines  # each a command line of its own
    after_demo = text[text.index("make demo") :]
    assert ".venv/bin/retouch" in after_demo and "source .venv/bin/activate" in after_demo


def test_every_relative_link_in_the_readme_resolves_to_a_file() -> None:
    links = readme_links()
    assert "docs/demo.png" in links  # the demo's picture is shown
    headings = {
        re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-")
        for h in re.findall(r"^#+ (.+)$", README.read_text(), flags=re.M)
    }
    for target in links:
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        if path:
            assert (README.parent / path).is_file(), f"README.md links to {target}: no such file"
        else:
            assert anchor in headings, f"README.md links to {target}: no such heading"


def test_the_demo_picture_stays_small() -> None:
    assert (ROOT / "docs" / "demo.png").stat().st_size < 300 * 1024


def test_make_bench_rewrites_the_table_in_docs_performance() -> None:
    markers = ("<!-- bench:start -->", "<!-- bench:end -->")
    assert all(m in (ROOT / "docs" / "performance.md").read_text() for m in markers)
    assert not any(m in README.read_text() for m in markers)
    bench = ROOT.joinpath("Makefile").read_text().split("\nbench:", 1)[1].split("\n\n", 1)[0]
    assert "bench/run.py --doc docs/performance.md" in bench

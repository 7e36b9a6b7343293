"""The documentation holds: the model page's state table is the layout, field for field, and every
relative link in README.md, docs/ and the cluster and dashboard READMEs reaches a file (and, for a
Markdown file, a heading in it)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from twin.model.state import BYTES_PER_HUB, COLUMNS

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), *(ROOT / "cluster").glob("*.md"),
                ROOT / "dashboard" / "README.md"])
# [text](target) outside code; images too. Autolinks and http(s) targets are not ours to check.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def test_model_page_state_table_matches_the_columns():
    text = (ROOT / "docs" / "model.md").read_text()
    rows = re.findall(r"^\| `(\w+)` \| (\w+) \| (\d+) \|", text, flags=re.M)
    assert [(n, d, int(b)) for n, d, b in rows] == [(c.name, c.dtype, c.nbytes) for c in COLUMNS]
    assert f"**{BYTES_PER_HUB}**" in text


def _prose(text: str, *, inline_code: bool = False) -> str:
    """The text without fenced code blocks and HTML comments (and inline code unless asked for),
    where brackets are not links and '#' lines are not headings."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    return text if inline_code else re.sub(r"`[^`\n]*`", "", text)


def anchors(text: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation but '-' and '_' dropped, spaces as '-',
    a repeated heading suffixed -1, -2, ..."""
    seen: dict[str, int] = {}
    out = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *#*$", _prose(text, inline_code=True), flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.replace("`", "").lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def test_anchors_follow_github():
    text = "# A tick (one half-hour settlement period)\n## Streams: nothing lost, nothing twice\n## `twin up`\n## x\n## x\n"
    assert anchors(text) == {"a-tick-one-half-hour-settlement-period", "streams-nothing-lost-nothing-twice",
                             "twin-up", "x", "x-1"}


def test_the_pages_exist():
    assert {p.relative_to(ROOT).as_posix() for p in PAGES} >= {
        "README.md", "docs/architecture.md", "docs/api-errors.md", "docs/event-interactions.md",
        "docs/guides/operations.md", "docs/guides/capacity.md", "docs/guides/api.md",
        "docs/guides/reliability.md"}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(page: Path):
    broken = []
    for target in LINK.findall(_prose(page.read_text())):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.is_file():
            broken.append(f"{target}: no file {dest}")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest.read_text()):
            broken.append(f"{target}: no heading #{anchor} in {dest.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)

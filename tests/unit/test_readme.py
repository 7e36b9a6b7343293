"""The README's state table is the layout, field for field."""

from __future__ import annotations

import re
from pathlib import Path

from twin.model.state import BYTES_PER_HUB, COLUMNS

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_state_table_matches_the_columns():
    text = README.read_text()
    rows = re.findall(r"^\| `(\w+)` \| (\w+) \| (\d+) \|", text, flags=re.M)
    assert [(n, d, int(b)) for n, d, b in rows] == [(c.name, c.dtype, c.nbytes) for c in COLUMNS]
    assert f"**{BYTES_PER_HUB}**" in text


def test_readme_opens_with_the_two_commands():
    blocks = re.findall(r"```bash\n(.*?)\n```", README.read_text(), flags=re.S)
    assert "twin up" in blocks[0] and "pip install ." in blocks[0]
    assert "pytest" in blocks[1] and ".[test]" in blocks[1]

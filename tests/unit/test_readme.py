"""The README opens with the two commands a newcomer runs (`.ci/run` runs the second one's pytest)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_opens_with_the_two_commands():
    blocks = re.findall(r"```bash\n(.*?)\n```", README.read_text(), flags=re.S)
    assert "twin up" in blocks[0] and "pip install ." in blocks[0]
    assert "pytest" in blocks[1] and ".[test]" in blocks[1]

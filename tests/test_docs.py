"""Documentation that states numbers is checked against the code."""

from __future__ import annotations

import re
from pathlib import Path

from alsatian_hf.adapters.catalog import ROWS, block_count


DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_architecture_table_block_counts_are_derived():
    text = (DOCS / "architectures.md").read_text()
    rows = re.findall(r"^\| (timm|transformers) \| [^|]+ \| `([^`]+)` \| (\d+) \|", text, re.M)
    documented = {standard: int(n) for _, standard, n in rows}
    assert set(documented) == {r.standard for r in ROWS}
    for row in ROWS:
        assert documented[row.standard] == block_count(row), row.standard

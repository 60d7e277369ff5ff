"""Result tables: one typed row dataclass per CSV, appended row by row so an interrupted run resumes."""

from __future__ import annotations

import csv
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, Generic, TypeVar


R = TypeVar("R")

# A row field's annotation -> its `datasets` dtype in the card (annotations are strings here).
_DTYPES = {"int": "int64", "float": "float64", "bool": "bool", "str": "string"}


def columns(row_type: type) -> list[str]:
    return [f.name for f in fields(row_type)]


def dtypes(row_type: type) -> dict[str, str]:
    """Column -> `datasets` dtype, from the row dataclass's annotations (`float | None` is a float column).

    Only floats may be missing: `datasets` reads a CSV through pandas, whose int and bool columns refuse empty cells.
    """
    types = {f.name: str(f.type) for f in fields(row_type)}
    nullable = [name for name, t in types.items() if t.endswith(" | None") and t != "float | None"]
    if nullable:
        raise TypeError(f"{row_type.__name__}: {nullable} may be None, which only float columns may be.")
    return {name: _DTYPES[t.replace(" | None", "")] for name, t in types.items()}


def read_rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


class Table(Generic[R]):
    """A CSV of `row_type` rows; `add` rewrites the file, so what was measured survives an interruption."""

    def __init__(self, path: Path, row_type: type[R]):
        self.path, self.row_type = path, row_type
        self.columns = columns(row_type)
        self.rows: list[dict[str, Any]] = read_rows(path)

    def has(self, **key: Any) -> bool:
        return any(self._matches(r, key) for r in self.rows)

    def drop(self, **key: Any) -> None:
        self.rows = [r for r in self.rows if not self._matches(r, key)]
        self._write()

    def add(self, row: R) -> None:
        self.rows.append({k: "" if v is None else v for k, v in asdict(row).items()})
        self._write()

    def add_shared(self, row: R) -> None:
        """`add` for a table that other processes append to as well: under a file lock, their rows are read
        first, so no process overwrites another's."""
        from filelock import FileLock

        with FileLock(str(self.path) + ".lock"):
            self.rows = read_rows(self.path)
            self.add(row)

    def rewrite(self, rows: list[dict[str, Any]]) -> None:
        """Replaces every row (rows as `read_rows` gives them)."""
        self.rows = rows
        self._write()

    def refresh(self) -> None:
        """Re-reads the rows other processes may have added."""
        self.rows = read_rows(self.path)

    @staticmethod
    def _matches(row: dict[str, Any], key: dict[str, Any]) -> bool:
        return all(str(row.get(k)) == str(v) for k, v in key.items())

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.columns)
            writer.writeheader()
            writer.writerows({c: r.get(c, "") for c in self.columns} for r in self.rows)

"""Collecting every problem in a document before refusing it.

Plant data arrives in bulk (a CSV of a thousand machines, a JSON tree): a person fixing the file wants
every bad row at once, each naming its row (or path) and field, not one error per attempt.
"""

from __future__ import annotations

import re
from typing import Any

from store.errors import InvalidPlant

__all__ = ["MAX_REPORTED", "NAME_PATTERN", "Problems"]

MAX_REPORTED = 200  # a file that is wrong everywhere need not produce a megabyte of errors
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"  # names of patterns and holiday calendars
_NAME = re.compile(NAME_PATTERN)


class Problems:
    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.count = 0

    def add(self, path: str, field: str | None, message: str, *, row: int | None = None) -> None:
        """One problem: `path` locates the item (`resources[3]`, `patterns.shift_a.rules[1]`), `field`
        the offending field in it, `row` the CSV line when the item came from a CSV file."""
        self.count += 1
        if len(self.items) >= MAX_REPORTED:
            return
        item: dict[str, Any] = {"path": path, "field": field, "message": message}
        if row is not None:
            item["row"] = row
        self.items.append(item)

    def name(self, value: Any, path: str, *, expected: str | None = None) -> str | None:
        """A pattern's or calendar's name, checked (and equal to the one in the address, if given)."""
        if not isinstance(value, str) or not _NAME.match(value):
            self.add(
                path, "name", "name must be 1-100 letters, digits and _ . - (starting with a letter or digit)"
            )
            return None
        if expected is not None and value != expected:
            self.add(path, "name", f"name {value!r} differs from the name in the address, {expected!r}")
            return None
        return value

    def __bool__(self) -> bool:
        return self.count > 0

    def raise_if_any(self, what: str = "the plant data", *, storing: bool = True) -> None:
        if not self.count:
            return
        first = self.items[0]
        where = f"row {first['row']}" if "row" in first else first["path"]
        if first["field"]:
            where += f", field {first['field']!r}"
        more = (
            f" (and {self.count - 1} more problem{'s' if self.count > 2 else ''})" if self.count > 1 else ""
        )
        refused = f"{what} was refused, nothing was stored" if storing else f"{what} was refused"
        raise InvalidPlant(
            f"{refused}: {where}: {first['message']}{more}",
            details={"errors": self.items, "error_count": self.count},
        )

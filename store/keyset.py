"""Pages and their cursors, for every listing.

A listing is keyset-paginated: it is ordered by a unique key (for example `(created_at, id)`), and a
page's `next_cursor` is the key of its last row, opaque to clients (base64 of a JSON array). The
next page continues strictly after that key, so rows added while a client pages never shift a
page. `decode` is the one reader of cursors: whatever a client sends that no listing handed out is
refused the same way everywhere, with `INVALID_CURSOR` (400).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from store.errors import InvalidCursor

__all__ = ["MAX_CURSOR_CHARS", "Page", "decode", "encode", "page"]

# A cursor of three keys is under 100 characters; anything longer was not handed out by Ordo.
MAX_CURSOR_CHARS = 500

Key = datetime | UUID | int | str


@dataclass(frozen=True)
class Page:
    items: list[Any]
    next_cursor: str | None


def encode(*key: Key) -> str:
    """The cursor of a row's key."""
    raw = json.dumps(
        [k if isinstance(k, int) else k.isoformat() if isinstance(k, datetime) else str(k) for k in key]
    )
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode(cursor: str, *kinds: type) -> tuple[Any, ...]:
    """The key a cursor holds, each part converted to `kinds` (datetime, UUID, int or str).
    InvalidCursor if it was not made by `encode` with that many parts of those kinds."""
    try:
        if len(cursor) > MAX_CURSOR_CHARS:
            raise ValueError("too long")
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(raw, list) or len(raw) != len(kinds):
            raise ValueError("wrong shape")
        return tuple(_PARSE[kind](part) for kind, part in zip(kinds, raw, strict=True))
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError, RecursionError):
        raise InvalidCursor(
            "invalid cursor; pass the next_cursor value of the previous page of the same listing",
            details={"path": "cursor"},
        ) from None


def page(rows: Sequence[Any], limit: int, key: Callable[[Any], tuple[Key, ...]]) -> Page:
    """A page from `limit + 1` fetched rows: the first `limit`, and the cursor after the last of them
    when there are more. `key(row)` is the listing's order key."""
    items = list(rows[:limit])
    return Page(items, encode(*key(items[-1])) if len(rows) > limit else None)


def _aware(text: Any) -> datetime:
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError("a cursor's times carry an offset")
    return value


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**63:
        raise ValueError("not a key")
    return value


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("not a key")
    # No stored key holds NUL or a lone surrogate, and PostgreSQL text cannot take either: a cursor
    # carrying one was not handed out (it would otherwise fail in the database, not as a bad cursor).
    if "\x00" in value:
        raise ValueError("not a key")
    value.encode("utf-8")  # UnicodeEncodeError (a ValueError) for a lone surrogate
    return value


_PARSE: dict[type, Callable[[Any], Any]] = {
    datetime: _aware,
    UUID: lambda v: UUID(_str(v)),
    int: _int,
    str: _str,
}

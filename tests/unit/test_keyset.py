"""Cursors: what `encode` writes, `decode` reads back exactly; anything else is INVALID_CURSOR."""

from datetime import UTC, datetime
from uuid import UUID

import pytest

from store import keyset
from store.errors import InvalidCursor

WHEN = datetime(2026, 3, 29, 1, 30, 0, 123456, tzinfo=UTC)
ID = UUID("5d7c2a52-9f0e-4b53-9a57-2b3c1d0e4f60")


def test_a_cursor_reads_back_as_the_key_it_was_made_from() -> None:
    assert keyset.decode(keyset.encode(WHEN, ID), datetime, UUID) == (WHEN, ID)
    assert keyset.decode(keyset.encode(WHEN, 42), datetime, int) == (WHEN, 42)
    assert keyset.decode(keyset.encode(7), int) == (7,)


@pytest.mark.parametrize(
    ("cursor", "kinds"),
    [
        ("", (int,)),
        ("not base64!", (int,)),
        (keyset.encode(WHEN, ID), (int,)),  # another listing's key
        (keyset.encode(WHEN, ID), (datetime, int)),
        (keyset.encode("x"), (int,)),
        (keyset.encode(-1), (int,)),
        (keyset.encode(2**63), (int,)),
        (keyset.encode("2026-03-29T01:30:00"), (datetime,)),  # no offset
        ("W1tbW1tbW1tbW1td" * 40, (int,)),
    ],
)
def test_anything_else_is_an_invalid_cursor(cursor: str, kinds: tuple[type, ...]) -> None:
    with pytest.raises(InvalidCursor) as error:
        keyset.decode(cursor, *kinds)
    assert (error.value.code, error.value.status) == ("INVALID_CURSOR", 400)


def test_a_page_carries_a_cursor_only_when_more_rows_follow() -> None:
    rows = [{"id": i} for i in range(3)]
    assert keyset.page(rows, 3, lambda r: (r["id"],)).next_cursor is None
    more = keyset.page(rows, 2, lambda r: (r["id"],))
    assert [r["id"] for r in more.items] == [0, 1]
    assert keyset.decode(more.next_cursor, int) == (1,)

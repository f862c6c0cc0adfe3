"""scheduler.expand.icalendar: RFC 5545 text as people write it (folded lines, CRLF, RDATE;TZID)."""

from __future__ import annotations

import pytest
from dateutil.rrule import rrulestr

from scheduler.expand import preview
from tests.unit.expand.support import CHI, iso, utc


def test_rdate_with_tzid_is_accepted_where_dateutil_refuses_it() -> None:
    """RDATE;TZID=... is what users write; dateutil's rrulestr cannot read it, Ordo can."""
    block = "DTSTART;TZID=Europe/Chisinau:20260401T080000\nRDATE;TZID=Europe/Chisinau:20260402T093000"
    with pytest.raises(Exception):  # noqa: B017 (documents the dateutil limitation)
        list(rrulestr(block))
    assert iso(preview("rrule", block, CHI, count=5, now=utc(2026, 3, 1))) == [
        "2026-04-01T08:00:00+03:00",  # without an RRULE, DTSTART is the first instance
        "2026-04-02T09:30:00+03:00",
    ]


def test_rrule_block_tolerates_crlf_and_folded_lines() -> None:
    """CRLF line ends and RFC 5545 folding (a continuation starting with a blank) are unfolded."""
    block = "DTSTART;TZID=Europe/Chisinau:20260401T000000\r\nRRULE:FREQ=DAILY;\r\n BYHOUR=8,20;COUNT=3\r\n"
    assert iso(preview("rrule", block, CHI, count=5, now=utc(2026, 3, 1))) == [
        "2026-04-01T08:00:00+03:00",
        "2026-04-01T20:00:00+03:00",
        "2026-04-02T08:00:00+03:00",
    ]

"""scheduler.expand.walltime: IANA zones."""

from __future__ import annotations

import pytest

from scheduler.expand import zone
from store.errors import InvalidSchedule


def test_zone_accepts_iana_names_and_refuses_others() -> None:
    assert zone("Europe/Chisinau").key == "Europe/Chisinau"
    for bad in ("Europe/Chisinau2", "../etc/passwd", "Europe", "+03:00"):
        with pytest.raises(InvalidSchedule, match="unknown time zone"):
            zone(bad)

"""How bad schedule input is reported: `InvalidSchedule` naming the field a person must fix.

Every message about a schedule expression goes through here, so the field (`schedule_expr`) and the
"invalid RRULE:" prefix are written once.
"""

from __future__ import annotations

from store.errors import InvalidSchedule

__all__ = ["expr_error", "rrule_error"]


def expr_error(message: str) -> InvalidSchedule:
    """A refusal of the schedule expression itself (not its kind, zone or preview arguments)."""
    return InvalidSchedule(message, details={"field": "schedule_expr"})


def rrule_error(message: str) -> InvalidSchedule:
    return expr_error(f"invalid RRULE: {message}")

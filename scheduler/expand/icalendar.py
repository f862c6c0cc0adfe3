"""RFC 5545 text: an rrule schedule's block of content lines, read into its properties and values.

`expr` is a bare RRULE value (`FREQ=DAILY;BYHOUR=8`, optionally prefixed `RRULE:`) or a block of
DTSTART, RRULE, EXRULE, RDATE and EXDATE lines (section 3.8.5): folded lines (3.1) and CRLF are
accepted, parameters may be quoted (3.2), DATE and DATE-TIME values (3.3.4, 3.3.5) may be `Z` (UTC),
floating, `VALUE=DATE` or carry `;TZID=`, RDATE and EXDATE take comma lists. dateutil's `rrulestr`
rejects `RDATE;TZID=...`, which is what people write, so the block is read here and only RRULE values
reach dateutil (through `recur`). What the values *mean* (which zone, which instant) is decided in
`recurrence`; this module only reads text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

from scheduler.expand.errors import rrule_error
from scheduler.expand.expansion import CACHE_SIZE
from scheduler.expand.walltime import lookup_zone

__all__ = ["Block", "DateValue", "Property", "date_values", "parse_block", "parse_date_value"]

_PROPERTIES = ("DTSTART", "RRULE", "EXRULE", "RDATE", "EXDATE")
_DT_RE = re.compile(r"^(\d{4})(\d{2})(\d{2})(?:T(\d{2})(\d{2})(\d{2})(Z)?)?$")
_ISO_EXTENDED_RE = re.compile(r"^\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2})?Z?)?$")


@dataclass(frozen=True)
class DateValue:
    wall: datetime  # the value as written (midnight for a date)
    is_date: bool
    is_utc: bool


@dataclass(frozen=True)
class Property:
    name: str
    params: tuple[tuple[str, str], ...]
    value: str

    def param(self, key: str) -> str | None:
        for k, v in self.params:
            if k == key:
                return v
        return None

    def zone(self, default: ZoneInfo) -> ZoneInfo:
        """The zone of the property's TZID parameter, else `default`."""
        tzid = self.param("TZID")
        if tzid is None:
            return default
        return lookup_zone(tzid.lstrip("/"), {"field": "schedule_expr"}, f" in {self.name};TZID")


@dataclass(frozen=True)
class Block:
    lines: tuple[str, ...]  # unfolded, stripped, bare values prefixed with RRULE:
    dtstart: Property | None
    rrules: tuple[str, ...]
    exrules: tuple[str, ...]
    rdates: tuple[Property, ...]
    exdates: tuple[Property, ...]


def _unfold(text: str) -> list[str]:
    lines: list[str] = []
    for raw in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if raw[:1] in (" ", "\t") and lines and raw.strip():
            lines[-1] += raw[1:].rstrip()  # RFC 5545 3.1: a continuation line starts with one blank
            continue
        line = raw.strip()
        if line:
            lines.append(line)
    return lines


def _split_property(line: str) -> Property:
    colon = -1
    quoted = False
    for pos, ch in enumerate(line):
        if ch == '"':
            quoted = not quoted
        elif ch == ":" and not quoted:
            colon = pos
            break
    head = line[:colon] if colon >= 0 else ""
    if colon < 0 or "=" in head.split(";", 1)[0]:
        return Property("RRULE", (), line)  # a bare RRULE value: FREQ=...;...
    name, *raw_params = head.split(";")
    params = []
    for raw in raw_params:
        key, eq, value = raw.partition("=")
        if not eq:
            raise rrule_error(f"parameter {raw!r} in {line!r} is not NAME=VALUE")
        params.append((key.strip().upper(), value.strip().strip('"')))
    return Property(name.strip().upper(), tuple(params), line[colon + 1 :].strip())


@lru_cache(maxsize=CACHE_SIZE)
def parse_block(expr: str) -> Block:
    """The block's properties, or InvalidSchedule naming the line at fault."""
    lines = _unfold(expr)
    if not lines:
        raise rrule_error("the rule is empty; give e.g. FREQ=DAILY;BYHOUR=8")
    props = [_split_property(line) for line in lines]
    dtstart = None
    out_lines: list[str] = []
    for prop, line in zip(props, lines, strict=True):
        if prop.name not in _PROPERTIES:
            raise rrule_error(f"line {line!r} is not one of {', '.join(_PROPERTIES)}")
        if prop.name == "DTSTART":
            if dtstart is not None:
                raise rrule_error("DTSTART is given twice")
            dtstart = prop
        if prop.name in ("RRULE", "EXRULE") and not prop.value:
            raise rrule_error(f"{prop.name} has no value")
        out_lines.append(
            f"RRULE:{line}" if prop.name == "RRULE" and not line.upper().startswith("RRULE") else line
        )
    rrules = tuple(p.value for p in props if p.name == "RRULE")
    rdates = tuple(p for p in props if p.name == "RDATE")
    if not rrules and not rdates and dtstart is None:
        raise rrule_error("the block has no RRULE, RDATE or DTSTART line")
    return Block(
        lines=tuple(out_lines),
        dtstart=dtstart,
        rrules=rrules,
        exrules=tuple(p.value for p in props if p.name == "EXRULE"),
        rdates=rdates,
        exdates=tuple(p for p in props if p.name == "EXDATE"),
    )


def parse_date_value(text: str, what: str) -> DateValue:
    """A DATE or DATE-TIME value (`what` names the property or part it came from, for the message)."""
    raw = text.strip()
    if _ISO_EXTENDED_RE.match(raw):  # tolerate 2026-03-29T08:00:00 for 20260329T080000
        raw = raw.replace("-", "").replace(":", "")
        if "T" in raw and len(raw.split("T")[1].rstrip("Z")) == 4:
            raw = raw.replace("Z", "") + "00" + ("Z" if raw.endswith("Z") else "")
    m = _DT_RE.match(raw)
    if not m:
        raise rrule_error(f"{what} value {text!r} is not a date (YYYYMMDD) or date-time (YYYYMMDDTHHMMSS[Z])")
    year, month, day, hour, minute, second, z = m.groups()
    try:
        wall = datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0))
    except ValueError as exc:
        raise rrule_error(f"{what} value {text!r}: {exc}") from None
    return DateValue(wall=wall, is_date=hour is None, is_utc=bool(z))


def date_values(prop: Property) -> list[DateValue]:
    """The comma-separated values of an RDATE or EXDATE line."""
    kind = (prop.param("VALUE") or "").upper()
    if kind == "PERIOD":
        raise rrule_error(f"{prop.name};VALUE=PERIOD is not supported; list the start times instead")
    values = [parse_date_value(v, prop.name) for v in prop.value.split(",") if v.strip()]
    if not values:
        raise rrule_error(f"{prop.name} has no value")
    return values

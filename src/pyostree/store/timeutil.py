"""Parsing ``--timestamp`` values and formatting commit dates as ostree prints them."""

from __future__ import annotations

import datetime as _dt
import re

from pyostree.errors import OstreeError

_FORMATS = [
    "%Y-%m-%d %H:%M:%S %z",
    "%Y-%m-%d %H:%M:%S%z",
    "%Y-%m-%dT%H:%M:%S%z",
    "%Y-%m-%dT%H:%M:%S %z",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d",
    "%a %b %d %H:%M:%S %Z %Y",
    "%a %d %b %Y %H:%M:%S %Z",
]


def parse_timestamp(text: str, allow_negative: bool = False) -> int:
    """Seconds since the epoch for the date forms ``ostree commit --timestamp`` accepts.

    Range-checked: ostree's ``parse_datetime`` fails past a 64-bit ``time_t`` ("Could not
    parse") and a date before 1970 would wrap in the commit's unsigned 64-bit timestamp;
    pyostree refuses both.
    """
    try:
        v = _parse_timestamp(text)
    except (OverflowError, ValueError, OSError):
        raise OstreeError(f"Could not parse '{text}'") from None
    if v >= 1 << 63:
        raise OstreeError(f"Could not parse '{text}'")
    if v < 0 and not allow_negative:
        raise OstreeError(f"Timestamp '{text}' is before 1970 (commit timestamps are unsigned)")
    return v


def _parse_timestamp(text: str) -> int:
    s = text.strip()
    if s.startswith("@") and re.fullmatch(r"@-?\d+", s):
        return int(s[1:])
    if re.fullmatch(r"-?\d+", s) and len(s) > 8:
        return int(s)
    norm = re.sub(r"(Z|UTC|GMT)$", "+0000", s)
    norm = re.sub(r"([+-]\d\d):(\d\d)$", r"\1\2", norm)
    for fmt in _FORMATS:
        try:
            d = _dt.datetime.strptime(norm, fmt)
        except ValueError:
            continue
        if d.tzinfo is None:
            d = d.astimezone()  # local time, as parse_datetime does
        return int(d.timestamp())
    loose = parse_datetime_words(s)
    if loose is not None:
        return loose
    raise OstreeError(f"Could not parse '{text}'")


_MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august", "september",
           "october", "november", "december"]
_UNITS = {"second": 1, "sec": 1, "minute": 60, "min": 60, "hour": 3600, "day": 86400,
          "week": 7 * 86400, "fortnight": 14 * 86400, "month": 30 * 86400, "year": 365 * 86400}


def _month(name: str) -> int | None:
    n = name.lower().rstrip(".")
    for i, full in enumerate(_MONTHS):
        if full == n or (len(n) >= 3 and full.startswith(n)):
            return i + 1
    return None


def parse_datetime_words(text: str, now: float | None = None) -> int | None:
    """The worded forms of gnulib's parse_datetime that ostree users write:
    ``N UNIT(s) ago``, ``now``/``today``/``yesterday``, ``Month D YYYY [HH:MM[:SS]]``
    and ``D Month YYYY`` (local time).  None when *text* is none of these."""
    import time

    s = " ".join(text.strip().split())
    if now is None:
        now = time.time()
    m = re.fullmatch(r"(?i)(-?\d+)\s*([a-z]+?)s?\s+ago", s)
    if m and m.group(2).lower() in _UNITS:
        return int(now) - int(m.group(1)) * _UNITS[m.group(2).lower()]
    low = s.lower()
    if low in ("now", "today"):
        return int(now)
    if low == "yesterday":
        return int(now) - 86400
    hh = mm = ss = 0
    m = re.fullmatch(r"(?i)([a-z]+\.?)\s+(\d{1,2}),?\s+(\d{4})(?:\s+(\d{1,2}):(\d{2})(?::(\d{2}))?)?", s)
    if m:
        month, day, year = _month(m.group(1)), int(m.group(2)), int(m.group(3))
        if m.group(4):
            hh, mm, ss = int(m.group(4)), int(m.group(5)), int(m.group(6) or 0)
    else:
        m = re.fullmatch(r"(?i)(\d{1,2})\s+([a-z]+\.?),?\s+(\d{4})", s)
        if not m:
            return None
        month, day, year = _month(m.group(2)), int(m.group(1)), int(m.group(3))
    if month is None:
        return None
    try:
        return int(_dt.datetime(year, month, day, hh, mm, ss).astimezone().timestamp())
    except (ValueError, OverflowError):
        return None


def format_commit_date(ts: int) -> str:
    """``2005-10-29 12:43:29 +0000`` (UTC), as ``ostree log``/``show`` print dates."""
    try:
        d = _dt.datetime.fromtimestamp(ts, _dt.UTC)
    except (OverflowError, OSError, ValueError):
        return "invalid"
    return d.strftime("%Y-%m-%d %H:%M:%S +0000")

"""Parsing ``--timestamp`` values and formatting commit dates as ostree prints them."""

from __future__ import annotations

import datetime as _dt
import re

from .errors import OstreeError

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


def parse_timestamp(text: str) -> int:
    """Seconds since the epoch for the date forms ``ostree commit --timestamp`` accepts."""
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
    raise OstreeError(f"Could not parse '{text}'")


def format_commit_date(ts: int) -> str:
    """``2005-10-29 12:43:29 +0000`` (UTC), as ``ostree log``/``show`` print dates."""
    try:
        d = _dt.datetime.fromtimestamp(ts, _dt.timezone.utc)
    except (OverflowError, OSError, ValueError):
        return "invalid"
    return d.strftime("%Y-%m-%d %H:%M:%S +0000")

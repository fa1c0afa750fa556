"""The one form of a point in time in the launcher's files (status.json, the phases, the
gateway membership): local time with its offset, to the millisecond.

Cheap to import (the `status` command, which runs every 30 s, reads these times): datetime
is imported only to write one, or to read a form `iso` does not write.
"""

from __future__ import annotations


def iso(ts: float) -> str:
    """Local time with offset, to the millisecond (``2025-01-31T14:02:11.123+00:00``)."""
    import datetime

    return datetime.datetime.fromtimestamp(ts).astimezone().isoformat(timespec="milliseconds")


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468


def parse_iso(text: object) -> float | None:
    """Seconds since the epoch of a time written by `iso` (others: datetime's parser).

    The form `iso` writes is read by hand: importing datetime would be a tenth of the cost
    of the whole `status` command on Python 3.11.
    """
    if not isinstance(text, str):
        return None
    t = text
    if len(t) == 29 and t[4] + t[7] + t[10] + t[13] + t[16] + t[19] + t[26] == "--T::.:":
        try:
            days = _days_from_civil(int(t[0:4]), int(t[5:7]), int(t[8:10]))
            clock = int(t[11:13]) * 3600 + int(t[14:16]) * 60 + int(t[17:19])
            offset = (int(t[24:26]) * 3600 + int(t[27:29]) * 60) * (-1 if t[23] == "-" else 1)
            if t[23] in "+-":
                return days * 86400 + clock + int(t[20:23]) / 1000 - offset
        except ValueError:
            pass
    import datetime

    try:
        return datetime.datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None

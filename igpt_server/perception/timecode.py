"""Times in a clip, as people write them: the video tools' ``time`` argument and the words of a request.

Shared by the video tools (:mod:`igpt_tools.video.clip` re-exports :func:`parse_time`) and the
controller (:func:`find_time` reads "at 0:12" out of a request), so neither imports the other.
Pure Python: no torch, no PyAV.
"""

from __future__ import annotations

import re

from igpt_server.errors import InvalidInput

_NOT_A_TIME = "time {value!r} is not a time; give seconds (12.5) or m:ss (0:12)"

#: a clock time: "0:12", "1:02.5", "1:00:02"
_CLOCK = r"(?<![\d:.])(?P<clock>\d{1,2}(?::\d{1,2})?:\d{2}(?:\.\d+)?)(?![\d:])"
#: seconds with a unit, optionally after minutes: "12 seconds", "12.5s", "1 minute 5 seconds", "2 min"
_NUMBER = r"\d+(?:\.\d+)?"
_MINUTE_UNIT = r"\s*(?:minutes?|mins?)\b"
_SPOKEN = (
    rf"(?<![\w.])(?:(?P<minutes>{_NUMBER}){_MINUTE_UNIT}\s*(?:and\s+)?)?(?P<seconds>{_NUMBER})\s*(?:seconds?|secs?|s)\b"
    rf"|(?<![\w.])(?P<only_minutes>{_NUMBER}){_MINUTE_UNIT}"
)
_TIME_RE = re.compile(rf"{_CLOCK}|{_SPOKEN}", re.IGNORECASE)


def parse_time(value: float | int | str) -> float:
    """Seconds from ``12``, ``12.5``, ``"12s"``, ``"0:12"``, ``"1:02.5"`` or ``"1:00:02"``.

    Raises :class:`InvalidInput` (422) on anything else or a negative time.
    """
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = value.strip().lower().removesuffix("s").strip()
        try:
            parts = [float(p) for p in text.split(":")]
        except ValueError:
            raise InvalidInput(_NOT_A_TIME.format(value=value)) from None
        if not 1 <= len(parts) <= 3:
            raise InvalidInput(_NOT_A_TIME.format(value=value))
        seconds = 0.0
        for part in parts:
            seconds = seconds * 60 + part
    if seconds < 0 or seconds != seconds:
        raise InvalidInput(f"time {value!r} is negative; give a time from the clip's start")
    return seconds


def find_time(text: str) -> float | None:
    """The first time a request names, in seconds, or None.

    Reads clock times ("at 0:12", "1:02.5", "1:00:02") and numbers with a unit ("at 12
    seconds", "12.5s", "2 min", "1 minute 5 seconds"). A bare number is no time ("make it 2
    times bigger"). Whether the time lies inside the clip is the tool's check (422
    ``time_out_of_range``).
    """
    match = _TIME_RE.search(text)
    if match is None:
        return None
    if match["clock"] is not None:
        return parse_time(match["clock"])
    if match["only_minutes"] is not None:
        return float(match["only_minutes"]) * 60
    minutes = float(match["minutes"]) if match["minutes"] is not None else 0.0
    return minutes * 60 + float(match["seconds"])

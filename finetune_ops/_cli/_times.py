"""Durations (``90s``, ``15m``, ``1h``, ``2d``, plain seconds) and moments (``2h`` ago, a date).

Both are click parameter types, so a bad value is a usage error naming the option.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

import click

__all__ = ["DURATION", "MOMENT", "Duration", "Moment", "parse_duration"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([smhd]?)", re.IGNORECASE)


def parse_duration(text: str) -> float:
    """Seconds in ``text``: ``90``, ``90s``, ``1.5m``, ``1h``, ``2d``; ValueError otherwise."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a duration like 90s, 15m, 1h or 2d")
    seconds = float(match.group(1)) * _UNITS[(match.group(2) or "s").lower()]
    if not math.isfinite(seconds):
        raise ValueError(f"{text!r} is too long")
    return seconds


class Duration(click.ParamType):  # type: ignore[type-arg]  # generic only from click 8.2
    """Seconds, written ``600``, ``90s``, ``15m``, ``1h`` or ``2d``."""

    name = "duration"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, int | float):
            return float(value)
        try:
            return parse_duration(str(value))
        except ValueError as error:
            self.fail(str(error), param, ctx)


class Moment(click.ParamType):  # type: ignore[type-arg]  # generic only from click 8.2
    """A moment: a duration ago (``2h``), a date (``2026-12-01``), an ISO time (UTC by default)."""

    name = "time"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        text = str(value).strip()
        try:
            return datetime.now(UTC) - timedelta(seconds=parse_duration(text))
        except (ValueError, OverflowError):
            pass
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            self.fail(
                f"{text!r} is neither a duration ago (2h, 3d) nor a date (2026-12-01, "
                "2026-12-01T08:00Z)",
                param,
                ctx,
            )
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


DURATION = Duration()
MOMENT = Moment()

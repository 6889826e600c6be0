"""A fake clock for tests: time moves only when something sleeps (or a test moves it)."""

from __future__ import annotations


class FakeClock:
    """Call it for the time; ``sleep`` records each wait and moves time on by it."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.now += seconds

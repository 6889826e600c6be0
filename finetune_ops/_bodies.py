"""Reading answer bodies within bounds: a cap per body, and a budget for the whole manager.

Memory follows the bytes that arrived, never what a header claims: a body
grows as its chunks come (decompressed, when the server compressed it), so a
stalled answer that declared 60 MB holds what it sent. A declared length over
the cap is refused before any byte is read. Every byte held by bodies being
read or parsed counts against one :class:`BodyBudget` per manager, so 32
requests in flight cannot hold 32 times the cap between them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import aiohttp

from ._errors import InvalidResponseError

__all__ = [
    "DEFAULT_MAX_BUFFERED_BYTES",
    "BodyBudget",
    "BodySink",
    "EmptyBody",
    "read_body",
    "request_id",
]

#: Bytes that answers being read may hold at once, across one manager.
DEFAULT_MAX_BUFFERED_BYTES = 1024 * 1024 * 1024


class EmptyBody(Exception):
    """A 2xx answer with nothing (or only whitespace) where JSON was due."""


class BodySink(Protocol):
    """Takes a body chunk by chunk as it arrives, keeping only ``held`` bytes of it.

    Once it no longer ``wants_more``, the rest of the body is not read.
    """

    @property
    def held(self) -> int: ...

    @property
    def wants_more(self) -> bool: ...

    def feed(self, chunk: bytes) -> None: ...


def request_id(headers: Mapping[str, str]) -> str | None:
    return headers.get("x-request-id") or headers.get("request-id")


class BodyBudget:
    """Counts the bytes held by answers being read; refuses what would go over ``limit``."""

    __slots__ = ("held", "limit")

    def __init__(self, limit: int = DEFAULT_MAX_BUFFERED_BYTES) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"max_buffered_bytes must be a whole number >= 1, got {limit!r}")
        self.limit = limit
        self.held = 0

    def take(self, size: int) -> bool:
        if self.held + size > self.limit:
            return False
        self.held += size
        return True

    def give_back(self, size: int) -> None:
        self.held -= size


async def read_body(
    response: aiohttp.ClientResponse,
    method: str,
    url: str,
    *,
    cap: int,
    budget: BodyBudget,
    sink: BodySink | None = None,
) -> bytearray:
    """The whole body, its bytes taken from ``budget``; the caller gives them back.

    With a ``sink``, each chunk goes to it instead and nothing is returned: the
    budget counts what the sink holds while the body is read. Refused as soon
    as it is known to exceed ``cap`` (not worth asking again), or when the
    budget is spent by other answers (worth asking again later).
    """

    def refused(problem: str, *, transient: bool) -> InvalidResponseError:
        return InvalidResponseError(
            f"{method} {url}: response body {problem}",
            status_code=response.status,
            request_id=request_id(response.headers),
            method=method,
            url=url,
            transient=transient,
        )

    cap = min(cap, budget.limit)
    length = response.content_length
    if length is not None and length > cap:
        raise refused(f"of {length} bytes exceeds the {cap} byte cap", transient=False)
    body = bytearray()
    received = held = 0
    try:
        async for chunk in response.content.iter_any():
            received += len(chunk)
            if received > cap:
                raise refused(f"exceeds the {cap} byte cap", transient=False)
            if sink is not None:
                sink.feed(chunk)
                if not sink.wants_more:
                    break
                keeping = sink.held
            else:
                keeping = held + len(chunk)
            if keeping > held and not budget.take(keeping - held):
                raise refused(
                    f"would go over the {budget.limit} bytes that answers may hold at once "
                    "(max_buffered_bytes)",
                    transient=True,
                )
            if keeping < held:
                budget.give_back(held - keeping)
            held = keeping
            if sink is None:
                body += chunk
    except BaseException:
        budget.give_back(held)
        raise
    if sink is not None:
        budget.give_back(held)  # the sink keeps a partial entry at most from here
    return body

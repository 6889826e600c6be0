"""Which requests get a fault: a seeded random plan plus a script of queued faults.

Where a fault strikes relative to the request's effect:

* before the effect (nothing changes on the server): every 429 form, the 5xx
  statuses, HTML_PAGE, EMPTY_BODY and HANG. A cancel that got a 503 was not
  applied, and a create that got a 429 made no job.
* after the effect (the server changed, the client never learns it): RESET and
  TRUNCATED_JSON. The handler ran, a cancel was applied or a job created, and
  then the response was cut off.
* LATENCY only delays the request; the response is normal.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Iterable
from typing import NamedTuple

import attrs

#: Endpoint names, as used by counters, fault scripts and the fault log.
ENDPOINTS: tuple[str, ...] = (
    "create",
    "list",
    "retrieve",
    "cancel",
    "events",
    "delete",
    "checkpoints",
    "metrics",
    "download",
    "estimate_price",
    "model_limits",
    "supported_models",
    "whoami",
)


class FaultKind(enum.StrEnum):
    """One way a request can go wrong.

    LATENCY: `FaultPlan.spike` seconds of delay, then the normal response.
    RATE_LIMIT_SECONDS / _DATE / _MS / _NO_HINT: 429 with `Retry-After: <seconds>`
    (may be fractional), `Retry-After: <HTTP date>`, `retry-after-ms: <ms>`, or
    no hint at all. SERVER_ERROR_500, BAD_GATEWAY_502, UNAVAILABLE_503,
    GATEWAY_TIMEOUT_504: that status with a JSON error body. HTML_PAGE: a 502
    proxy page in text/html. EMPTY_BODY: a 503 with no body at all. RESET: the
    headers and half the body, then a TCP reset. TRUNCATED_JSON: a 200 whose
    Content-Length matches a JSON body cut in half. HANG: no answer until the
    client gives up or the server stops.
    """

    LATENCY = "latency"
    RATE_LIMIT_SECONDS = "rate_limit_seconds"
    RATE_LIMIT_DATE = "rate_limit_date"
    RATE_LIMIT_MS = "rate_limit_ms"
    RATE_LIMIT_NO_HINT = "rate_limit_no_hint"
    SERVER_ERROR_500 = "server_error_500"
    BAD_GATEWAY_502 = "bad_gateway_502"
    UNAVAILABLE_503 = "unavailable_503"
    GATEWAY_TIMEOUT_504 = "gateway_timeout_504"
    RESET = "reset"
    TRUNCATED_JSON = "truncated_json"
    HTML_PAGE = "html_page"
    EMPTY_BODY = "empty_body"
    HANG = "hang"


#: Faults that answer in place of the handler, so the request has no effect.
BEFORE_EFFECT: frozenset[FaultKind] = frozenset(FaultKind) - {
    FaultKind.LATENCY,
    FaultKind.RESET,
    FaultKind.TRUNCATED_JSON,
}

#: The random plan's default choice: everything except HANG, which would stall
#: any client without a timeout.
DEFAULT_KINDS: tuple[FaultKind, ...] = tuple(kind for kind in FaultKind if kind != FaultKind.HANG)


def _to_kinds(value: Iterable[FaultKind | str]) -> tuple[FaultKind, ...]:
    kinds = tuple(FaultKind(kind) for kind in value)
    if not kinds:
        raise ValueError("kinds must name at least one FaultKind")
    return kinds


def _to_endpoints(value: Iterable[str] | None) -> frozenset[str] | None:
    if value is None:
        return None
    endpoints = frozenset(value)
    unknown = endpoints - set(ENDPOINTS)
    if unknown:
        raise ValueError(f"unknown endpoints {sorted(unknown)}; expected some of {ENDPOINTS}")
    return endpoints


def _rate(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"rate must be between 0 and 1, got {value!r}")


def _seconds(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0.0 <= value < float("inf"):
        raise ValueError(f"{attribute.name} must be finite and >= 0 seconds, got {value!r}")


@attrs.frozen
class FaultPlan:
    """How often requests fail, and how.

    Each request that reaches an endpoint draws from a `random.Random(seed)`:
    with probability `rate` it gets a fault, picked uniformly from `kinds`.
    The same seed and the same sequence of requests give the same faults.
    `latency` seconds of delay are added to every request; a LATENCY fault
    adds `spike` more. `retry_after` is the wait hinted by every 429 form.
    `endpoints`, when given, limits random faults to those endpoint names.
    Delays are real time, not simulator clock time.
    """

    rate: float = attrs.field(default=0.0, converter=float, validator=_rate)
    kinds: tuple[FaultKind, ...] = attrs.field(default=DEFAULT_KINDS, converter=_to_kinds)
    seed: int = 0
    retry_after: float = attrs.field(default=0.05, converter=float, validator=_seconds)
    latency: float = attrs.field(default=0.0, converter=float, validator=_seconds)
    spike: float = attrs.field(default=0.2, converter=float, validator=_seconds)
    endpoints: frozenset[str] | None = attrs.field(default=None, converter=_to_endpoints)


class FaultRecord(NamedTuple):
    """One injected fault: where, what, and for which job (None for create and list)."""

    endpoint: str
    kind: FaultKind
    job_id: str | None


class _Scripted:
    __slots__ = ("endpoint", "kind", "left")

    def __init__(self, kind: FaultKind, endpoint: str | None, times: int) -> None:
        self.kind = kind
        self.endpoint = endpoint
        self.left = times


class FaultInjector:
    """Decides, request by request, which fault (if any) to inject, and logs it."""

    def __init__(self, plan: FaultPlan) -> None:
        self.plan = plan
        self.log: list[FaultRecord] = []
        self._random = random.Random(plan.seed)
        self._script: list[_Scripted] = []

    def inject(self, kind: FaultKind | str, *, endpoint: str | None = None, times: int = 1) -> None:
        """Queue `kind` for the next `times` requests to `endpoint` (any endpoint if None)."""
        if endpoint is not None and endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}; expected one of {ENDPOINTS}")
        if times < 1:
            raise ValueError(f"times must be >= 1, got {times!r}")
        self._script.append(_Scripted(FaultKind(kind), endpoint, times))

    def reseed(self) -> None:
        """Restart the random sequence from the plan's seed."""
        self._random = random.Random(self.plan.seed)

    def clear(self) -> None:
        """Drop every queued fault that has not struck yet."""
        self._script.clear()

    def draw(self, endpoint: str, job_id: str | None) -> FaultKind | None:
        """The fault for this request: a scripted one first, else a seeded random one."""
        kind = self._from_script(endpoint)
        if kind is None:
            kind = self._from_plan(endpoint)
            if kind is None:
                return None
        self.log.append(FaultRecord(endpoint, kind, job_id))
        return kind

    def _from_script(self, endpoint: str) -> FaultKind | None:
        for index, entry in enumerate(self._script):
            if entry.endpoint is None or entry.endpoint == endpoint:
                entry.left -= 1
                if entry.left == 0:
                    del self._script[index]
                return entry.kind
        return None

    def _from_plan(self, endpoint: str) -> FaultKind | None:
        plan = self.plan
        if plan.rate <= 0.0 or (plan.endpoints is not None and endpoint not in plan.endpoints):
            return None
        if self._random.random() >= plan.rate:
            return None
        return self._random.choice(plan.kinds)

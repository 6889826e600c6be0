"""Job id validation: the only gate between a caller's string and a URL path.

yarl collapses ``..`` segments, turns ``?`` into a query and drops CR/LF, so
quoting cannot make an arbitrary string safe. Ids are checked against an
allow-list instead, before anything is sent.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from ._errors import InvalidJobIdError

__all__ = ["MAX_JOB_ID_LENGTH", "check_job_id", "check_job_ids"]

MAX_JOB_ID_LENGTH = 128

_JOB_ID = re.compile(r"ft-[A-Za-z0-9_-]+")


def check_job_id(job_id: object) -> str:
    """Return ``job_id`` if it is safe to put in a path, else raise InvalidJobIdError."""
    if not isinstance(job_id, str):
        raise InvalidJobIdError(f"job id must be a str, not {type(job_id).__name__}", job_id=job_id)
    if len(job_id) > MAX_JOB_ID_LENGTH or _JOB_ID.fullmatch(job_id) is None:
        shown = job_id if len(job_id) <= 80 else job_id[:77] + "..."
        raise InvalidJobIdError(
            f"invalid job id {shown!r}: expected 'ft-' followed by letters, digits, '-' or '_'",
            job_id=job_id,
        )
    return job_id


def check_job_ids(job_ids: Iterable[object]) -> list[str]:
    """Validate a whole batch before any of it is sent."""
    if isinstance(job_ids, str | bytes):
        raise TypeError("job_ids must be an iterable of ids, not a single string")
    return [check_job_id(job_id) for job_id in job_ids]

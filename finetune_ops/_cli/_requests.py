"""One request and its answer, for the commands that are not batches.

An API error ends such a command with one line on stderr: exit status 3 when
the API refused the key, 1 otherwise; a malformed id is a usage error (2).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import click

from finetune_ops._errors import AuthenticationError, FinetuneOpsError, InvalidJobIdError
from finetune_ops._manager import JobManager
from finetune_ops._records import FineTuneJob

from ._config import Connection
from ._exit import ConfigError, Exit
from ._output import auth_hint, describe_error, note

__all__ = ["call", "fetch_jobs", "manager"]

T = TypeVar("T")


def call(main: Coroutine[Any, Any, T]) -> T:
    """Run one request-and-answer command; an API error ends it with one line."""
    try:
        return asyncio.run(main)
    except InvalidJobIdError as error:
        raise ConfigError(str(error)) from None
    except FinetuneOpsError as error:
        note(f"error: {describe_error(error)}")
        if isinstance(error, AuthenticationError):
            note(auth_hint())
            raise click.exceptions.Exit(Exit.REFUSED) from None
        raise click.exceptions.Exit(Exit.FAILED) from None


def manager(connection: Connection, **options: Any) -> JobManager:
    return JobManager(
        api_key=connection.api_key,
        base_url=connection.base_url,
        allow_insecure_http=connection.allow_insecure_http,
        **options,
    )


async def fetch_jobs(connection: Connection) -> list[FineTuneJob]:
    async with manager(connection) as jobs:
        return await jobs.list()

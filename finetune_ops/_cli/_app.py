"""The commands of ``finetune-ops``: thin click wrappers over JobManager and the simulator."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections import Counter
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click

from finetune_ops._converter import unstructure
from finetune_ops._errors import AuthenticationError, FinetuneOpsError, InvalidJobIdError
from finetune_ops._manager import JobManager
from finetune_ops._records import FineTuneEvent, FineTuneJob

from ._batch import Plan, execute
from ._config import Connection, api_options
from ._exit import ConfigError, Exit
from ._inputs import read_ids
from ._journal import Journal
from ._output import auth_hint, describe_error, echo_json, note, stdout_console
from ._tables import events_table, jobs_table

__all__ = ["cli"]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., object])


class _Group(click.Group):
    """Turns Ctrl-C anywhere (a prompt, a request) into exit status 130 and one line."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            note("Interrupted.")
            ctx.exit(Exit.INTERRUPTED)
        except click.Abort as abort:
            if isinstance(abort.__context__, KeyboardInterrupt):
                note("\nInterrupted.")
                ctx.exit(Exit.INTERRUPTED)
            raise


@click.group(
    cls=_Group,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(package_name="finetune-ops")
@click.option(
    "-v", "--verbose", count=True, help="Log failures and retries (-v) or every request (-vv)."
)
def cli(verbose: int) -> None:
    """Cancel, watch and list Together AI fine-tuning jobs, one or thousands at a time.

    The API key comes from TOGETHER_API_KEY or --api-key-file; the API root from
    --base-url or TOGETHER_BASE_URL. Try `finetune-ops demo` first: it needs neither.

    Exit status: 0 when every job ended as asked, 1 when some did not (listed on
    stderr), 2 for a usage or configuration error, 130 when interrupted.
    """
    if verbose:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger = logging.getLogger("finetune_ops")
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG if verbose > 1 else logging.INFO)


# -- options shared by the batch commands ----------------------------------------------


def _batch_options(command: F) -> F:
    options = (
        click.argument("ids", nargs=-1, metavar="[ID]..."),
        click.option(
            "--from-file",
            metavar="PATH",
            help="Also read ids from PATH ('-' for stdin): one per line, # starts a comment.",
        ),
        click.option(
            "--timeout",
            type=click.FloatRange(min=0),
            metavar="SECONDS",
            help="Stop waiting this long after the start; jobs not done by then fail "
            "(default: 600).",
        ),
        click.option(
            "--concurrency",
            type=click.IntRange(min=1),
            default=32,
            show_default=True,
            metavar="N",
            help="Requests in flight at once.",
        ),
        click.option(
            "--json", "json_output", is_flag=True, help="Print one JSON line per job result."
        ),
        click.option(
            "--journal",
            "journal_path",
            type=click.Path(dir_okay=False, path_type=Path),
            metavar="PATH",
            help="Append each result to PATH as it completes; a rerun skips jobs done there.",
        ),
        click.option("-q", "--quiet", is_flag=True, help="No progress on stderr."),
    )
    for option in reversed(options):
        command = option(command)
    return command


def _open_journal(path: Path | None) -> Journal | None:
    return None if path is None else Journal(path)


def _stdin_is_terminal() -> bool:
    return sys.stdin is not None and sys.stdin.isatty()


def _call(main: Coroutine[Any, Any, T]) -> T:
    """Run one request-and-answer command; an API error ends it with one line, status 1."""
    try:
        return asyncio.run(main)
    except InvalidJobIdError as error:
        raise ConfigError(str(error)) from None
    except FinetuneOpsError as error:
        note(f"error: {describe_error(error)}")
        if isinstance(error, AuthenticationError):
            note(auth_hint())
        raise click.exceptions.Exit(Exit.FAILED) from None


def _manager(connection: Connection, **options: Any) -> JobManager:
    return JobManager(
        api_key=connection.api_key,
        base_url=connection.base_url,
        allow_insecure_http=connection.allow_insecure_http,
        **options,
    )


async def _list_jobs(connection: Connection) -> list[FineTuneJob]:
    async with _manager(connection) as jobs:
        return await jobs.list()


# -- cancel and wait ---------------------------------------------------------------------


@cli.command()
@_batch_options
@click.option(
    "--all-active",
    is_flag=True,
    help="Cancel every job of the account that has not ended (asks first).",
)
@click.option(
    "--wait/--no-wait",
    default=True,
    show_default=True,
    help="Wait until each job is terminal, or return once the API accepted the cancel.",
)
@click.option("-y", "--yes", is_flag=True, help="Do not ask before --all-active.")
@api_options
@click.pass_context
def cancel(
    ctx: click.Context,
    ids: tuple[str, ...],
    from_file: str | None,
    timeout: float | None,
    concurrency: int,
    json_output: bool,
    journal_path: Path | None,
    quiet: bool,
    all_active: bool,
    wait: bool,
    yes: bool,
    base_url: str | None,
    api_key_file: Path | None,
    allow_insecure_http: bool,
) -> None:
    """Cancel jobs: by id, from a file, or every active one.

    \b
      finetune-ops cancel ft-1234 ft-5678
      finetune-ops cancel --from-file ids.txt --journal cancel.jsonl
      finetune-ops cancel --all-active --yes --json > results.jsonl
    """
    if all_active and (ids or from_file):
        raise ConfigError("--all-active cancels every active job; give no ids with it")
    if not (ids or from_file or all_active):
        raise ConfigError("nothing to cancel: give job ids, --from-file PATH, or --all-active")
    if all_active and not yes and not _stdin_is_terminal():
        raise ConfigError(
            "--all-active asks before cancelling, but stdin is not a terminal; "
            "pass --yes to cancel without asking"
        )
    connection = Connection.from_options(base_url, api_key_file, allow_insecure_http)
    journal = _open_journal(journal_path)
    job_ids = _active_ids(connection, ask=not yes) if all_active else read_ids(ids, from_file)
    if not job_ids:
        if not all_active:
            note("No job ids given: nothing to cancel.")
        ctx.exit(Exit.OK)
    plan = Plan(cancel=True, wait=wait, timeout=timeout, concurrency=concurrency)
    ctx.exit(
        execute(connection, job_ids, plan, journal=journal, json_output=json_output, quiet=quiet)
    )


def _active_ids(connection: Connection, *, ask: bool) -> list[str]:
    """The ids of the account's jobs that have not ended, after asking when ``ask``."""
    active = [job for job in _call(_list_jobs(connection)) if not job.status.is_terminal]
    if not active:
        note("No active jobs: nothing to cancel.")
        return []
    counts = Counter(str(job.status) for job in active)
    shown = ", ".join(f"{status} {count}" for status, count in counts.most_common())
    note(f"{len(active)} active jobs at {connection.base_url} ({shown}).")
    if ask and not click.confirm(f"Cancel all {len(active)}?", default=False, err=True):
        note("Nothing was cancelled.")
        raise click.exceptions.Exit(Exit.FAILED)
    return [job.id for job in active]


@cli.command()
@_batch_options
@api_options
@click.pass_context
def wait(
    ctx: click.Context,
    ids: tuple[str, ...],
    from_file: str | None,
    timeout: float | None,
    concurrency: int,
    json_output: bool,
    journal_path: Path | None,
    quiet: bool,
    base_url: str | None,
    api_key_file: Path | None,
    allow_insecure_http: bool,
) -> None:
    """Wait until jobs end (completed, cancelled, failed); cancel none.

    \b
      finetune-ops wait ft-1234 --timeout 3600
    """
    if not (ids or from_file):
        raise ConfigError("nothing to wait for: give job ids or --from-file PATH")
    connection = Connection.from_options(base_url, api_key_file, allow_insecure_http)
    journal = _open_journal(journal_path)
    plan = Plan(cancel=False, wait=True, timeout=timeout, concurrency=concurrency)
    job_ids = read_ids(ids, from_file)
    if not job_ids:
        note("No job ids given: nothing to wait for.")
        ctx.exit(Exit.OK)
    ctx.exit(
        execute(connection, job_ids, plan, journal=journal, json_output=json_output, quiet=quiet)
    )


# -- looking at jobs ---------------------------------------------------------------------


@cli.command()
@click.argument("ids", nargs=-1, required=True, metavar="ID...")
@click.option("--json", "json_output", is_flag=True, help="Print each job's record as JSON.")
@api_options
@click.pass_context
def status(
    ctx: click.Context,
    ids: tuple[str, ...],
    json_output: bool,
    base_url: str | None,
    api_key_file: Path | None,
    allow_insecure_http: bool,
) -> None:
    """Show jobs: status, model, last update and time left.

    \b
      finetune-ops status ft-1234 ft-5678
    """
    connection = Connection.from_options(base_url, api_key_file, allow_insecure_http)
    job_ids = list(dict.fromkeys(ids))

    async def fetch() -> list[FineTuneJob | FinetuneOpsError]:
        async with _manager(connection) as jobs:

            async def one(job_id: str) -> FineTuneJob | FinetuneOpsError:
                try:
                    return await jobs.retrieve(job_id)
                except FinetuneOpsError as error:
                    return error

            return await asyncio.gather(*(one(job_id) for job_id in job_ids))

    answers = asyncio.run(fetch())
    found = [answer for answer in answers if isinstance(answer, FineTuneJob)]
    if json_output:
        for job in found:
            echo_json(unstructure(job))
    elif found:
        stdout_console().print(jobs_table(found))
    failed = [
        (job_id, answer)
        for job_id, answer in zip(job_ids, answers, strict=True)
        if isinstance(answer, FinetuneOpsError)
    ]
    for job_id, error in failed:
        note(f"failed: {job_id}: {describe_error(error)}")
    if any(isinstance(error, AuthenticationError) for _, error in failed):
        note(auth_hint())
    ctx.exit(Exit.FAILED if failed else Exit.OK)


@cli.command(name="list")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    metavar="STATUS",
    help="Only jobs in this status (repeatable), e.g. --status running --status queued.",
)
@click.option("--json", "json_output", is_flag=True, help="Print each job's record as JSON.")
@api_options
def list_jobs(
    statuses: tuple[str, ...],
    json_output: bool,
    base_url: str | None,
    api_key_file: Path | None,
    allow_insecure_http: bool,
) -> None:
    """List the account's jobs, optionally only those in some statuses.

    \b
      finetune-ops list --status running --status queued
    """
    connection = Connection.from_options(base_url, api_key_file, allow_insecure_http)
    wanted = {status.strip().lower() for status in statuses}
    jobs = [
        job for job in _call(_list_jobs(connection)) if not wanted or job.status.lower() in wanted
    ]
    if json_output:
        for job in jobs:
            echo_json(unstructure(job))
    else:
        stdout_console().print(jobs_table(jobs, created=True))
    counts = Counter(str(job.status) for job in jobs)
    shown = ", ".join(f"{name} {count}" for name, count in counts.most_common())
    note(f"{len(jobs)} jobs" + (f" ({shown})" if shown else ""))


@cli.command()
@click.argument("job_id", metavar="ID")
@click.option("--json", "json_output", is_flag=True, help="Print each event as JSON.")
@api_options
def events(
    job_id: str,
    json_output: bool,
    base_url: str | None,
    api_key_file: Path | None,
    allow_insecure_http: bool,
) -> None:
    """Show a job's event log, oldest first.

    \b
      finetune-ops events ft-1234
    """
    connection = Connection.from_options(base_url, api_key_file, allow_insecure_http)

    async def fetch() -> tuple[FineTuneEvent, ...]:
        async with _manager(connection) as jobs:
            return await jobs.events(job_id)

    found = _call(fetch())
    if json_output:
        for event in found:
            echo_json(unstructure(event))
    else:
        stdout_console().print(events_table(found))


# -- the simulator ---------------------------------------------------------------------


def _simulation_options(*, fault_rate: float) -> Callable[[F], F]:
    """The options that shape a simulated API: its faults, its seed, its cancel delay."""

    def decorate(command: F) -> F:
        options = (
            click.option(
                "--fault-rate",
                type=click.FloatRange(0, 1),
                default=fault_rate,
                show_default=True,
                help="Share of requests that fail on purpose (429, 5xx, resets, broken bodies).",
            ),
            click.option(
                "--seed", type=int, default=0, show_default=True, help="Seed for ids and faults."
            ),
            click.option(
                "--cancel-delay",
                type=click.FloatRange(min=0),
                default=1.0,
                show_default=True,
                help="Seconds a simulated job takes to stop after its cancel.",
            ),
        )
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


@cli.command(
    add_help_option=False,
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.argument("options", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def simulate(ctx: click.Context, options: tuple[str, ...]) -> None:
    """Serve a simulated Together fine-tunes API until Ctrl-C.

    Its options are listed by `finetune-ops simulate --help`. It prints its base
    URL and the lines to export so that the other commands (and the official
    SDKs) use it:

    \b
      finetune-ops simulate --jobs 100 --fault-rate 0.05
      export TOGETHER_BASE_URL=http://127.0.0.1:8080/v1
    """
    # The options are those of `python -m finetune_ops.testing`, defined there once.
    from finetune_ops.testing.__main__ import main as serve

    defaults = {"port": 8080, "jobs": 20}
    ctx.exit(serve(list(options), prog="finetune-ops simulate", defaults=defaults))


@cli.command()
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=500,
    show_default=True,
    help="Running jobs to cancel.",
)
@_simulation_options(fault_rate=0.05)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@click.pass_context
def demo(
    ctx: click.Context,
    jobs: int,
    fault_rate: float,
    seed: int,
    cancel_delay: float,
    quiet: bool,
) -> None:
    """Watch 500 simulated jobs get cancelled through injected faults.

    Runs a simulated API in this process: no key and no network needed.
    """
    from ._demo import run_demo

    ctx.exit(
        run_demo(
            jobs=jobs, fault_rate=fault_rate, seed=seed, cancel_delay=cancel_delay, quiet=quiet
        )
    )

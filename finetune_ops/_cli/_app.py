"""The commands of ``finetune-ops``: thin click wrappers over JobManager and the simulator."""

from __future__ import annotations

import asyncio
import errno
import logging
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console

from finetune_ops._converter import unstructure
from finetune_ops._errors import AuthenticationError, FinetuneOpsError
from finetune_ops._manager import JobManager
from finetune_ops._records import FineTuneJob, JobStatus

from ._batch import Plan
from ._batch_command import run_batch, write_records
from ._config import Connection, api_options
from ._exit import ConfigError, Exit
from ._formats import chosen_format, output_options
from ._inputs import check_ids
from ._output import auth_hint, describe_error, note, silence_stdout, stdout_console
from ._requests import call, fetch_jobs, manager
from ._selectors import FAIL_ON, Selector, newest_first, selector_from, selector_options
from ._signals import Stopped
from ._tables import checkpoints_table, events_table, job_rows, render_jobs
from ._times import DURATION

__all__ = ["cli"]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., object])

#: The columns of ``-o csv`` for jobs and events.
JOB_COLUMNS = ("id", "status", "model", "suffix", "created_at", "updated_at", "model_output_name")
EVENT_COLUMNS = ("created_at", "level", "type", "message")
CHECKPOINT_COLUMNS = ("step", "created_at", "checkpoint_type", "path")


class _Group(click.Group):
    """Turns a signal anywhere (a prompt, a request) into its exit status and one line,
    a closed stdout into exit status 141, and a full one into one error line."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as interrupt:
            note("\nInterrupted.")
            ctx.exit(_signal_exit(interrupt))
        except click.Abort as abort:
            if isinstance(abort.__context__, KeyboardInterrupt):
                note("\nInterrupted.")
                ctx.exit(_signal_exit(abort.__context__))
            raise
        except BrokenPipeError:
            silence_stdout()
            ctx.exit(Exit.STDOUT_CLOSED)
        except OSError as error:
            if error.errno not in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
                raise
            silence_stdout()
            note(f"error: cannot write to stdout: {error.strerror}")
            ctx.exit(Exit.FAILED)


def _signal_exit(interrupt: KeyboardInterrupt) -> Exit:
    if isinstance(interrupt, Stopped):
        return Exit.for_signal(interrupt.signum)
    return Exit.INTERRUPTED


@click.group(
    cls=_Group,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(package_name="finetune-ops")
@click.option(
    "-v", "--verbose", count=True, help="Log failures and retries (-v) or every request (-vv)."
)
@api_options
def cli(
    verbose: int, base_url: str | None, api_key_file: Path | None, allow_insecure_http: bool
) -> None:
    """Cancel, watch and list Together AI fine-tuning jobs, one or thousands at a time.

    The API key comes from TOGETHER_API_KEY or --api-key-file; the API root from
    --base-url or TOGETHER_BASE_URL. The connection options work before the
    command name or after it. Try `finetune-ops demo` first: it needs neither.

    \b
    Exit status:
      0    every job ended as asked
      1    some jobs did not (listed on stderr), or the journal or stdout was not writable
      2    usage or configuration error; nothing was sent
      3    the API refused the key
      4    answered no at the prompt; nothing was sent
      129, 130, 143  stopped by SIGHUP, SIGINT (Ctrl-C), SIGTERM after reporting
      141  stdout was closed (| head)
    """
    if verbose:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger = logging.getLogger("finetune_ops")
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG if verbose > 1 else logging.INFO)


# -- plumbing shared by the commands ------------------------------------------------------


def stdin_is_terminal() -> bool:
    return sys.stdin is not None and sys.stdin.isatty()


def _color() -> bool:
    console = Console()
    return console.is_terminal and not console.no_color


def _print_jobs(jobs: Sequence[FineTuneJob], *, created: bool = False) -> None:
    click.echo("\n".join(render_jobs(job_rows(jobs, created=created), color=_color())))


def _selection_options(command: F) -> F:
    """The options of every batch command: which jobs, how hard to push, what to print."""
    options = (
        click.argument("ids", nargs=-1, metavar="[ID]..."),
        click.option(
            "--from-file",
            metavar="PATH",
            help="Also read ids from PATH ('-' for stdin): one per line, # starts a comment.",
        ),
        selector_options,
        click.option(
            "--dry-run", is_flag=True, help="Print the jobs this would act on; send nothing."
        ),
        click.option(
            "--timeout",
            type=DURATION,
            metavar="DURATION",
            help="Stop waiting this long after the start (600, 90s, 15m, 1h); jobs not done "
            "by then fail (default: 10m).",
        ),
        click.option(
            "--concurrency",
            type=click.IntRange(min=1),
            default=32,
            show_default=True,
            metavar="N",
            help="Requests in flight at once.",
        ),
        output_options,
        click.option("-q", "--quiet", is_flag=True, help="No progress on stderr."),
        click.option(
            "-y",
            "--yes",
            is_flag=True,
            help="Do not ask before cancelling a selection or deleting.",
        ),
        api_options,
    )
    for option in reversed(options):
        command = option(command)
    return command


def _journal_options(command: F) -> F:
    """``--journal`` and ``--journal-records``, for the commands that resume (cancel, wait)."""
    options = (
        click.option(
            "--journal",
            "journal_path",
            type=click.Path(dir_okay=False, path_type=Path),
            metavar="PATH",
            help="Record each accepted cancel and each result in PATH as it happens; "
            "a rerun with it sends no cancel twice and skips what is done.",
        ),
        click.option(
            "--journal-records",
            is_flag=True,
            help="Keep each job's full record in the journal's result lines.",
        ),
    )
    for option in reversed(options):
        command = option(command)
    return command


def _batch_options(command: F) -> F:
    return _selection_options(_journal_options(command))


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
@click.option(
    "--fail-on",
    type=FAIL_ON,
    default="none",
    show_default=True,
    metavar="STATUSES",
    help="Terminal statuses that count as failures (comma-separated, or none).",
)
@click.pass_context
def cancel(ctx: click.Context, /, **options: Any) -> None:
    """Cancel jobs: by id, from a file, by selection, or every active one.

    Selections (--all-active, --status, --model, --created-before/--created-after,
    --suffix) choose among the account's jobs that have not ended; with ids too,
    only among those ids. A selection asks before cancelling unless --yes.

    \b
      finetune-ops cancel ft-1234 ft-5678
      finetune-ops cancel --from-file ids.txt --journal cancel.jsonl
      finetune-ops cancel --status queued --created-before 2h --dry-run
      finetune-ops cancel --all-active --yes -o jsonl > results.jsonl
    """
    ids, from_file = options["ids"], options["from_file"]
    selector = _selector(options)
    all_active = options["all_active"]
    ended = sorted(status for status in selector.statuses if JobStatus(status).is_terminal)
    if ended:
        raise ConfigError(
            f"--status {ended[0]}: cancel selects only jobs that have not ended; "
            "a job in that status has nothing to cancel"
        )
    if all_active and (ids or from_file):
        raise ConfigError("--all-active cancels every active job; give no ids with it")
    if not (ids or from_file or all_active or selector):
        raise ConfigError(
            "nothing to cancel: give job ids, --from-file PATH, a selection such as "
            "--status, or --all-active"
        )
    needs_prompt = (all_active or selector) and not (options["yes"] or options["dry_run"])
    if needs_prompt and not stdin_is_terminal():
        raise ConfigError(
            "a selection asks before cancelling, but stdin is not a terminal; "
            "pass --yes to cancel without asking"
        )
    plan = Plan(
        cancel=True,
        wait=options["wait"],
        timeout=options["timeout"],
        concurrency=options["concurrency"],
        fail_on=options["fail_on"],
    )
    ctx.exit(_batch_command("cancel", plan, options, selector, select_all=all_active))


@cli.command()
@_batch_options
@click.option(
    "--fail-on",
    type=FAIL_ON,
    default="error,user_error",
    show_default=True,
    metavar="STATUSES",
    help="Terminal statuses that count as failures, for exit status 1 (comma-separated, or none).",
)
@click.pass_context
def wait(ctx: click.Context, /, **options: Any) -> None:
    """Wait until jobs end (completed, cancelled, error or user_error); cancel none.

    A job that ends in error or user_error counts as failed (exit status 1)
    unless --fail-on says otherwise.

    \b
      finetune-ops wait ft-1234 --timeout 1h
      finetune-ops wait --status running --model org/base-model -o jsonl
    """
    selector = _selector(options)
    if not (options["ids"] or options["from_file"] or selector):
        raise ConfigError("nothing to wait for: give job ids, --from-file PATH or a selection")
    plan = Plan(
        cancel=False,
        wait=True,
        timeout=options["timeout"],
        concurrency=options["concurrency"],
        fail_on=options["fail_on"],
    )
    ctx.exit(_batch_command("wait", plan, options, selector, select_all=False))


@cli.command()
@_selection_options
@click.option(
    "--cancel-first",
    is_flag=True,
    help="Cancel a job that has not ended, wait until it has, then delete it; without this "
    "an active job is refused (and counts as failed).",
)
@click.pass_context
def delete(ctx: click.Context, /, **options: Any) -> None:
    """Delete jobs: by id, from a file, or by selection. Asks first unless --yes.

    Selections (--status, --model, --created-before/--created-after, --suffix)
    choose among all the account's jobs; with ids too, only among those ids.
    A job not found (404) fails on its own; the others are still deleted.

    \b
      finetune-ops delete --status cancelled --status error --dry-run
      finetune-ops delete ft-1234 ft-5678 --yes
      finetune-ops delete --from-file ids.txt --cancel-first --yes --json
    """
    selector = _selector(options)
    if not (options["ids"] or options["from_file"] or selector):
        raise ConfigError(
            "nothing to delete: give job ids, --from-file PATH or a selection such as --status"
        )
    if not (options["yes"] or options["dry_run"]) and not stdin_is_terminal():
        raise ConfigError(
            "delete asks before deleting, but stdin is not a terminal; "
            "pass --yes to delete without asking"
        )
    plan = Plan(
        cancel=options["cancel_first"],
        wait=False,
        delete=True,
        timeout=options["timeout"],
        concurrency=options["concurrency"],
    )
    ctx.exit(_batch_command("delete", plan, options, selector, select_all=False))


def _selector(options: dict[str, Any]) -> Selector:
    return selector_from(
        options["statuses"],
        options["model"],
        options["created_before"],
        options["created_after"],
        options["suffix"],
    )


def _batch_command(
    command: str, plan: Plan, options: dict[str, Any], selector: Selector, *, select_all: bool
) -> Exit:
    fmt = chosen_format(options["output"], options["json_output"])
    connection = Connection.from_options(
        options["base_url"], options["api_key_file"], options["allow_insecure_http"]
    )
    return run_batch(
        command=command,
        plan=plan,
        ids=options["ids"],
        from_file=options["from_file"],
        selector=selector,
        select_all=select_all,
        dry_run=options["dry_run"],
        fmt=fmt,
        journal_path=options.get("journal_path"),
        journal_records=options.get("journal_records", False),
        quiet=options["quiet"],
        yes=options["yes"],
        connection=connection,
    )


# -- looking at jobs ---------------------------------------------------------------------


@cli.command()
@click.argument("ids", nargs=-1, required=True, metavar="ID...")
@output_options
@api_options
@click.pass_context
def status(
    ctx: click.Context,
    ids: tuple[str, ...],
    output: str | None,
    json_output: bool,
    base_url: str | None,
    api_key_file: Path | None,
    allow_insecure_http: bool,
) -> None:
    """Show jobs: status, model, last update and time left.

    \b
      finetune-ops status ft-1234 ft-5678
    """
    fmt = chosen_format(output, json_output)
    connection = Connection.from_options(base_url, api_key_file, allow_insecure_http)
    job_ids = list(dict.fromkeys(ids))
    check_ids(job_ids)

    async def fetch() -> list[FineTuneJob | FinetuneOpsError]:
        async with manager(connection) as jobs:

            async def one(job_id: str) -> FineTuneJob | FinetuneOpsError:
                try:
                    return await jobs.retrieve(job_id)
                except FinetuneOpsError as error:
                    return error

            return await asyncio.gather(*(one(job_id) for job_id in job_ids))

    answers = asyncio.run(fetch())
    found = [answer for answer in answers if isinstance(answer, FineTuneJob)]
    if fmt == "table":
        if found:
            _print_jobs(found)
    else:
        write_records(fmt, [unstructure(job) for job in found], JOB_COLUMNS)
    failed = [
        (job_id, answer)
        for job_id, answer in zip(job_ids, answers, strict=True)
        if isinstance(answer, FinetuneOpsError)
    ]
    for job_id, error in failed:
        note(f"failed: {job_id}: {describe_error(error)}")
    if any(isinstance(error, AuthenticationError) for _, error in failed):
        note(auth_hint())
        ctx.exit(Exit.REFUSED)
    ctx.exit(Exit.FAILED if failed else Exit.OK)


@cli.command(name="list")
@selector_options
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    metavar="N",
    help="Only the N most recently created jobs (after the other filters).",
)
@output_options
@api_options
def list_jobs(
    statuses: tuple[str, ...],
    model: str | None,
    created_before: datetime | None,
    created_after: datetime | None,
    suffix: str | None,
    limit: int | None,
    output: str | None,
    json_output: bool,
    base_url: str | None,
    api_key_file: Path | None,
    allow_insecure_http: bool,
) -> None:
    """List the account's jobs, newest first, optionally only some of them.

    \b
      finetune-ops list --status running --status queued
      finetune-ops list --created-after 1d --limit 20 -o csv
    """
    fmt = chosen_format(output, json_output)
    connection = Connection.from_options(base_url, api_key_file, allow_insecure_http)
    selector = selector_from(statuses, model, created_before, created_after, suffix)
    jobs = newest_first(selector.select(call(fetch_jobs(connection))))
    if limit is not None:
        jobs = jobs[:limit]
    if fmt == "table":
        _print_jobs(jobs, created=True)
    else:
        write_records(fmt, [unstructure(job) for job in jobs], JOB_COLUMNS)
    counts = Counter(str(job.status) for job in jobs)
    shown = ", ".join(f"{name} {count}" for name, count in counts.most_common())
    note(f"{len(jobs)} jobs" + (f" ({shown})" if shown else ""))


@cli.command()
@click.argument("job_id", metavar="ID")
@output_options
@api_options
def events(
    job_id: str,
    output: str | None,
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
    _show_job_records(
        job_id, connection, chosen_format(output, json_output),
        read=JobManager.events, table=events_table, columns=EVENT_COLUMNS,
    )  # fmt: skip


@cli.command()
@click.argument("job_id", metavar="ID")
@output_options
@api_options
def checkpoints(
    job_id: str,
    output: str | None,
    json_output: bool,
    base_url: str | None,
    api_key_file: Path | None,
    allow_insecure_http: bool,
) -> None:
    """Show the checkpoints a job saved, oldest first: what is left of it before a delete.

    \b
      finetune-ops checkpoints ft-1234
      finetune-ops checkpoints ft-1234 -o json
    """
    connection = Connection.from_options(base_url, api_key_file, allow_insecure_http)
    found = _show_job_records(
        job_id, connection, chosen_format(output, json_output),
        read=JobManager.checkpoints, table=checkpoints_table, columns=CHECKPOINT_COLUMNS,
    )  # fmt: skip
    note(f"{found} checkpoints")


def _show_job_records(
    job_id: str,
    connection: Connection,
    fmt: str,
    *,
    read: Callable[[JobManager, str], Awaitable[Sequence[Any]]],
    table: Callable[[Any], Any],
    columns: Sequence[str],
) -> int:
    """One job's events or checkpoints, as a table or records; returns how many."""
    check_ids([job_id])

    async def fetch() -> Sequence[Any]:
        async with manager(connection) as jobs:
            return await read(jobs, job_id)

    found = call(fetch())
    if fmt == "table":
        stdout_console().print(table(found))
    else:
        write_records(fmt, [unstructure(record) for record in found], columns)
    return len(found)


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

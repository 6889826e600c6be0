"""A batch command (``cancel``, ``wait``, ``delete``) from its options to its exit status.

In this order, so that nothing is sent before every check has passed: lock and
check the journal, read and check the ids, select from the account's list, split
what the journal has done, then show (``--dry-run``), ask, and run.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from finetune_ops._records import FineTuneJob

from ._batch import DELETE_COLUMNS, RESULT_COLUMNS, Plan, Work, execute
from ._config import Connection
from ._exit import ConfigError, Exit
from ._formats import RecordWriter
from ._inputs import check_ids, read_ids
from ._journal import Journal
from ._output import note
from ._requests import call, fetch_jobs
from ._selectors import Selector
from ._summary import Summary
from ._tables import render_jobs

__all__ = ["run_batch", "write_records"]


def write_records(fmt: str, records: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    """Write ``records`` to stdout in the machine format ``fmt``."""
    writer = RecordWriter(fmt, columns)
    for record in records:
        writer.write(record)
    writer.close()


def _same_file(first: str, second: Path) -> bool:
    try:
        return os.path.samefile(first, second)
    except OSError:
        return os.path.realpath(first) == os.path.realpath(second)


def _open_journal(
    path: Path | None, from_file: str | None, *, command: str, connection: Connection, records: bool
) -> Journal | None:
    if path is None:
        return None
    if from_file not in (None, "-") and _same_file(from_file, path):
        raise ConfigError(f"--journal {str(path)!r} is the --from-file input; give another path")
    journal = Journal(path, command=command, base_url=connection.base_url, records=records)
    return journal.open()


def _select(
    connection: Connection,
    *,
    active_only: bool,
    ids: Sequence[str],
    selector: Selector,
) -> list[FineTuneJob]:
    """The account's jobs that the selector keeps (with ``active_only``, only those not ended).

    With ids too, only those of them; an id not in the account's list is left out.
    """
    listing = call(fetch_jobs(connection))
    jobs = [job for job in listing if not (active_only and job.status.is_terminal)]
    jobs = selector.select(jobs)
    if ids:
        wanted = set(ids)
        known = {job.id for job in listing}
        missing = [job_id for job_id in ids if job_id not in known]
        if missing:
            shown = ", ".join(missing[:5]) + (
                f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            )
            note(f"not in the account's list, left out: {shown}")
        jobs = [job for job in jobs if job.id in wanted]
    return jobs


def _announce(
    connection: Connection, plan: Plan, job_ids: Sequence[str], found: dict[str, FineTuneJob]
) -> None:
    """Say how many jobs are about to be cancelled or deleted, by status when listed."""
    counts = Counter(str(found[job_id].status) for job_id in job_ids if job_id in found)
    shown = ", ".join(f"{status} {count}" for status, count in counts.most_common())
    which = "active jobs" if plan.verb == "cancel" else "jobs"
    detail = f" ({shown})" if shown else ""
    note(f"{len(job_ids)} {which} to {plan.verb} at {connection.base_url}{detail}.")


def _ask(plan: Plan, count: int) -> None:
    """Ask before sending; a no ends the command with nothing sent."""
    if not click.confirm(f"{plan.verb.capitalize()} all {count}?", default=False, err=True):
        note(f"Nothing was {'deleted' if plan.delete else 'cancelled'}.")
        raise click.exceptions.Exit(Exit.DECLINED)


def _dry_run(fmt: str, plan: Plan, work: Work, jobs: dict[str, FineTuneJob]) -> None:
    rows: list[dict[str, Any]] = []
    sending = plan.verb if plan.sends else "cancel"
    waiting = "wait" if plan.wait else "report"  # an accepted cancel is not sent again
    for action, ids in ((sending, work.send), (waiting, work.wait)):
        for job_id in ids:
            job = jobs.get(job_id)
            rows.append(
                {
                    "id": job_id,
                    "action": action,
                    "status": None if job is None else str(job.status),
                    "model": None if job is None else job.model,
                }
            )
    if fmt == "table":
        cells = [["id", "action", "status", "model"]]
        cells += [
            [row["id"], row["action"], row["status"] or "-", row["model"] or "-"] for row in rows
        ]
        click.echo("\n".join(render_jobs(cells, color=False)))
    else:
        write_records(fmt, rows, ("id", "action", "status", "model"))
    note(f"dry run: {len(rows)} jobs would be acted on; nothing was sent")


def _split(journal: Journal | None, job_ids: list[str], plan: Plan, summary: Summary) -> Work:
    """What is left to do once the journal's state is taken into account.

    A job is done when its last result was ok (and, when waiting, it had ended);
    the rest run again from the journal's state, so no accepted cancel is resent.
    """
    if journal is None:
        return Work(send=job_ids) if plan.sends else Work(wait=job_ids)
    state = journal.state(job_ids)
    if journal.unreadable:
        lines = ", ".join(map(str, journal.unreadable))
        more = journal.unreadable_count - len(journal.unreadable)
        extra = f" and {more} more" if more else ""
        note(f"warning: journal {str(journal.path)!r}: ignored unreadable lines {lines}{extra}")
    state.reopen(unended=plan.wait)
    done = state.finished
    summary.skipped = len(done)
    summary.skipped_failed = sum(
        1 for job_id in done if (state.jobs[job_id].result or {}).get("status") in plan.fail_on
    )
    if done:
        note(f"journal: {len(done)} of {len(job_ids)} jobs already done; skipping them")
    run = state.subset(state.pending)
    accepted = [job_id for job_id, job in run.jobs.items() if job.cancel_accepted]
    if not plan.cancel:
        return Work(wait=list(run.jobs), state=run)
    if accepted:
        doing = "only waiting for them" if plan.wait else "not sending them again"
        note(f"journal: {len(accepted)} cancels accepted before; {doing}")
    send = [job_id for job_id, job in run.jobs.items() if not job.cancel_accepted]
    return Work(send=send, wait=accepted, state=run)


def run_batch(
    *,
    command: str,
    plan: Plan,
    ids: tuple[str, ...],
    from_file: str | None,
    selector: Selector,
    select_all: bool,
    dry_run: bool,
    fmt: str,
    journal_path: Path | None,
    journal_records: bool,
    quiet: bool,
    yes: bool,
    connection: Connection,
) -> Exit:
    """Choose the jobs, consult the journal, then run the batch (or only show it)."""
    selecting = select_all or bool(selector)
    if journal_records and journal_path is None:
        raise ConfigError("--journal-records keeps records in the journal; give --journal PATH")
    if dry_run and journal_path is not None and not journal_path.exists():
        journal_path = None  # a dry run reads a journal, never starts one
    journal = _open_journal(
        journal_path, from_file, command=command, connection=connection, records=journal_records
    )
    try:
        given = read_ids(ids, from_file)
        check_ids(given)
        found: dict[str, FineTuneJob] = {}
        if selecting:
            active_only = plan.cancel and not plan.delete
            selected = _select(connection, active_only=active_only, ids=given, selector=selector)
            found = {job.id: job for job in selected}
            job_ids = list(found)
            if not job_ids:
                note("No jobs match the selection: nothing to do.")
                return Exit.OK
        else:
            job_ids = given
            if not job_ids:
                note("No job ids given: nothing to do.")
                return Exit.OK
        summary = Summary(
            cancel=plan.cancel, fail_on=plan.fail_on, delete=plan.delete, total=len(job_ids)
        )
        work = _split(journal, job_ids, plan, summary)
        if dry_run:
            _dry_run(fmt, plan, work, found)
            return Exit.OK
        # A delete always asks (it cannot be undone); a cancel only for a selection.
        if work.send and (plan.delete or (plan.cancel and selecting)):
            _announce(connection, plan, work.send, found)
            if not yes:
                _ask(plan, len(work.send))
        writer = None
        if fmt != "table":
            writer = RecordWriter(fmt, DELETE_COLUMNS if plan.delete else RESULT_COLUMNS)
        run_journal, journal = journal, None  # execute closes it
        return execute(
            connection, work, plan, summary=summary, journal=run_journal, writer=writer, quiet=quiet
        )
    finally:
        if journal is not None:
            journal.close()

"""``-o table|json|jsonl|csv``: how records go to stdout.

- ``table`` (the default): for people; the command draws it.
- ``jsonl`` (also ``--json``): one JSON object per line, written as each record comes.
- ``json``: one JSON array, streamed item by item, closed when the command ends.
- ``csv``: a header row, then one row per record, with the command's columns.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import click

from ._exit import ConfigError

__all__ = ["FORMATS", "RecordWriter", "chosen_format", "output_options"]

F = TypeVar("F", bound=Callable[..., object])

FORMATS = ("table", "json", "jsonl", "csv")


def output_options(command: F) -> F:
    """Add ``-o/--output FORMAT`` and ``--json`` (the same as ``-o jsonl``)."""
    command = click.option(
        "--json", "json_output", is_flag=True, help="One JSON object per line (same as -o jsonl)."
    )(command)
    return click.option(
        "-o",
        "--output",
        type=click.Choice(FORMATS),
        default=None,
        help="Output format on stdout (default: table).",
    )(command)


def chosen_format(output: str | None, json_output: bool) -> str:
    """The format asked for; ``--json`` with another ``-o`` is a usage error."""
    if json_output:
        if output not in (None, "jsonl"):
            raise ConfigError(f"--json means -o jsonl; it cannot be combined with -o {output}")
        return "jsonl"
    return output or "table"


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


class RecordWriter:
    """Writes records to stdout as they come, in one of the machine formats.

    ``columns`` names the csv columns; a column missing from a record is empty,
    and a nested value is written as compact JSON.
    """

    def __init__(self, fmt: str, columns: Sequence[str] = ()) -> None:
        if fmt not in ("json", "jsonl", "csv"):
            raise ValueError(f"not a machine format: {fmt!r}")
        self.format = fmt
        self._columns = list(columns)
        self._count = 0
        self._closed = False

    def write(self, record: Mapping[str, Any]) -> None:
        if self.format == "jsonl":
            click.echo(json.dumps(record, separators=(",", ":")))
        elif self.format == "json":
            prefix = "[" if self._count == 0 else ","
            click.echo(prefix + json.dumps(record, separators=(",", ":")))
        else:
            if self._count == 0:
                self._row(self._columns)
            self._row([_cell(record.get(column)) for column in self._columns])
        self._count += 1

    def _row(self, cells: Sequence[str]) -> None:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerow(cells)
        click.echo(buffer.getvalue(), nl=False)

    def close(self) -> None:
        """End the output: close the JSON array, or write the csv header of an empty one."""
        if self._closed:
            return
        self._closed = True
        if self.format == "json":
            click.echo("[]" if self._count == 0 else "]")
        elif self.format == "csv" and self._count == 0:
            self._row(self._columns)

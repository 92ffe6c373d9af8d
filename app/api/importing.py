"""``prefcenter subscribers import FILE``: CSV or NDJSON in, the batch upsert's rules, streaming.

Each row is validated by the batch item's own model (:class:`SubscriberBatchItem`), then
upserted in chunks by :func:`app.api.services.upsert_batch`, one transaction per chunk, so
memory stays flat whatever the file's size. A row that fails (schema, 409, 422) is
reported with its line number and leaves the others be; the exit status is 1 if any did.

CSV columns: ``external_id`` (required), ``email``, ``locale``, ``role``,
``unsubscribed_all`` (true/false), ``phone``, ``paused_until`` (ISO 8601 with a zone), and
per topic ``topic.<slug>`` (true/false) with an optional ``frequency.<slug>``; empty cells
are left out. NDJSON: one batch item (the PUT
body with its ``external_id``) per line.
"""

from __future__ import annotations

import csv
import itertools
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import click
from flask import current_app
from flask.cli import with_appcontext

from app import clock
from app.api.schema import validate_item
from app.api.schemas import SubscriberBatchItem
from app.api.services import upsert_batch
from app.db import get_db, write_session
from app.subscribers.services import Context

CHUNK = 1000
TRUE = {"true", "1", "yes", "y"}
FALSE = {"false", "0", "no", "n"}
REPORT_COLUMNS = ["line", "external_id", "status", "pointer", "detail"]


class RowError(ValueError):
    """A CSV cell that is not what its column holds."""

    def __init__(self, pointer: str, detail: str, external_id: str | None = None):
        super().__init__(detail)
        self.pointer = pointer
        self.detail = detail
        self.external_id = external_id


class Lines:
    """The lines of a binary stream as text, counting the bytes read (for the progress bar)."""

    def __init__(self, stream):
        self.stream = stream
        self.read = 0
        self.number = 0

    def __iter__(self) -> Iterator[str]:
        for raw in self.stream:
            self.read += len(raw)
            self.number += 1
            text = raw.decode("utf-8")
            if self.number == 1:
                text = text.removeprefix("\ufeff")
            yield text


def _flag(value: str, pointer: str) -> bool:
    lowered = value.strip().lower()
    if lowered in TRUE:
        return True
    if lowered in FALSE:
        return False
    raise RowError(pointer, f"{pointer.lstrip('/')} must be true or false; got {value!r}.")


def csv_item(row: dict[str, str]) -> dict:
    """A CSV row as a batch item (empty cells left out)."""
    item: dict = {}
    topics: dict[str, dict] = {}
    for column, value in row.items():
        if column is None:
            raise RowError("", "The row has more cells than the header has columns.")
        if value is None or value == "":
            continue
        kind, dot, slug = column.partition(".")
        if dot and kind == "topic":
            topics.setdefault(slug, {})["subscribed"] = _flag(value, f"/topics/{slug}/subscribed")
        elif dot and kind == "frequency":
            topics.setdefault(slug, {})["frequency"] = value.strip()
        elif column == "unsubscribed_all":
            item[column] = _flag(value, "/unsubscribed_all")
        else:
            item[column] = value.strip()
    if topics:
        item["topics"] = topics
    return item


def rows(lines: Lines, kind: str) -> Iterator[tuple[int, object]]:
    """``(line number, item or RowError)`` for each row of the file."""
    if kind == "ndjson":
        for text in lines:
            if not text.strip():
                continue
            try:
                yield lines.number, json.loads(text)
            except ValueError as exc:
                yield lines.number, RowError("", f"The line is not valid JSON: {exc}.")
        return
    reader = csv.DictReader(iter(lines))
    for row in reader:
        try:
            yield lines.number, csv_item(row)
        except RowError as exc:
            exc.external_id = row.get("external_id") or None
            yield lines.number, exc


@dataclass
class Tally:
    created: int = 0
    updated: int = 0
    failed: int = 0

    @property
    def total(self) -> int:
        return self.created + self.updated + self.failed


def import_rows(app, numbered: Iterable[tuple[int, object]], report, *,
                chunk: int = CHUNK, progress=None) -> Tally:
    """Validate and upsert the rows, ``chunk`` at a time; write each failure to ``report``."""
    tally = Tally()
    writer = csv.writer(report)
    writer.writerow(REPORT_COLUMNS)
    context = Context(source="import", actor="cli:subscribers-import")
    settings = {"default_role": app.config["DEFAULT_ROLE"]}

    failures: list = []  # of the rows not yet written, reported in line order at flush

    def fail(line, external_id, status, errors):
        tally.failed += 1
        for error in errors:
            failures.append((line, external_id or "", status, error["pointer"],
                             error["detail"]))

    def flush(pending):
        if not pending:
            write_failures()
            return
        session = write_session(get_db(app))
        try:
            results = upsert_batch(session, [item for _line, item in pending],
                                   context=context, now=clock.now(), **settings)
        finally:
            session.close()
        for (line, item), result in zip(pending, results, strict=True):
            status = result["status"]
            if status == 201:
                tally.created += 1
            elif status == 200:
                tally.updated += 1
            else:
                fail(line, item.external_id, status,
                     result.get("errors") or [{"pointer": "", "detail": result["detail"]}])
        pending.clear()
        write_failures()
        if progress is not None:
            progress()

    def write_failures():
        writer.writerows(sorted(failures, key=lambda f: f[0]))
        failures.clear()

    pending: list = []
    for line, value in numbered:
        if isinstance(value, RowError):
            fail(line, value.external_id, 422, [{"pointer": value.pointer,
                                                  "detail": value.detail}])
            continue
        item, errors = validate_item(SubscriberBatchItem, value)
        if errors:
            external_id = value.get("external_id") if isinstance(value, dict) else None
            fail(line, external_id if isinstance(external_id, str) else None, 422, errors)
            continue
        pending.append((line, item))
        if len(pending) >= chunk:
            flush(pending)
    flush(pending)
    return tally


@click.group("subscribers")
def subscribers_group() -> None:
    """Subscribers in bulk."""


@subscribers_group.command("import")
@click.argument("source", type=click.File("rb"))
@click.option("--format", "kind", type=click.Choice(["csv", "ndjson"]),
              help="Default: from the file name (.csv, .ndjson, .jsonl); for - (stdin), "
                   "NDJSON if the first byte is '{', else CSV.")
@click.option("--errors", "errors_to", type=click.File("w"), default=None,
              help="Where the per-row error report (CSV) goes; default: stderr.")
@click.option("--chunk", default=CHUNK, show_default=True, type=click.IntRange(1, 10_000),
              help="Rows per transaction.")
@with_appcontext
def import_command(source, kind: str | None, errors_to, chunk: int) -> None:
    """Upsert the subscribers of SOURCE (CSV or NDJSON; - for stdin) by the API's rules.

    Events carry source "import" (a webhook endpoint may leave them out with its
    sources). Rows that fail are reported (line, external_id, status, pointer,
    detail); the exit status is 1 if any did.
    """
    name = getattr(source, "name", "") or ""
    try:
        size = source.seek(0, 2) if source.seekable() else None
        if size is not None:
            source.seek(0)
    except OSError:
        size = None
    first = source.readline()
    if kind is None:
        if name.endswith(".csv"):
            kind = "csv"
        elif name.endswith((".ndjson", ".jsonl")):
            kind = "ndjson"
        else:
            kind = "ndjson" if first.lstrip().removeprefix(b"\xef\xbb\xbf")[:1] == b"{" \
                else "csv"
    if errors_to is None:
        errors_to = sys.stderr
    lines = Lines(itertools.chain([first], source))
    app = current_app._get_current_object()
    if size and sys.stderr.isatty():
        with click.progressbar(length=size, label="importing", file=sys.stderr) as bar:
            shown = [0]

            def advance():
                bar.update(lines.read - shown[0])
                shown[0] = lines.read

            tally = import_rows(app, rows(lines, kind), errors_to, chunk=chunk,
                                progress=advance)
    else:
        tally = import_rows(app, rows(lines, kind), errors_to, chunk=chunk)
    click.echo(f"{tally.total} rows: {tally.created} created, {tally.updated} updated or "
               f"unchanged, {tally.failed} failed", err=True)
    if tally.failed:
        sys.exit(1)

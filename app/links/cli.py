"""``prefcenter links mint``: a CSV of recipients in, a CSV of links and headers out.

Streaming: rows are read in chunks, each chunk's subscribers are looked up
with one query, its links are written, and the chunk is dropped, so memory
does not grow with the file.
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Iterator

import click
from flask import current_app
from flask.cli import with_appcontext

from app.db import get_db
from app.links.minting import (
    ONE_CLICK,
    LinkRequest,
    LinkTooLong,
    Minter,
    campaign_error,
    link_error,
    link_targets,
    link_topics,
)

OUTPUT_COLUMNS = ["external_id", "topic", "campaign", "preferences_url", "unsubscribe_url",
                  "list_unsubscribe", "list_unsubscribe_post", "error"]
CHUNK = 5000


@click.group("links")
def links_group() -> None:
    """Signed preference and unsubscribe links."""


def mint_rows(session, minter: Minter, rows, *, locales, chunk: int = CHUNK):
    """Output rows (lists in OUTPUT_COLUMNS order) for input requests, ``chunk`` at a time."""
    topics = link_topics(session)
    requests = iter(rows)
    while True:
        batch = list(itertools.islice(requests, chunk))
        if not batch:
            return
        targets = link_targets(session, [q.external_id for q in batch if q.external_id])
        session.rollback()  # end the read transaction between chunks
        links = minter.links
        for req in batch:
            error = _row_error(req, targets, topics, locales)
            if error:
                yield [req.external_id, req.topic or "", req.campaign or "", "", "", "", "",
                       error]
                continue
            try:
                made = links(targets[req.external_id], topic=req.topic,
                             campaign=req.campaign, locale=req.locale)
            except LinkTooLong as exc:
                yield [req.external_id, req.topic or "", req.campaign or "", "", "", "", "",
                       str(exc)]
                continue
            yield [req.external_id, req.topic or "", req.campaign or "",
                   made["preferences_url"], made["unsubscribe_url"],
                   made["headers"]["List-Unsubscribe"], ONE_CLICK, ""]


def read_requests(lines) -> Iterator[LinkRequest]:
    """LinkRequests from CSV lines with a header row naming external_id (and more)."""
    reader = csv.reader(lines)
    header = [name.strip() for name in next(reader, [])]
    if "external_id" not in header:
        raise click.UsageError("the input CSV needs a header row with an external_id column")
    at = {name: header.index(name) for name in ("external_id", "topic", "campaign", "locale")
          if name in header}
    width = len(header)

    def cell(row, name):
        index = at.get(name)
        return row[index].strip() if index is not None and index < len(row) else ""

    for row in reader:
        if not row or (len(row) == 1 and not row[0].strip()):
            continue  # blank line
        row = row + [""] * (width - len(row))
        yield LinkRequest(cell(row, "external_id"), cell(row, "topic") or None,
                          cell(row, "campaign") or None, cell(row, "locale") or None)


def _row_error(req: LinkRequest, targets, topics, locales) -> str | None:
    if not req.external_id:
        return "external_id is empty."
    too_long = campaign_error(req.campaign)
    if too_long:
        return too_long
    if req.locale is not None and req.locale not in locales:
        return f"Unknown locale {req.locale!r}."
    found = link_error(req, targets, topics)
    return found[1] if found else None


@links_group.command("mint")
@click.option("--input", "input_", type=click.File("r", encoding="utf-8-sig", lazy=False),
              default="-", show_default=True,
              help="CSV with a header row: external_id, and optionally topic, campaign, locale.")
@click.option("--output", type=click.File("w", encoding="utf-8", lazy=False), default="-",
              show_default=True, help="Where to write the CSV of links.")
@click.option("--chunk", type=click.IntRange(1, 100_000), default=CHUNK, show_default=True,
              help="Rows looked up per database query.")
@with_appcontext
def mint(input_, output, chunk: int) -> None:
    """Mint links for every row of a CSV; write them as CSV.

    Output columns: external_id, topic, campaign, preferences_url, unsubscribe_url,
    list_unsubscribe, list_unsubscribe_post, error. A row that cannot have links
    (unknown or erased external_id, unknown topic, ...) is written with its
    error and no links; the command goes on, and exits with status 1 at the
    end if any row failed.
    """
    requests = read_requests(input_)
    first = next(requests, None)  # reads the header: a bad one fails before any output
    writer = csv.writer(output, lineterminator="\n")
    writer.writerow(OUTPUT_COLUMNS)
    session = get_db().sessionmaker()
    minted = failed = 0
    try:
        minter = Minter.for_app(current_app)
        rows = itertools.chain([first], requests) if first is not None else ()
        for row in mint_rows(session, minter, rows,
                             locales=current_app.config["SUPPORTED_LOCALES"], chunk=chunk):
            writer.writerow(row)
            if row[-1]:
                failed += 1
            else:
                minted += 1
    finally:
        session.close()
    output.flush()
    click.echo(f"minted links for {minted} rows; {failed} rows failed", err=True)
    if failed:
        click.get_current_context().exit(1)

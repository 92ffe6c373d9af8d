"""``prefcenter subscribers import``: CSV or NDJSON, the batch rules, a report, exit 1."""

from __future__ import annotations

import csv
import io
import json

from sqlalchemy import func, select

from app.events.models import Event
from app.subscribers.models import Subscriber


def report(text: str) -> list[dict]:
    """The error report's rows (the summary line follows it on stderr)."""
    lines = [line for line in text.splitlines() if not line.endswith("failed")]
    return list(csv.DictReader(io.StringIO("\n".join(lines))))


def invoke(app, *args, data: str):
    return app.test_cli_runner().invoke(args=["subscribers", "import", *args], input=data)


def test_csv_rows_are_upserted_and_failures_reported(app, session, catalogue):
    catalogue.subscriber(external_id="holder", email="taken@example.com")
    data = ("external_id,email,locale,role,topic.offers,frequency.offers,topic.news,"
            "unsubscribed_all\n"
            "c-1,c1@example.com,ru,shopper,true,monthly,false,\n"
            "c-2,taken@example.com,,,,,,\n"
            "c-3,c3@example.com,xx,,,,,\n"
            "c-4,c4@example.com,,,maybe,,,\n"
            ",c5@example.com,,,,,,\n"
            "c-6,c6@example.com,,,,,,true\n")
    result = invoke(app, "-", data=data)
    assert result.exit_code == 1, result.output
    assert "6 rows: 2 created, 0 updated or unchanged, 4 failed" in result.stderr
    failures = report(result.stderr)
    assert [(r["line"], r["external_id"], r["status"], r["pointer"]) for r in failures] == [
        ("3", "c-2", "409", ""), ("4", "c-3", "422", "/locale"),
        ("5", "c-4", "422", "/topics/offers/subscribed"), ("6", "", "422", "/external_id")]
    one = session.scalar(select(Subscriber).where(Subscriber.external_id == "c-1"))
    assert one.locale == "ru" and one.role.slug == "shopper"
    by_slug = {s.topic.slug: s for s in one.subscriptions}
    assert by_slug["offers"].subscribed and by_slug["offers"].frequency == "monthly"
    assert not by_slug["news"].subscribed
    six = session.scalar(select(Subscriber).where(Subscriber.external_id == "c-6"))
    assert six.unsubscribed_all is True
    sources = set(session.scalars(select(Event.source).where(Event.subscriber_id.in_(
        [one.id, six.id]))))
    assert sources == {"import"}


def test_ndjson_from_stdin_and_a_second_run_changes_nothing(app, session, catalogue):
    lines = [json.dumps({"external_id": f"n-{n}", "email": f"n{n}@example.com",
                         "topics": {"offers": {"subscribed": True}}}) for n in range(5)]
    data = "\n".join([*lines, "", "{not json", json.dumps({"external_id": "n-x",
                                                             "email": 7})]) + "\n"
    first = invoke(app, "-", data=data)
    assert first.exit_code == 1
    assert "7 rows: 5 created, 0 updated or unchanged, 2 failed" in first.stderr
    assert [(r["line"], r["pointer"]) for r in report(first.stderr)] == [("7", ""),
                                                                          ("8", "/email")]
    events = session.scalar(select(func.count(Event.id)))
    again = invoke(app, "-", data="\n".join(lines) + "\n")
    assert again.exit_code == 0, again.stderr
    assert "5 rows: 0 created, 5 updated or unchanged, 0 failed" in again.stderr
    assert session.scalar(select(func.count(Event.id))) == events


def test_format_from_the_file_name_and_a_report_file(app, session, catalogue, tmp_path):
    source = tmp_path / "crm.ndjson"
    source.write_text(json.dumps({"external_id": "f-1", "email": "f1@example.com"}) + "\n"
                      + json.dumps({"external_id": "f-2", "email": "bad"}) + "\n")
    errors = tmp_path / "errors.csv"
    result = app.test_cli_runner().invoke(
        args=["subscribers", "import", str(source), "--errors", str(errors)])
    assert result.exit_code == 1
    assert [(r["line"], r["external_id"], r["pointer"]) for r in
            csv.DictReader(errors.open())] == [("2", "f-2", "/email")]
    assert session.scalar(select(Subscriber.email).where(Subscriber.external_id == "f-1")
                          ) == "f1@example.com"


def test_rows_are_streamed_in_chunks(app, session, catalogue):
    """Constant memory: a chunk is written before the next rows are even read."""
    from app.api.importing import import_rows

    seen_in_db = []

    def numbered():
        for n in range(25):
            if n % 10 == 0:
                seen_in_db.append(session.scalar(select(func.count(Subscriber.id))
                                                 .where(Subscriber.external_id.like("s-%"))))
            yield n + 1, {"external_id": f"s-{n}", "email": f"s{n}@example.com"}

    with app.app_context():
        tally = import_rows(app, numbered(), io.StringIO(), chunk=10)
    assert (tally.created, tally.failed) == (25, 0)
    assert seen_in_db == [0, 10, 20]

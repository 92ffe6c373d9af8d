"""Admin: undeliverable addresses and what the ESPs reported, filterable, raw event a click
away."""

from __future__ import annotations

import html
import re

from app.subscribers.reports import Report, take_reports
from tests.test_admin import admin as admin  # the fixtures, re-exported
from tests.test_admin import admin_client as admin_client
from tests.test_admin import app_config as app_config
from tests.test_admin import ui as ui


def report(kind: str, email: str, event_id: str, provider: str = "sendgrid") -> Report:
    return Report(provider=provider, event_id=event_id, kind=kind, email=email,
                  raw={"email": email, "event": kind, "sg_event_id": event_id,
                       "reason": "550 5.1.1 <" + email + "> no such user"},
                  detail="550 5.1.1")


def seed(session, catalogue):
    jane = catalogue.subscriber(email="jane@example.com")
    ann = catalogue.subscriber(email="ann@example.com")
    take_reports(session, [
        report("hard_bounce", "jane@example.com", "ev-1"),
        report("complaint", "ann@example.com", "ev-2", provider="postmark"),
        report("hard_bounce", "stranger@example.com", "ev-3"),
    ], soft_bounce_limit=3)
    session.commit()
    return jane, ann


def rows(page: str) -> list[str]:
    body = page.split('id="reports"', 1)[1]
    return re.findall(r"<tr>\s*<td><time.*?</tr>", body, re.S)


def test_lists_undeliverable_addresses_and_reports(ui, session, catalogue):
    jane, _ann = seed(session, catalogue)
    page = ui.get("/admin/deliverability").get_data(as_text=True)
    undeliverable = page.split('id="undeliverable"', 1)[1].split('id="reports"', 1)[0]
    assert "jane@example.com" in undeliverable and "ann@example.com" not in undeliverable
    assert f"/admin/subscribers/{jane.id}" in undeliverable
    assert len(rows(page)) == 3
    assert "Unknown address" in page and "Complaint" in page


def test_filters(ui, session, catalogue):
    seed(session, catalogue)
    complaints = ui.get("/admin/deliverability?kind=complaint").get_data(as_text=True)
    assert [("ann@example.com" in r) for r in rows(complaints)] == [True]
    by_provider = ui.get("/admin/deliverability?provider=sendgrid").get_data(as_text=True)
    assert len(rows(by_provider)) == 2
    unknown = ui.get("/admin/deliverability?outcome=unknown").get_data(as_text=True)
    assert len(rows(unknown)) == 1 and "stranger@example.com" in rows(unknown)[0]
    by_address = ui.get("/admin/deliverability?q=Jane@Example.com").get_data(as_text=True)
    assert len(rows(by_address)) == 1 and "jane@example.com" in rows(by_address)[0]
    # A value that is not a choice filters nothing rather than failing.
    assert len(rows(ui.get("/admin/deliverability?kind=<x>").get_data(as_text=True))) == 3


def test_raw_event_is_one_click_away(ui, session, catalogue):
    seed(session, catalogue)
    page = ui.get("/admin/deliverability?kind=complaint").get_data(as_text=True)
    [link] = re.findall(r'href="(/admin/deliverability/\d+)"', page)
    raw = ui.get(link)
    assert raw.status_code == 200
    text = html.unescape(raw.get_data(as_text=True))
    assert '"sg_event_id": "ev-2"' in text
    assert "<ann@example.com>" in text  # escaped in the page, shown as sent
    assert "<ann@example.com> no such" not in raw.get_data(as_text=True)
    assert ui.get("/admin/deliverability/999999").status_code == 404

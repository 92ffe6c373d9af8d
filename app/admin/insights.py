"""``/admin/insights``: unsubscribes and resubscribes over a chosen range, by day, topic,
campaign, source and reason; frequency and pause choices; top campaigns. Each figure is a
server-side SVG chart (:mod:`app.admin.charts`), its table, and a CSV download."""

from __future__ import annotations

import csv
import datetime as dt
import io

from flask import Response, abort, current_app, request, url_for
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from app import clock
from app.admin import charts
from app.admin.views import _render, bp
from app.db import get_session
from app.events.insights import FIGURES, FILTERS, MAX_DAYS, TOP_CAMPAIGNS, Query, figure
from app.subscribers.labels import FREQUENCY_LABELS, REASON_LABELS
from app.topics.models import Topic

DEFAULT_DAYS = 90
PAUSE_LABELS = {"2w": _l("2 weeks"), "1m": _l("1 month"), "3m": _l("3 months"),
                "longer": _l("Longer")}
TITLES = {
    "daily": _l("Unsubscribes and resubscribes per day"),
    "topics": _l("By topic"),
    "campaigns": _l("Top campaigns by unsubscribes"),
    "sources": _l("By source"),
    "reasons": _l("Reasons given for unsubscribing"),
    "frequencies": _l("Frequency choices per topic"),
    "pauses": _l("Pause lengths chosen"),
}


def _date(name: str, default: dt.date) -> dt.date:
    raw = request.args.get(name) or ""
    if not raw:
        return default
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        abort(400, description=_("%(field)s must be a date (YYYY-MM-DD).", field=name))


def _query() -> Query:
    today = clock.now().date()
    end = _date("to", today)
    start = _date("from", end - dt.timedelta(days=DEFAULT_DAYS - 1))
    if start > end:
        abort(400, description=_("The start date is after the end date."))
    if (end - start).days + 1 > MAX_DAYS:
        abort(400, description=_("Choose at most %(days)s days.", days=MAX_DAYS))
    filters = {name: request.args[name] for name in FILTERS if request.args.get(name)}
    return Query(start=start, end=end, filters=filters)


def _args(query: Query) -> dict:
    return {"from": query.start.isoformat(), "to": query.end.isoformat(), **query.filters}


class Names:
    """Words for the codes in the figures, in the admin's language."""

    def __init__(self, session):
        locale = str(get_locale())
        default = current_app.config["DEFAULT_LOCALE"]
        self.topics = {t.slug: t.text(locale, default) for t in session.scalars(select(Topic))}

    def topic(self, slug: str) -> str:
        return str(_("All marketing")) if slug == "" else self.topics.get(slug, slug)

    @staticmethod
    def campaign(name: str) -> str:
        return name or str(_("(no campaign)"))

    @staticmethod
    def code(labels: dict, code: str) -> str:
        found = labels.get(code)
        return str(found) if found is not None else (code or "—")


def table(name: str, rows, names: Names) -> tuple[list[str], list[list]]:
    """The figure as (header, rows) in the admin's words: the page's table and the CSV."""
    unsub, resub = str(_("Unsubscribes")), str(_("Resubscribes"))
    if name == "daily":
        return [str(_("Day")), unsub, resub], [[d.isoformat(), u, r] for d, u, r in rows]
    if name == "topics":
        return [str(_("Topic")), unsub, resub], [[names.topic(t), u, r] for t, u, r in rows]
    if name == "campaigns":
        return ([str(_("Campaign")), unsub, resub],
                [[names.campaign(c), u, r] for c, u, r in rows])
    if name == "sources":
        return [str(_("Source")), unsub, resub], [[s, u, r] for s, u, r in rows]
    if name == "reasons":
        return ([str(_("Reason")), str(_("Answers"))],
                [[names.code(REASON_LABELS, r), n] for r, n in rows])
    if name == "frequencies":
        return ([str(_("Topic")), str(_("How often")), str(_("Choices"))],
                [[names.topic(t), names.code(FREQUENCY_LABELS, f), n] for t, f, n in rows])
    return ([str(_("Pause length")), str(_("Choices"))],
            [[names.code(PAUSE_LABELS, v), n] for v, n in rows])


def chart(name: str, rows, names: Names):
    title = str(TITLES[name])
    unsub, resub = str(_("Unsubscribes")), str(_("Resubscribes"))
    if name == "daily":
        return charts.line([d.isoformat() for d, _u, _r in rows],
                           {unsub: [u for _d, u, _r in rows], resub: [r for _d, _u, r in rows]},
                           title)
    if name in ("topics", "campaigns", "sources"):
        label = {"topics": names.topic, "campaigns": names.campaign}.get(name, str)
        return charts.bars([label(v) for v, _u, _r in rows],
                           {unsub: [u for _v, u, _r in rows], resub: [r for _v, _u, r in rows]},
                           title)
    if name == "frequencies":
        topics = list(dict.fromkeys(t for t, _f, _n in rows))
        series = {}
        for value in dict.fromkeys(f for _t, f, _n in rows):
            counts = {t: n for t, f, n in rows if f == value}
            series[names.code(FREQUENCY_LABELS, value)] = [counts.get(t, 0) for t in topics]
        return charts.bars([names.topic(t) for t in topics], series, title, stacked=True)
    labels = REASON_LABELS if name == "reasons" else PAUSE_LABELS
    return charts.bars([names.code(labels, v) for v, _n in rows],
                       {str(_("Count")): [n for _v, n in rows]}, title)


@bp.get("/insights")
def insights():
    query = _query()
    session = get_session()
    names = Names(session)
    shown = []
    for name in FIGURES:
        rows = figure(session, query, name, top=TOP_CAMPAIGNS)
        header, body = table(name, rows, names)
        empty = not rows or (name == "daily" and not any(u or r for _d, u, r in rows))
        shown.append({"name": name, "title": TITLES[name], "header": header, "rows": body,
                      "chart": None if empty else chart(name, rows, names),
                      "csv": url_for("admin.insights_csv", name=name, **_args(query))})
    return _render("admin/insights.html", query=query, figures=shown,
                   topics=sorted(names.topics.items()), filters=query.filters)


@bp.get("/insights/<name>.csv")
def insights_csv(name: str):
    if name not in FIGURES:
        abort(404)
    query = _query()
    session = get_session()
    header, body = table(name, figure(session, query, name), Names(session))
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows([[_cell(value) for value in row] for row in body])
    filename = f"insights-{name}-{query.start.isoformat()}-{query.end.isoformat()}.csv"
    return Response(out.getvalue(), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def _cell(value):
    """A CSV cell a spreadsheet will not run as a formula (campaign names come from links)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


@bp.get("/insights/charts.css")
def insights_css():
    return Response(charts.stylesheet(), mimetype="text/css",
                    headers={"Cache-Control": "private, max-age=3600"})

"""The preference page: GET shows, POST saves (CSRF-protected)."""

from __future__ import annotations

import datetime as dt
import json

from flask import Blueprint, abort, current_app, g, redirect, render_template, request, url_for
from flask_babel import format_date, get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from app import clock
from app.db import get_session
from app.errors import problem, wants_json
from app.limits import limiter, public_limit
from app.links.services import (
    PREFERENCES,
    ExpiredLink,
    LinkError,
    get_signer,
    links_for,
    open_link,
)
from app.mail.services import send_template
from app.preferences.forms import FreshLinkForm, PreferencesForm
from app.preferences.services import (
    allowed_topics,
    mask_email,
    offers_sms,
    page_rows,
    parse_form,
    transactional_names,
)
from app.subscribers.export import export_in
from app.subscribers.labels import REASON_LABELS
from app.subscribers.services import (
    MAX_REASON_TEXT,
    Context,
    InvalidPhone,
    NoChannel,
    PhoneRequired,
    PreferenceError,
    by_public_id,
    change,
    has_left,
    is_paused,
    record_reason,
)
from app.topics.services import follow_rows

bp = Blueprint("preferences", __name__)

FREQUENCY_LABELS = {
    "daily": _l("Daily"),
    "weekly": _l("Weekly"),
    "biweekly": _l("Every two weeks"),
    "monthly": _l("Monthly"),
    "quarterly": _l("Every three months"),
}

CHANNEL_LABELS = {"email": _l("By email"), "sms": _l("By SMS")}
CHANNEL_NAMES = {"email": _l("Email"), "sms": _l("SMS")}

PAUSE_LABELS = {"2w": _l("2 weeks"), "1m": _l("1 month"), "3m": _l("3 months")}


@bp.errorhandler(LinkError)
def link_error(exc: LinkError):
    return render_link_error(exc, PREFERENCES)


def render_link_error(exc: LinkError, purpose: str):
    if wants_json():
        return problem(exc.status, "Link not usable", f"The link is {exc.reason}.")
    claims = getattr(exc, "claims", None)
    if claims is not None:  # an expired link is still ours: it says which language to use
        g.link_locale = claims.locale
    renew = None
    if isinstance(exc, ExpiredLink) and exc.claims is not None and purpose == PREFERENCES:
        renew = FreshLinkForm()
    return render_template("errors/link.html", reason=exc.reason, renew=renew,
                           token=request.view_args.get("token")), exc.status


def _open(token: str, *, for_update: bool = False):
    session = get_session(write=for_update)
    claims, subscriber = open_link(session, get_signer(current_app), PREFERENCES, token,
                                   for_update=for_update)
    g.link_locale = claims.locale
    g.subscriber_locale = subscriber.locale
    return session, claims, subscriber


def _render(token, subscriber, *, saved=None, error=None, status=200, **extra):
    return render_template("preferences/page.html", token=token, saved=saved, error=error,
                           **extra, **page_context(subscriber)), status


UNSUBSCRIBES = ("topic.unsubscribed", "unsubscribed_all")


def _ask_reason(events) -> dict:
    """After a save that unsubscribed something, the optional "why?" question: about the
    one topic switched off, else about leaving in general."""
    left = [e for e in events if e.action in UNSUBSCRIBES]
    if not left:
        return {}
    topics = {e.topic for e in left}
    return {"ask_reason": True, "reason_labels": REASON_LABELS, "reason_max": MAX_REASON_TEXT,
            "reason_topic": topics.pop() if len(topics) == 1 else None}


def page_context(subscriber) -> dict:
    """What the page template shows of ``subscriber`` (the admin's preview uses it too)."""
    locale = str(get_locale())
    default = current_app.config["DEFAULT_LOCALE"]
    rows = page_rows(subscriber, locale, default)
    paused = is_paused(subscriber, clock.now())
    return dict(
        form=PreferencesForm(),
        rows=rows,
        masked_email=mask_email(subscriber.email),
        unsubscribed_all=subscriber.unsubscribed_all,
        transactional=transactional_names(get_session(), locale, default),
        frequency_labels=FREQUENCY_LABELS,
        channel_labels=CHANNEL_LABELS,
        pause_labels=PAUSE_LABELS,
        offers_sms=offers_sms(rows),
        phone=subscriber.phone,
        paused_until=format_date(subscriber.paused_until, "long") if paused else None,
        follow=follow_rows(get_session(), subscriber.role_id, locale, default),
        privacy_url=current_app.config["PRIVACY_URL"],
    )


@bp.get("/<token>")
@limiter.limit(public_limit)
def page(token: str):
    _session, _claims, subscriber = _open(token)
    return _render(token, subscriber)


@bp.post("/<token>")
@limiter.limit(public_limit)
def save(token: str):
    session, claims, subscriber = _open(token, for_update=True)
    try:
        submission = parse_form(request.form, allowed_topics(subscriber), now=clock.now())
        locale = str(get_locale())
        events = change(
            session, subscriber,
            context=Context(source="preference_page", token_id=claims.token_id,
                            campaign=claims.campaign),
            topics=submission.topics, allowed=allowed_topics(subscriber),
            unsubscribed_all=submission.unsubscribed_all,
            locale=locale if request.form.get("lang") == locale else None,
            phone=submission.phone, paused_until=submission.paused_until,
        )
    except (InvalidPhone, PhoneRequired, NoChannel) as exc:
        # The subscriber's own mistake: the page again, saying what to fix; nothing saved.
        session.rollback()
        return _render(token, subscriber, error=_input_error(exc), status=400)
    except PreferenceError as exc:
        session.rollback()
        abort(400, description=str(exc))
    session.commit()
    default = current_app.config["DEFAULT_LOCALE"]
    names = {row.slug: row.name for row in page_rows(subscriber, str(get_locale()), default)}
    return _render(token, subscriber, saved=[describe(e, names) for e in events],
                   **_ask_reason(events))


@bp.post("/<token>/reason")
@limiter.limit(public_limit)
def reason(token: str):
    """The optional "why are you leaving?" answer after an unsubscribe on this page
    (CSRF-protected). Nothing to explain (the topic, or everything, still on): 409."""
    session, claims, subscriber = _open(token, for_update=True)
    topic = request.form.get("topic") or None
    if not has_left(subscriber, topic):
        session.rollback()
        abort(409, description=_("You are not unsubscribed, so there is nothing to tell."))
    try:
        record_reason(session, subscriber, reason=request.form.get("reason"),
                      text=request.form.get("text"), topic=topic,
                      context=Context(source="preference_page", token_id=claims.token_id,
                                      campaign=claims.campaign))
    except PreferenceError as exc:
        session.rollback()
        abort(400, description=str(exc))
    session.commit()
    return _render(token, subscriber, thanked=True)


@bp.post("/<token>/export")
@limiter.limit(public_limit)
def export(token: str):
    """"Download my data" (CSRF-protected form): the subscriber's export as a JSON file,
    labels in the page's language. Changes nothing."""
    session, _claims, subscriber = _open(token)
    document = export_in(current_app.config, session, subscriber, locale=str(get_locale()),
                         now=clock.now())
    response = current_app.response_class(
        json.dumps(document, ensure_ascii=False, indent=2) + "\n", mimetype="application/json")
    response.headers["Content-Disposition"] = 'attachment; filename="my-data.json"'
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/<token>/renew")
@limiter.limit("5 per hour")
def renew(token: str):
    """An expired link may still name its subscriber: mail them a fresh one."""
    FreshLinkForm().validate_on_submit() or abort(400)
    try:
        open_link(get_session(), get_signer(current_app), PREFERENCES, token)
    except ExpiredLink as exc:
        claims = exc.claims
    except LinkError:
        claims = None
    else:
        return redirect(url_for("preferences.page", token=token), code=303)
    subscriber = by_public_id(get_session(), claims.public_id) if claims else None
    if subscriber is not None and subscriber.email and claims.epoch >= subscriber.link_epoch:
        g.subscriber_locale = subscriber.locale
        locale = str(get_locale())
        links = links_for(current_app, subscriber, locale=claims.locale)
        send_template(current_app, to=subscriber.email, locale=locale,
                      subject=lambda: _("Your link to manage your email preferences"),
                      template="mail/fresh_link.txt", url=links["preferences_url"],
                      brand=current_app.config["BRAND_NAME"])
    # The same answer whether or not a message went out: no enumeration.
    return render_template("preferences/renewed.html")


def _input_error(exc: PreferenceError) -> str:
    if isinstance(exc, InvalidPhone):
        return _("That mobile number does not look right. Enter it in international format, "
                 "starting with + and the country code, for example +60 12 345 6789.")
    if isinstance(exc, PhoneRequired):
        return _("To receive SMS, enter your mobile number below.")
    return _("Choose at least one way to receive each topic you switch on.")


def describe(event, names: dict[str, str]) -> str:
    """One saved change in the subscriber's words."""
    topic = names.get(event.topic, event.topic)
    after = (event.after or {}).get("value")
    if event.action == "topic.subscribed":
        return _("You now receive %(topic)s.", topic=topic)
    if event.action == "topic.unsubscribed":
        return _("You no longer receive %(topic)s.", topic=topic)
    if event.action == "topic.frequency":
        return _("%(topic)s: %(frequency)s.", topic=topic,
                 frequency=FREQUENCY_LABELS.get(after, after))
    if event.action == "unsubscribed_all":
        return _("You are unsubscribed from all marketing email.")
    if event.action == "resubscribed_all":
        return _("Marketing email is switched back on with your topic choices.")
    if event.action == "locale":
        return _("Your language is saved.")
    if event.action == "topic.channels":
        chosen = [str(CHANNEL_LABELS.get(c, c)) for c in after or []]
        if not chosen:
            return _("%(topic)s: no messages.", topic=topic)
        return _("%(topic)s: %(channels)s.", topic=topic, channels=", ".join(chosen))
    if event.action == "phone":
        if after is None:
            return _("Your mobile number is removed: you will get no more SMS.")
        return _("Your mobile number is saved.")
    if event.action == "paused":
        return _("Marketing messages are paused until %(date)s.",
                 date=format_date(dt.datetime.fromisoformat(after), "long"))
    if event.action == "resumed":
        return _("Marketing messages are back on.")
    return event.action

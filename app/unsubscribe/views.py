"""Unsubscribe pages and RFC 8058 one-click unsubscribe.

``GET /u/<token>`` (and HEAD) only shows what a click would do: link scanners
prefetch every URL in a message. ``POST /u/<token>`` unsubscribes, either as
an RFC 8058 one-click (body ``List-Unsubscribe=One-Click``, no cookie, no CSRF
token; a tiny text/plain answer, never a redirect) or as the page's form (its
own CSRF token; a confirmation page with an undo).

Nothing is acknowledged before it is durable: if the database cannot take the
change, the answer is 503 with Retry-After and the mailbox provider retries.
"""

from __future__ import annotations

from flask import Blueprint, Response, abort, current_app, g, render_template, request, url_for
from flask import session as cookie_session
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_limiter.util import get_remote_address
from flask_wtf.csrf import generate_csrf, validate_csrf
from werkzeug.exceptions import BadRequest, HTTPException, RequestEntityTooLarge, ServiceUnavailable
from wtforms.validators import ValidationError

from app import csrf
from app.db import get_db, get_session
from app.limits import limiter, page_limit, public_limit
from app.links.services import UNSUBSCRIBE, LinkError, get_signer, links_for, read_link
from app.preferences.services import mask_email
from app.preferences.views import no_body, render_link_error, suppressed_message
from app.subscribers.labels import REASON_LABELS
from app.subscribers.services import (
    MAX_REASON_TEXT,
    NotUnsubscribed,
    PreferenceError,
    Suppressed,
    record_reason,
    unsubscribe,
)
from app.topics.catalogue import Catalogue, catalogue_at, get_catalogue
from app.unsubscribe.forms import UndoForm
from app.unsubscribe.one_click import (
    LINK_PLAIN,
    ONE_CLICK_FIELD,
    ONE_CLICK_VALUE,
    PLAIN,
    RETRY_AFTER,
    UNAVAILABLE,
    URLENCODED,
    get_answer,
    rollback_quietly,
)
from app.unsubscribe.services import (
    UndoRefused,
    browser_of,
    is_unsubscribed,
    link_context,
    open_unsubscribe,
    read_undo_receipt,
    target_topic,
    undo,
    undo_receipt,
    verify_unsubscribe,
    writers_queue,
)

bp = Blueprint("unsubscribe", __name__)

FORM_TYPES = frozenset({URLENCODED, "multipart/form-data"})


def is_one_click() -> bool:
    """Whether this request is an RFC 8058 one-click POST (decided once per request)."""
    if "one_click" not in g:
        g.one_click = False
        if request.method == "POST" and request.mimetype in FORM_TYPES:
            try:
                g.one_click = request.form.get(ONE_CLICK_FIELD) == ONE_CLICK_VALUE
            except RequestEntityTooLarge:
                g.one_click = False
    return g.one_click


def answers_plain() -> bool:
    """POSTs to ``/u/<token>`` other than the page's own form get text/plain answers."""
    if request.endpoint != "unsubscribe.confirm":
        return False
    if "browser_form" not in g:
        try:
            g.browser_form = not is_one_click() and request.form.get("confirm") == "1"
        except RequestEntityTooLarge:
            g.browser_form = False
    return not g.browser_form


def plain(status: int, body: str | None = None, **headers) -> Response:
    response = Response(body or PLAIN[status], status=status, mimetype="text/plain",
                        headers=headers)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.errorhandler(LinkError)
def link_error(exc: LinkError):
    if answers_plain():
        return plain(exc.status, LINK_PLAIN.get(exc.reason, LINK_PLAIN["invalid"]))
    return render_link_error(exc, UNSUBSCRIBE)


@bp.errorhandler(413)
@bp.errorhandler(429)
def refused(exc: HTTPException):
    """Too large or too many: plain text to machines, the usual page to people."""
    if answers_plain():
        response = plain(exc.code)
    else:
        message = (_("That request is too large.") if exc.code == 413
                   else _("Too many requests. Please wait a moment and try again."))
        response = current_app.make_response((
            render_template("errors/http.html", code=exc.code, name=exc.name, message=message),
            exc.code,
        ))
    for key, value in exc.get_headers() or []:
        if key.lower() not in ("content-type", "content-length"):
            response.headers[key] = value
    return response


def _open(token: str, *, for_update: bool = False):
    session = get_session(write=for_update)
    try:
        claims, subscriber, expired = open_unsubscribe(
            session, get_signer(current_app), token, for_update=for_update)
    except LinkError:
        session.rollback()  # let the next writer in at once
        raise
    g.link_locale = claims.locale
    g.subscriber_locale = subscriber.locale
    return session, claims, subscriber, expired


def _page_context(token, claims, subscriber, expired, topic,
                  catalogue: Catalogue | None = None) -> dict:
    locale = str(get_locale())
    default = current_app.config["DEFAULT_LOCALE"]
    if catalogue is None:
        catalogue = get_catalogue(get_session())
    preferences_url = None
    if not expired:
        # An expired unsubscribe link is still honoured, but it does not mint
        # a fresh preference link: that page has its own expiry and renewal.
        preferences_url = links_for(current_app, subscriber, topic=claims.topic,
                                    campaign=claims.campaign,
                                    locale=claims.locale)["preferences_url"]
    return {
        "token": token,
        "masked_email": mask_email(subscriber.email),
        "topic_name": topic.text(locale, default) if topic is not None else None,
        "preferences_url": preferences_url,
        "transactional": catalogue.transactional_names(locale, default),
        "privacy_url": current_app.config["PRIVACY_URL"],
    }


@bp.get("/<token>")
@page_limit
def page(token: str):
    """What a click would do. Reads, changes nothing (GET and HEAD: link scanners open
    it): the subscriber and the catalogue's version in one statement, the catalogue from
    the process's cache."""
    claims, expired = verify_unsubscribe(get_signer(current_app), token)
    found = read_link(get_db(), claims)
    subscriber = found.subscriber
    g.link_locale = claims.locale
    g.subscriber_locale = subscriber.locale
    if request.method == "HEAD":
        return no_body()
    catalogue = catalogue_at(found.catalogue_version)
    topic = catalogue.marketing_topic(claims.topic)
    return render_template(
        "unsubscribe/page.html",
        already=is_unsubscribed(subscriber, topic),
        **_page_context(token, claims, subscriber, expired, topic, catalogue),
    )


@csrf.exempt
@bp.post("/<token>")
@limiter.limit(public_limit, exempt_when=is_one_click)
def confirm(token: str):
    """RFC 8058 one-click, or the page's form (which carries its own CSRF token).

    One-clicks as mailbox providers send them are answered before Flask sees them
    (:class:`app.unsubscribe.one_click.OneClickRoute`); this is the same answer to the
    other encodings of the same form (multipart, extra fields)."""
    if is_one_click():
        status, body, headers = get_answer(current_app)(token, get_remote_address())
        return plain(status, body, **headers)
    if request.mimetype not in FORM_TYPES:
        return plain(415)
    if request.form.get("confirm") != "1":
        return plain(400)
    g.browser_form = True
    try:
        validate_csrf(request.form.get("csrf_token"))
    except ValidationError as exc:
        raise BadRequest() from exc
    return _browser(token)


def _locked(token: str, apply):
    """Open the link under the write lock, ``apply(session, subscriber, claims, topic)``,
    commit; ``(claims, subscriber, expired, topic, events)``. 503 if it cannot be durable."""
    session = get_session()
    try:
        with writers_queue(get_db()):
            session, claims, subscriber, expired = _open(token, for_update=True)
            topic = target_topic(subscriber, session, claims.topic)
            events = apply(session, subscriber, claims, topic)
            session.commit()
    except UNAVAILABLE as exc:
        rollback_quietly(session)
        raise ServiceUnavailable(retry_after=int(RETRY_AFTER)) from exc
    return claims, subscriber, expired, topic, events


def _browser_id() -> str:
    """This browser, as an undo receipt names it: its session's CSRF secret, hashed."""
    generate_csrf()  # the session holds the secret from now on (the page's form made it)
    return browser_of(cookie_session[current_app.config["WTF_CSRF_FIELD_NAME"]])


def _browser(token: str):
    claims, subscriber, expired, topic, events = _locked(
        token, lambda session, subscriber, claims, _topic: unsubscribe(
            session, subscriber, claims.topic, context=link_context("unsubscribe_page", claims)))
    undo_form = None
    if events:
        undo_form = UndoForm(receipt=undo_receipt(current_app.config["SECRET_KEYS"],
                                                  subscriber, events, browser=_browser_id()))
    return render_template(
        "unsubscribe/done.html",
        undo_form=undo_form,
        undone=False,
        ask_reason=True,
        **_reason_context(),
        **_page_context(token, claims, subscriber, expired, topic),
    )


def _reason_context() -> dict:
    return {"reason_labels": REASON_LABELS, "reason_max": MAX_REASON_TEXT}


@bp.post("/<token>/reason")
@limiter.limit(public_limit)
def reason(token: str):
    """The optional "why are you leaving?" answer, after the unsubscribe only (CSRF-protected
    form of the confirmation page). Nothing to explain (still subscribed): 409."""

    def apply(session, subscriber, claims, topic):
        if not is_unsubscribed(subscriber, topic):
            raise NotUnsubscribed("the link's unsubscribe is not in force")
        return record_reason(session, subscriber, reason=request.form.get("reason"),
                             text=request.form.get("text"),
                             topic=topic.slug if topic is not None else None,
                             context=link_context("unsubscribe_page", claims))

    try:
        claims, subscriber, expired, topic, _event = _locked(token, apply)
    except NotUnsubscribed:
        get_session().rollback()
        abort(409, description=_("You are not unsubscribed, so there is nothing to tell."))
    except PreferenceError:
        get_session().rollback()
        abort(400)
    return render_template(
        "unsubscribe/done.html",
        undo_form=UndoForm(),
        undone=False,
        thanked=True,
        **_page_context(token, claims, subscriber, expired, topic),
    )


@bp.post("/<token>/undo")
@limiter.limit(public_limit)
def take_back(token: str):
    """Re-subscribe what this browser's unsubscribe on the page just did (its receipt, for
    15 minutes; CSRF-protected form). Never lifts a suppression."""
    try:
        receipt = read_undo_receipt(current_app.config["SECRET_KEYS"],
                                    request.form.get("receipt"), browser=_browser_id())
        claims, subscriber, expired, topic, _events = _locked(
            token, lambda session, subscriber, claims, _topic: undo(
                session, subscriber, receipt, claims=claims,
                context=link_context("unsubscribe_page", claims)))
    except (UndoRefused, Suppressed) as exc:
        get_session().rollback()
        message = suppressed_message() if isinstance(exc, Suppressed) else _(
            "This undo is no longer possible: it works for 15 minutes after you unsubscribe, "
            "in the same browser, and only if nothing changed since.")
        return render_template("errors/http.html", code=409, message=message), 409
    return render_template(
        "unsubscribe/done.html",
        undo_form=None,
        undone=True,
        again_url=url_for("unsubscribe.page", token=token),
        **_page_context(token, claims, subscriber, expired, topic),
    )

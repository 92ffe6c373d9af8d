"""The preference page: GET shows, POST saves (CSRF-protected)."""

from __future__ import annotations

import datetime as dt
import json

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import format_date, get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy.exc import IntegrityError

from app import clock
from app.db import get_db, get_session
from app.errors import problem, wants_json
from app.i18n import pick
from app.limits import limiter, mail_limit, page_limit, public_limit
from app.links.minting import LinkTarget
from app.links.services import (
    PREFERENCES,
    ExpiredLink,
    LinkError,
    get_signer,
    links_for,
    open_link,
    read_link,
    verify_link,
)
from app.mail.services import MailSettings
from app.mail.services import queue as queue_mail
from app.preferences.address import CodeNotUsable, SameAddress, confirm, open_code, request_change
from app.preferences.forms import AddressChangeForm, FreshLinkForm, PreferencesForm
from app.preferences.services import (
    allowed_topics,
    fresh_link_target,
    mask_email,
    offers_sms,
    page_rows,
    parse_form,
)
from app.subscribers.export import export_in
from app.subscribers.labels import FREQUENCY_LABELS, REASON_LABELS
from app.subscribers.reading import PageSubscriber
from app.subscribers.services import (
    MAX_REASON_TEXT,
    AddressTaken,
    Context,
    InvalidEmail,
    InvalidPhone,
    NoChannel,
    PhoneRequired,
    PreferenceError,
    Suppressed,
    change,
    has_left,
    is_paused,
    record_reason,
)
from app.topics.catalogue import Catalogue, catalogue_at, get_catalogue

bp = Blueprint("preferences", __name__)

CHANNEL_LABELS = {"email": _l("By email"), "sms": _l("By SMS")}
CHANNEL_NAMES = {"email": _l("Email"), "sms": _l("SMS")}

PAUSE_LABELS = {"2w": _l("2 weeks"), "1m": _l("1 month"), "3m": _l("3 months")}

# The labels above as plain strings, per locale: the page shows up to twenty of them, and
# each lazy string looks the catalogue up again through the request context when shown.
_labels_by_locale: dict[str, dict[str, dict[str, str]]] = {}


def page_labels(locale: str) -> dict[str, dict[str, str]]:
    """``frequency_labels``, ``channel_labels`` and ``pause_labels`` in ``locale`` (the
    request's), translated once per process."""
    found = _labels_by_locale.get(locale)
    if found is None:
        found = _labels_by_locale[locale] = {
            name: {key: str(label) for key, label in labels.items()}
            for name, labels in (("frequency_labels", FREQUENCY_LABELS),
                                 ("channel_labels", CHANNEL_LABELS),
                                 ("pause_labels", PAUSE_LABELS))
        }
    return found


@bp.errorhandler(LinkError)
def link_error(exc: LinkError):
    return render_link_error(exc, PREFERENCES)


def render_link_error(exc: LinkError, purpose: str):
    if request.method == "HEAD":
        return no_body(exc.status)
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


def no_body(status: int = 200) -> Response:
    """A HEAD's answer: the status and headers of the page, and no page rendered."""
    response = Response(status=status, mimetype="text/html")
    response.headers.remove("Content-Length")  # the page's length is not known
    return response


def _read(token: str) -> tuple[PageSubscriber, Catalogue]:
    """The link's subscriber and the catalogue: one statement, unless the catalogue changed."""
    claims = verify_link(get_signer(current_app), PREFERENCES, token)
    found = read_link(get_db(), claims)
    g.link_locale = claims.locale
    g.subscriber_locale = found.subscriber.locale
    return found.subscriber, catalogue_at(found.catalogue_version)


def _render(token, subscriber, *, catalogue=None, saved=None, error=None, status=200,
            **extra):
    return render_template("preferences/page.html", token=token, saved=saved, error=error,
                           **extra, **page_context(subscriber, catalogue)), status


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


def page_context(subscriber, catalogue: Catalogue | None = None) -> dict:
    """What the page template shows of ``subscriber``: a :class:`PageSubscriber`, or a
    model (the page after a save, the admin's preview)."""
    if not isinstance(subscriber, PageSubscriber):
        subscriber = PageSubscriber.of(subscriber)
    if catalogue is None:
        catalogue = get_catalogue(get_session())
    locale = str(get_locale())
    default = current_app.config["DEFAULT_LOCALE"]
    rows = page_rows(catalogue, subscriber, locale, default)
    paused = is_paused(subscriber, clock.now())
    return dict(
        rows=rows,
        masked_email=mask_email(subscriber.email),
        unsubscribed_all=subscriber.unsubscribed_all,
        transactional=catalogue.transactional_names(locale, default),
        **page_labels(locale),
        offers_sms=offers_sms(rows),
        phone=subscriber.phone,
        paused_until=format_date(subscriber.paused_until, "long") if paused else None,
        follow=catalogue.follow_rows(subscriber.role_id, locale, default),
        privacy_url=current_app.config["PRIVACY_URL"],
    )


@bp.get("/<token>")
@page_limit
def page(token: str):
    """The page: reads, changes nothing (GET and HEAD: link scanners open it)."""
    subscriber, catalogue = _read(token)
    if request.method == "HEAD":
        return no_body()
    return _render(token, subscriber, catalogue=catalogue)


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
    except Suppressed:
        session.rollback()
        return _render(token, subscriber, error=suppressed_message(), status=409)
    except (InvalidPhone, PhoneRequired, NoChannel) as exc:
        # The subscriber's own mistake: the page again, saying what to fix; nothing saved.
        session.rollback()
        return _render(token, subscriber, error=_input_error(exc), status=400)
    except PreferenceError as exc:
        session.rollback()
        abort(400, description=str(exc))
    session.commit()
    default = current_app.config["DEFAULT_LOCALE"]
    catalogue = get_catalogue(session)
    names = {shown.entry.topic.slug: shown.name for shown in
             catalogue.page_topics(subscriber.role_id, str(get_locale()), default)}
    return _render(token, subscriber, catalogue=catalogue,
                   saved=[describe(e, names) for e in events], **_ask_reason(events))


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
@limiter.limit(mail_limit)
def renew(token: str):
    """An expired link may still name its subscriber: mail them a fresh one.

    Every case (a subscriber we know, an erased or unknown one, a forged link, a recipient
    past their limit, SMTP down) does the same work and gets the same page: one lookup,
    one queued (or dropped) message, one commit. The worker sends it later.
    """
    FreshLinkForm().validate_on_submit() or abort(400)
    session = get_session(write=True)
    try:
        open_link(session, get_signer(current_app), PREFERENCES, token)
    except ExpiredLink as exc:
        claims = exc.claims
    except LinkError:
        claims = None
    else:
        return redirect(url_for("preferences.page", token=token), code=303)
    if claims is not None:  # the link itself says which language the page speaks
        g.link_locale = claims.locale
    # One query in every case (a public id nobody has when the link named none), and a
    # link minted in every case: the answer's time says nothing about the subscriber.
    found = fresh_link_target(session, claims.public_id if claims else "-")
    if found is not None and claims.epoch < found.link_epoch:
        found = None  # a revoked link: nobody to send to
    target = found or LinkTarget(claims.public_id if claims else "-", 0)
    url = links_for(current_app, target, locale=claims.locale if claims else None)
    locale = (pick(claims.locale) if claims else None) or (pick(found.locale) if found else None)
    queue_mail(
        session, MailSettings.from_config(current_app.config), kind="fresh_link",
        to=found.email if found else None,
        locale=locale or current_app.config["DEFAULT_LOCALE"],
        context={"url": url["preferences_url"]}, subscriber_id=found.id if found else None,
    )
    session.commit()
    return render_template("preferences/renewed.html")


# Change of address (docs/address-change.md) ----------------------------------------------


@bp.errorhandler(CodeNotUsable)
def code_not_usable(exc: CodeNotUsable):
    return render_template("preferences/address_error.html", reason=exc.reason), exc.status


def _address_form(token, subscriber, form, *, error=None, status=200):
    return render_template("preferences/address.html", token=token, form=form, error=error,
                           masked_email=mask_email(subscriber.email),
                           privacy_url=current_app.config["PRIVACY_URL"]), status


@bp.get("/<token>/email")
@limiter.limit(public_limit)
def address_form(token: str):
    _session, _claims, subscriber = _open(token)
    return _address_form(token, subscriber, AddressChangeForm())


@bp.post("/<token>/email")
@limiter.limit(mail_limit)
def address_request(token: str):
    session, _claims, subscriber = _open(token, for_update=True)
    form = AddressChangeForm()
    form.validate_on_submit() or abort(400)
    try:
        new = request_change(
            session, subscriber, form.email.data or "",
            mail=MailSettings.from_config(current_app.config),
            max_age=current_app.config["ADDRESS_CHANGE_MAX_AGE"], locale=str(get_locale()),
            confirm_url=lambda code: current_app.config["BASE_URL"]
            + url_for("preferences.address_confirm", code=code),
        )
    except InvalidEmail:
        session.rollback()
        return _address_form(token, subscriber, form, status=400, error=_(
            "That email address does not look right. Check it and try again."))
    except SameAddress:
        session.rollback()
        return _address_form(token, subscriber, form, status=400, error=_(
            "That is the address we already have. Enter the new one."))
    session.commit()
    hours = max(1, round(current_app.config["ADDRESS_CHANGE_MAX_AGE"] / 3600))
    return render_template("preferences/address_sent.html", token=token, email=new,
                           hours=hours)


@bp.get("/email/<code>")
@limiter.limit(public_limit)
def address_confirm_page(code: str):
    """Changes nothing (mail scanners open links): shows the address and one button."""
    pending, subscriber = open_code(get_session(), code)
    g.subscriber_locale = subscriber.locale
    return render_template("preferences/address_confirm.html", code=code, form=PreferencesForm(),
                           email=pending.new_email)


@bp.post("/email/<code>")
@limiter.limit(public_limit)
def address_confirm(code: str):
    session = get_session(write=True)
    pending, subscriber = open_code(session, code, for_update=True)
    g.subscriber_locale = subscriber.locale
    PreferencesForm().validate_on_submit() or abort(400)
    try:
        with session.begin_nested():
            confirm(session, pending, subscriber, context=Context(source="preference_page"))
    except (AddressTaken, IntegrityError):
        # Someone else's address (or taken a moment ago): said only to whoever reads its
        # mail, and never whose it is. Nothing changes; the link stays unused.
        session.rollback()
        return render_template("preferences/address_done.html", taken=True,
                               email=pending.new_email), 409
    session.commit()
    url = links_for(current_app, subscriber)["preferences_url"]
    return render_template("preferences/address_done.html", taken=False,
                           email=subscriber.email, url=url)


def suppressed_message() -> str:
    """Why a suppressed address cannot switch marketing email back on (page and undo)."""
    return _("This address was removed from our lists at its owner's request, so marketing "
             "email cannot be switched back on for it.")


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

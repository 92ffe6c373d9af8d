"""The preference page: GET shows, POST saves (CSRF-protected)."""

from __future__ import annotations

import datetime as dt

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

from app import clock
from app.db import get_db, get_session
from app.errors import problem, wants_json
from app.limits import limiter, page_limit, public_limit
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
from app.mail.services import send_template
from app.preferences.forms import FreshLinkForm
from app.preferences.services import (
    allowed_topics,
    mask_email,
    offers_sms,
    page_rows,
    parse_form,
)
from app.subscribers.reading import PageSubscriber
from app.subscribers.services import (
    Context,
    InvalidPhone,
    NoChannel,
    PhoneRequired,
    PreferenceError,
    by_public_id,
    change,
    is_paused,
)
from app.topics.catalogue import Catalogue, catalogue_at, get_catalogue

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


def _render(token, subscriber, *, catalogue=None, saved=None, error=None, status=200):
    return render_template("preferences/page.html", token=token, saved=saved, error=error,
                           **page_context(subscriber, catalogue)), status


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
                   saved=[describe(e, names) for e in events])


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

"""The admin pages under /admin: login, catalogue, subscribers, webhooks, audit log.

Every view but ``login`` requires an admin session; every POST carries a CSRF
token (global CSRFProtect). Views parse, call a service, commit once, render.
"""

from __future__ import annotations

import json

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import get_locale, ngettext
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from wtforms import SelectChoice

from app import clock
from app.admin import services
from app.admin.auth import (
    authenticate,
    current_admin,
    log_in,
    log_out,
    login_redirect,
    safe_next,
)
from app.admin.forms import (
    KIND_LABELS,
    ActionForm,
    AddRoleTopicForm,
    EndpointForm,
    LoginForm,
    MoveForm,
    SearchForm,
    follow_link_form,
    role_form,
    topic_form,
)
from app.admin.services import AdminError, RoleTopicData, TopicData
from app.db import get_session
from app.esp.models import PROVIDERS
from app.i18n import is_rtl, language_name
from app.limits import limiter, login_limit
from app.preferences.forms import PreferencesForm
from app.preferences.services import parse_form
from app.preferences.views import (
    CHANNEL_LABELS,
    CHANNEL_NAMES,
    FREQUENCY_LABELS,
    PAUSE_LABELS,
    page_context,
)
from app.security import MAX_INT
from app.subscribers.models import EspEvent, Subscriber
from app.subscribers.services import (
    Context,
    PreferenceError,
    Suppressed,
    change,
    default_channels,
    is_paused,
    snapshot,
)
from app.topics.models import FollowLink, Role, Topic
from app.webhooks import services as webhook_services

bp = Blueprint("admin", __name__)
PER_PAGE = 50
# The only admin pages open without a logged-in admin. Every other route of the blueprint,
# including one added later, is refused by construction (:func:`guard`).
PUBLIC_ENDPOINTS = frozenset({"admin.login"})


@bp.before_request
def guard():
    if request.endpoint not in PUBLIC_ENDPOINTS:
        return login_redirect()
    return None


def _locales() -> list[str]:
    return current_app.config["SUPPORTED_LOCALES"]


def _default_locale() -> str:
    return current_app.config["DEFAULT_LOCALE"]


def _actor() -> str:
    return current_admin().email


# The largest page a query parameter may name: offsets and ids stay within the databases'
# BIGINT, so a huge number is a 400 page, never an overflow deep in a query.
MAX_PAGE = MAX_INT // 1000


def _int_arg(name: str, default: int | None, high: int = MAX_INT) -> int | None:
    """A positive integer query parameter (absent or empty: ``default``); else a 400."""
    raw = request.args.get(name)
    if raw in (None, ""):
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19 or not 1 <= int(raw) <= high:
        abort(400)
    return int(raw)


def _page() -> int:
    return _int_arg("page", 1, MAX_PAGE)


def _field_error(form, exc: AdminError) -> None:
    field = getattr(form, exc.field, None) if exc.field else None
    if field is not None:
        field.errors = [*field.errors, str(exc)]
    else:
        form.form_errors.append(str(exc))


def _render(template: str, status: int = 200, **context):
    context.setdefault("action_form", ActionForm())
    context.setdefault("admin", current_admin())
    return render_template(template, **context), status


def _get_or_404(model, ident):
    found = get_session().get(model, ident)
    if found is None:
        abort(404)
    return found


# Login -------------------------------------------------------------------------------------


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(login_limit, methods=["POST"])
def login():
    if request.method == "GET" and current_admin() is not None:
        return redirect(url_for("admin.dashboard"))
    form = LoginForm()
    status = 200
    error = None
    if form.validate_on_submit():
        session = get_session(write=True)
        admin = authenticate(session, form.email.data, form.password.data)
        if admin is not None:
            log_in(session, admin)
            session.commit()
            return redirect(safe_next(request.args.get("next")), code=303)
        session.rollback()
        error = _("That email and password do not match an administrator.")
        status = 401
    elif request.method == "POST":
        status = 422
    return render_template("admin/login.html", form=form, error=error,
                           expired=request.args.get("expired") == "1",
                           next=request.args.get("next")), status


@bp.post("/logout")
def logout():
    session = get_session(write=True)
    log_out(session)
    session.commit()
    flash(_("You are logged out."))
    return redirect(url_for("admin.login"), code=303)


@bp.get("/")
def dashboard():
    return _render("admin/dashboard.html", counts=services.dashboard_counts(get_session()))


# Topics ------------------------------------------------------------------------------------


@bp.get("/topics")
def topics():
    return _topics_page()


def _topics_page(status: int = 200, error: str | None = None):
    session = get_session()
    all_topics = services.ordered_topics(session)
    return _render(
        "admin/topics.html", status,
        topics=all_topics,
        missing={t.id: services.missing_locales(t.translations, _locales()) for t in all_topics},
        in_use=services.topics_in_use(session),
        move_form=MoveForm(),
        kind_labels=KIND_LABELS,
        frequency_labels=FREQUENCY_LABELS,
        channel_names=CHANNEL_NAMES,
        error=error,
    )


def _topic_data(form) -> TopicData:
    return TopicData(
        kind=form.kind.data,
        frequencies=list(form.frequencies.data or []),
        default_frequency=form.default_frequency.data,
        channels=list(form.channels.data or []),
        names={loc: form[f"name_{loc}"].data or "" for loc in _locales()},
        descriptions={loc: form[f"description_{loc}"].data or "" for loc in _locales()},
    )


@bp.route("/topics/new", methods=["GET", "POST"])
def topic_new():
    form = topic_form(_locales())
    status = 200
    if form.validate_on_submit():
        session = get_session(write=True)
        try:
            topic = services.create_topic(session, form.slug.data, _topic_data(form),
                                          actor=_actor(), default_locale=_default_locale())
        except AdminError as exc:
            session.rollback()
            _field_error(form, exc)
            status = 422
        else:
            session.commit()
            flash(_("Topic %(slug)s created.", slug=topic.slug))
            return redirect(url_for("admin.topics"), code=303)
    elif request.method == "POST":
        status = 422
    return _render("admin/topic_form.html", status, form=form, topic=None,
                   locales=_locales())


@bp.route("/topics/<int:topic_id>", methods=["GET", "POST"])
def topic_edit(topic_id: int):
    topic = _get_or_404(Topic, topic_id)
    texts = {t.locale: t for t in topic.translations}
    data = {"slug": topic.slug, "kind": topic.kind, "frequencies": list(topic.frequencies),
            "default_frequency": topic.default_frequency, "channels": list(topic.channels)}
    for loc in _locales():
        data[f"name_{loc}"] = texts[loc].name if loc in texts else ""
        data[f"description_{loc}"] = texts[loc].description if loc in texts else ""
    form = topic_form(_locales(), data=data)
    status = 200
    if form.validate_on_submit():
        session = get_session(write=True)
        try:
            services.update_topic(session, topic, _topic_data(form), actor=_actor(),
                                  default_locale=_default_locale())
        except AdminError as exc:
            session.rollback()
            _field_error(form, exc)
            status = 422
        else:
            session.commit()
            flash(_("Topic %(slug)s saved.", slug=topic.slug))
            return redirect(url_for("admin.topics"), code=303)
    elif request.method == "POST":
        status = 422
    form.slug.data = topic.slug  # read-only: whatever was posted, the slug stays
    return _render("admin/topic_form.html", status, form=form, topic=topic, locales=_locales(),
                   missing=services.missing_locales(topic.translations, _locales()))


@bp.post("/topics/<int:topic_id>/move")
def topic_move(topic_id: int):
    form = MoveForm()
    if not form.validate():
        abort(400)
    session = get_session(write=True)
    topic = _get_or_404(Topic, topic_id)
    services.move_topic(session, topic, form.direction.data, actor=_actor())
    session.commit()
    return redirect(url_for("admin.topics", _anchor=f"topic-{topic.slug}"), code=303)


@bp.post("/topics/<int:topic_id>/archive")
def topic_archive(topic_id: int):
    return _set_archived(topic_id, True)


@bp.post("/topics/<int:topic_id>/unarchive")
def topic_unarchive(topic_id: int):
    return _set_archived(topic_id, False)


def _set_archived(topic_id: int, archived: bool):
    session = get_session(write=True)
    topic = _get_or_404(Topic, topic_id)
    services.set_archived(session, topic, archived, actor=_actor())
    session.commit()
    flash(_("Topic %(slug)s archived.", slug=topic.slug) if archived
          else _("Topic %(slug)s restored.", slug=topic.slug))
    return redirect(url_for("admin.topics"), code=303)


@bp.post("/topics/<int:topic_id>/delete")
def topic_delete(topic_id: int):
    session = get_session(write=True)
    topic = _get_or_404(Topic, topic_id)
    slug = topic.slug
    try:
        services.delete_topic(session, topic, actor=_actor())
    except services.InUse:
        session.rollback()
        return _topics_page(409, _("Topic %(slug)s has subscribers or history, so it can only "
                                   "be archived.", slug=slug))
    session.commit()
    flash(_("Topic %(slug)s deleted.", slug=slug))
    return redirect(url_for("admin.topics"), code=303)


# Follow-us links ---------------------------------------------------------------------------


@bp.get("/follow-links")
def follow_links():
    session = get_session()
    links = services.ordered_follow_links(session)
    return _render("admin/follow_links.html", links=links, missing={
        link.id: services.missing_locales(link.translations, _locales()) for link in links})


def _role_choices() -> list[SelectChoice]:
    roles = services.ordered_roles(get_session())
    return [SelectChoice(0, _("Every role")),
            *(SelectChoice(r.id, r.text(str(get_locale()), _default_locale())) for r in roles)]


@bp.route("/follow-links/new", methods=["GET", "POST"])
@bp.route("/follow-links/<int:link_id>", methods=["GET", "POST"])
def follow_link_edit(link_id: int | None = None):
    link = _get_or_404(FollowLink, link_id) if link_id is not None else None
    data = None
    if link is not None:
        texts = {t.locale: t.name for t in link.translations}
        data = {"url": link.url, "role": link.role_id or 0,
                **{f"name_{loc}": texts.get(loc, "") for loc in _locales()}}
    form = follow_link_form(_locales(), _role_choices(), data=data)
    status = 200
    if form.validate_on_submit():
        session = get_session(write=True)
        role = session.get(Role, form.role.data) if form.role.data else None
        try:
            saved = services.save_follow_link(
                session, link, form.url.data, role,
                {loc: form[f"name_{loc}"].data or "" for loc in _locales()},
                actor=_actor(), default_locale=_default_locale())
        except AdminError as exc:
            session.rollback()
            _field_error(form, exc)
            status = 422
        else:
            session.commit()
            flash(_("Link %(name)s saved.",
                    name=saved.text(str(get_locale()), _default_locale())))
            return redirect(url_for("admin.follow_links"), code=303)
    elif request.method == "POST":
        status = 422
    return _render("admin/follow_link_form.html", status, form=form, link=link,
                   locales=_locales())


@bp.post("/follow-links/<int:link_id>/delete")
def follow_link_delete(link_id: int):
    session = get_session(write=True)
    services.delete_follow_link(session, _get_or_404(FollowLink, link_id), actor=_actor())
    session.commit()
    flash(_("Link deleted."))
    return redirect(url_for("admin.follow_links"), code=303)


# Roles -------------------------------------------------------------------------------------


@bp.get("/roles")
def roles():
    all_roles = services.ordered_roles(get_session())
    return _render("admin/roles.html", roles=all_roles, missing={
        r.id: services.missing_locales(r.translations, _locales()) for r in all_roles})


@bp.route("/roles/new", methods=["GET", "POST"])
def role_new():
    form = role_form(_locales())
    status = 200
    if form.validate_on_submit():
        session = get_session(write=True)
        try:
            role = services.create_role(
                session, form.slug.data, {loc: form[f"name_{loc}"].data for loc in _locales()},
                actor=_actor(), default_locale=_default_locale())
        except AdminError as exc:
            session.rollback()
            _field_error(form, exc)
            status = 422
        else:
            session.commit()
            flash(_("Role %(slug)s created.", slug=role.slug))
            return redirect(url_for("admin.role_edit", role_id=role.id), code=303)
    elif request.method == "POST":
        status = 422
    return _render("admin/role_new.html", status, form=form, locales=_locales())


def _role_form(role: Role):
    data = {"slug": role.slug}
    names = {t.locale: t.name for t in role.translations}
    for loc in _locales():
        data[f"name_{loc}"] = names.get(loc, "")
    for rt in role.role_topics:
        data[f"default_{rt.id}"] = rt.default_subscribed
        benefits = {t.locale: t.benefit for t in rt.translations}
        for loc in _locales():
            data[f"benefit_{rt.id}_{loc}"] = benefits.get(loc, "")
    return role_form(_locales(), [rt.id for rt in role.role_topics], data=data)


def _role_page(role: Role, form, status: int = 200, add_form=None):
    session = get_session()
    if add_form is None:
        add_form = AddRoleTopicForm()
    add_form.topic.choices = [
        SelectChoice(t.id, f"{t.text(str(get_locale()), _default_locale())} ({t.slug})")
        for t in services.addable_topics(session, role)
    ]
    form.slug.data = role.slug
    return _render("admin/role_edit.html", status, role=role, form=form, add_form=add_form,
                   move_form=MoveForm(), locales=_locales(), role_topics=role.role_topics,
                   missing=services.missing_locales(role.translations, _locales()))


@bp.route("/roles/<int:role_id>", methods=["GET", "POST"])
def role_edit(role_id: int):
    role = _get_or_404(Role, role_id)
    form = _role_form(role)
    if request.method == "GET":
        return _role_page(role, form)
    if not form.validate():
        return _role_page(role, form, 422)
    session = get_session(write=True)
    topics = {
        rt.id: RoleTopicData(
            default_subscribed=bool(form[f"default_{rt.id}"].data),
            benefits={loc: form[f"benefit_{rt.id}_{loc}"].data for loc in _locales()})
        for rt in role.role_topics
    }
    try:
        services.update_role(session, role, {loc: form[f"name_{loc}"].data for loc in _locales()},
                             topics, actor=_actor(), default_locale=_default_locale())
    except AdminError as exc:
        session.rollback()
        _field_error(form, exc)
        return _role_page(_get_or_404(Role, role_id), form, 422)
    session.commit()
    flash(_("Role %(slug)s saved.", slug=role.slug))
    return redirect(url_for("admin.role_edit", role_id=role.id), code=303)


@bp.post("/roles/<int:role_id>/topics")
def role_topic_add(role_id: int):
    session = get_session(write=True)
    role = _get_or_404(Role, role_id)
    add_form = AddRoleTopicForm()
    add_form.topic.choices = [SelectChoice(t.id, t.slug)
                              for t in services.addable_topics(session, role)]
    if not add_form.validate():
        return _role_page(role, _role_form(role), 422, add_form)
    topic = _get_or_404(Topic, add_form.topic.data)
    try:
        services.add_role_topic(session, role, topic, actor=_actor())
    except AdminError as exc:
        session.rollback()
        _field_error(add_form, exc)
        return _role_page(_get_or_404(Role, role_id), _role_form(role), 422, add_form)
    session.commit()
    flash(_("Topic %(slug)s added to the role.", slug=topic.slug))
    return redirect(url_for("admin.role_edit", role_id=role.id), code=303)


@bp.post("/roles/<int:role_id>/topics/<int:role_topic_id>/move")
def role_topic_move(role_id: int, role_topic_id: int):
    form = MoveForm()
    if not form.validate():
        abort(400)
    session = get_session(write=True)
    role = _get_or_404(Role, role_id)
    rt = services.role_topic(role, role_topic_id) or abort(404)
    services.move_role_topic(session, role, rt, form.direction.data, actor=_actor())
    session.commit()
    return redirect(url_for("admin.role_edit", role_id=role.id, _anchor="order"), code=303)


@bp.post("/roles/<int:role_id>/topics/<int:role_topic_id>/remove")
def role_topic_remove(role_id: int, role_topic_id: int):
    session = get_session(write=True)
    role = _get_or_404(Role, role_id)
    rt = services.role_topic(role, role_topic_id) or abort(404)
    services.remove_role_topic(session, role, rt, actor=_actor())
    session.commit()
    flash(_("Topic %(slug)s removed from the role.", slug=rt.topic.slug))
    return redirect(url_for("admin.role_edit", role_id=role.id, _anchor="order"), code=303)


@bp.get("/roles/<int:role_id>/preview")
def role_preview(role_id: int):
    """The preference page as a subscriber of this role would see it; it cannot be sent."""
    role = _get_or_404(Role, role_id)
    locale = str(get_locale())
    subscriber = services.preview_subscriber(role, locale)
    return render_template("admin/preview.html", preview=True, role=role, token=None,
                           saved=None, error=None, **page_context(subscriber))


# Subscribers -------------------------------------------------------------------------------


@bp.get("/subscribers")
def subscribers():
    form = SearchForm(request.args)
    query = (form.q.data or "").strip() if form.validate() else ""
    found = services.find_subscribers(get_session(), query) if query else []
    return _render("admin/subscribers.html", form=form, query=query, found=found)


def _subscriber_page(subscriber: Subscriber, status: int = 200, error: str | None = None):
    session = get_session()
    locale = str(get_locale())
    page = _page()
    events, total = services.history_page(session, subscriber, page, PER_PAGE)
    topics = services.admin_topics_for(session, subscriber)
    rows = []
    for slug, topic in topics.items():
        sub = subscriber.subscription(topic.id)
        rows.append({
            "slug": slug, "name": topic.text(locale, _default_locale()),
            "subscribed": bool(sub and sub.subscribed),
            "frequency": sub.frequency if sub else topic.default_frequency,
            "frequencies": list(topic.frequencies),
            "channels": sub.channels if sub else default_channels(topic),
            "offered": list(topic.channels),
        })
    return _render("admin/subscriber.html", status, subscriber=subscriber,
                   snapshot=snapshot(subscriber), rows=rows, events=events, total=total,
                   page=page, per_page=PER_PAGE, form=PreferencesForm(),
                   frequency_labels=FREQUENCY_LABELS, channel_labels=CHANNEL_LABELS,
                   pause_labels=PAUSE_LABELS,
                   paused=is_paused(subscriber, clock.now()), error=error)


@bp.get("/subscribers/<int:subscriber_id>")
def subscriber(subscriber_id: int):
    return _subscriber_page(_get_or_404(Subscriber, subscriber_id))


@bp.post("/subscribers/<int:subscriber_id>")
def subscriber_change(subscriber_id: int):
    session = get_session(write=True)
    found = _get_or_404(Subscriber, subscriber_id)
    if found.erased_at is not None:
        return _subscriber_page(found, 409, _("This subscriber was erased."))
    allowed = services.admin_topics_for(session, found)
    try:
        submission = parse_form(request.form, allowed, now=clock.now())
        events = change(session, found, context=Context(source="admin", actor=_actor()),
                        topics=submission.topics, allowed=allowed,
                        unsubscribed_all=submission.unsubscribed_all,
                        phone=submission.phone, paused_until=submission.paused_until)
    except Suppressed:
        session.rollback()
        return _subscriber_page(_get_or_404(Subscriber, subscriber_id), 409, _(
            "Nothing was saved: this address was erased and is suppressed, so it stays "
            "unsubscribed from all marketing."))
    except PreferenceError as exc:
        session.rollback()
        return _subscriber_page(_get_or_404(Subscriber, subscriber_id), 422,
                                _("Nothing was saved: %(reason)s", reason=str(exc)))
    session.commit()
    flash(ngettext("Saved: %(num)d change.", "Saved: %(num)d changes.", len(events)))
    return redirect(url_for("admin.subscriber", subscriber_id=found.id), code=303)


# Webhook endpoints -------------------------------------------------------------------------


@bp.get("/webhooks")
def webhooks():
    session = get_session()
    return _render("admin/webhooks.html", endpoints=webhook_services.list_endpoints(session),
                   counts=services.endpoint_counts(session))


@bp.route("/webhooks/new", methods=["GET", "POST"])
def webhook_new():
    form = EndpointForm()
    status = 200
    if form.validate_on_submit():
        session = get_session(write=True)
        try:
            endpoint, secret = services.add_endpoint(
                session, form.url.data, list(form.events.data or []),
                form.description.data or "", actor=_actor())
        except webhook_services.InvalidUrl as exc:
            session.rollback()
            form.url.errors = [*form.url.errors, str(exc)]
            status = 422
        except webhook_services.WebhookError as exc:
            session.rollback()
            form.events.errors = [*form.events.errors, str(exc)]
            status = 422
        else:
            session.commit()
            # Shown in this answer only: never stored in plain anywhere else.
            return _render("admin/webhook_secret.html", 201, endpoint=endpoint, secret=secret,
                           rotated=False)
    elif request.method == "POST":
        status = 422
    return _render("admin/webhook_new.html", status, form=form)


def _endpoint_or_404(endpoint_id: str):
    endpoint = webhook_services.get_endpoint(get_session(), endpoint_id)
    if endpoint is None:
        abort(404)
    return endpoint


def _webhook_page(endpoint, status: int = 200, *, error: str | None = None, result=None):
    session = get_session()
    filter_ = request.args.get("status") or None
    if filter_ not in (None, *webhook_services.DELIVERY_FILTERS):
        abort(400)
    before = _int_arg("before", None)
    deliveries = webhook_services.list_deliveries(
        session, endpoint_id=endpoint.id, status=filter_, before_id=before, limit=PER_PAGE + 1)
    more = len(deliveries) > PER_PAGE
    deliveries = deliveries[:PER_PAGE]
    return _render("admin/webhook.html", status, endpoint=endpoint,
                   deliveries=[webhook_services.describe_delivery(session, d)
                               for d in deliveries],
                   more=more, filter=filter_, filters=webhook_services.DELIVERY_FILTERS,
                   counts=webhook_services.count_deliveries(session, endpoint.id),
                   error=error, result=result)


@bp.get("/webhooks/<endpoint_id>")
def webhook(endpoint_id: str):
    return _webhook_page(_endpoint_or_404(endpoint_id))


@bp.post("/webhooks/<endpoint_id>/disable")
def webhook_disable(endpoint_id: str):
    return _set_enabled(endpoint_id, False)


@bp.post("/webhooks/<endpoint_id>/enable")
def webhook_enable(endpoint_id: str):
    return _set_enabled(endpoint_id, True)


def _set_enabled(endpoint_id: str, enabled: bool):
    session = get_session(write=True)
    endpoint = _endpoint_or_404(endpoint_id)
    services.set_endpoint_enabled(session, endpoint, enabled, actor=_actor())
    session.commit()
    flash(_("Endpoint enabled.") if enabled else _("Endpoint disabled."))
    return redirect(url_for("admin.webhook", endpoint_id=endpoint.id), code=303)


@bp.post("/webhooks/<endpoint_id>/rotate")
def webhook_rotate(endpoint_id: str):
    session = get_session(write=True)
    endpoint = _endpoint_or_404(endpoint_id)
    secret = services.rotate_endpoint_secret(session, endpoint, actor=_actor())
    session.commit()
    return _render("admin/webhook_secret.html", endpoint=endpoint, secret=secret, rotated=True)


@bp.post("/webhooks/<endpoint_id>/test")
def webhook_test(endpoint_id: str):
    session = get_session(write=True)
    endpoint = _endpoint_or_404(endpoint_id)
    result = services.send_test(session, endpoint, actor=_actor())
    session.commit()
    return _webhook_page(endpoint, result=result)


@bp.post("/webhooks/<endpoint_id>/deliveries/<int:delivery_id>/replay")
def webhook_replay(endpoint_id: str, delivery_id: int):
    session = get_session(write=True)
    endpoint = _endpoint_or_404(endpoint_id)
    try:
        queued = services.replay(session, endpoint, delivery_id, actor=_actor())
    except webhook_services.NotReplayable as exc:
        session.rollback()
        return _webhook_page(_endpoint_or_404(endpoint_id), 409,
                             error=_("Not replayed: %(reason)s", reason=str(exc)))
    if queued is None:
        abort(404)
    session.commit()
    flash(_("Delivery %(id)s queued again as %(new)s.", id=delivery_id, new=queued.id))
    return redirect(url_for("admin.webhook", endpoint_id=endpoint.id), code=303)


# Audit log ---------------------------------------------------------------------------------


# Deliverability: bounces, complaints and unsubscribes the ESPs reported ---------------------

REPORT_KIND_LABELS = {
    "complaint": _l("Complaint"),
    "hard_bounce": _l("Hard bounce"),
    "soft_bounce": _l("Soft bounce"),
    "unsubscribe": _l("Unsubscribe"),
    "other": _l("Other"),
}
REPORT_OUTCOME_LABELS = {
    "applied": _l("Applied"),
    "unchanged": _l("Changed nothing"),
    "unknown": _l("Unknown address"),
}


def _choice(name: str, allowed) -> str | None:
    value = request.args.get(name) or None
    return value if value in allowed else None


@bp.get("/deliverability")
def deliverability():
    session = get_session()
    page = _page()
    where = services.ReportFilter(
        kind=_choice("kind", REPORT_KIND_LABELS), provider=_choice("provider", PROVIDERS),
        outcome=_choice("outcome", REPORT_OUTCOME_LABELS),
        address=(request.args.get("q") or "").strip()[:320])
    reports, total = services.esp_reports_page(session, where, page, PER_PAGE)
    undeliverable, undeliverable_total = services.undeliverable_page(
        session, where.address, 1, PER_PAGE)
    return _render("admin/deliverability.html", reports=reports, total=total, page=page,
                   per_page=PER_PAGE, where=where, providers=PROVIDERS,
                   kind_labels=REPORT_KIND_LABELS, outcome_labels=REPORT_OUTCOME_LABELS,
                   undeliverable=undeliverable, undeliverable_total=undeliverable_total)


@bp.get("/deliverability/<int:report_id>")
def deliverability_report(report_id: int):
    report = _get_or_404(EspEvent, report_id)
    return _render("admin/esp_report.html", report=report, kind_labels=REPORT_KIND_LABELS,
                   outcome_labels=REPORT_OUTCOME_LABELS,
                   raw=json.dumps(report.raw, ensure_ascii=False, indent=2, sort_keys=True))


@bp.get("/audit")
def audit():
    page = _page()
    entries, total = services.audit_page(get_session(), page, PER_PAGE)
    return _render("admin/audit.html", entries=entries, total=total, page=page,
                   per_page=PER_PAGE)


@bp.context_processor
def _admin_context():
    return {"is_rtl": is_rtl, "language_name": language_name,
            "as_json": lambda value: json.dumps(value, ensure_ascii=False, sort_keys=True)}


from app.admin import insights  # noqa: E402, F401  (routes on this blueprint)

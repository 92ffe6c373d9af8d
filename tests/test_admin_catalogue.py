"""Topics and roles through the admin pages: validation, ordering, archive, preview, audit."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app.admin.models import AuditEntry
from app.subscribers.models import Subscriber
from app.subscribers.services import Context, TopicChoice, change
from app.topics.models import Role, Topic
from tests.test_admin import FAST_HASH, post, token
from tests.test_admin import admin as admin  # the fixtures, re-exported
from tests.test_admin import admin_client as admin_client
from tests.test_admin import ui as ui

LOCALES = ("en", "ar", "ru", "ms")


@pytest.fixture
def app_config():
    return dict(FAST_HASH)


def topic_fields(**overrides) -> dict:
    data = {"slug": "webinars", "kind": "marketing", "frequencies": ["weekly", "monthly"],
            "channels": ["email"],
            "default_frequency": "weekly", "name_en": "Webinars",
            "description_en": "Live sessions with our experts.", "name_ar": "ندوات عبر الإنترنت"}
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def topic(session, slug) -> Topic | None:
    session.expire_all()
    return session.scalars(select(Topic).where(Topic.slug == slug)).one_or_none()


def audits(session, action=None) -> list[AuditEntry]:
    query = select(AuditEntry).order_by(AuditEntry.id)
    if action:
        query = query.where(AuditEntry.action == action)
    return list(session.scalars(query))


def test_topic_list_shows_every_topic_and_its_missing_locales(ui, session):
    created = post(ui, "/admin/topics/new", **topic_fields())
    assert created.status_code == 303
    page = ui.get("/admin/topics").get_data(as_text=True)
    for slug in ("offers", "news", "tips", "events", "alerts", "receipts", "webinars"):
        assert f'id="topic-{slug}"' in page
    row = page.split('id="topic-webinars"')[1].split("</tr>")[0]
    assert '<span class="badge badge-warning" lang="en">ru</span>' in row
    assert '<span class="badge badge-warning" lang="en">ms</span>' in row
    assert ">ar</span>" not in row
    offers = page.split('id="topic-offers"')[1].split("</tr>")[0]
    assert "badge-warning" not in offers


def test_create_topic_saves_every_locale_and_audits(ui, session):
    response = post(ui, "/admin/topics/new", **topic_fields())
    assert response.status_code == 303
    assert response.headers["Location"] == "/admin/topics"
    saved = topic(session, "webinars")
    assert saved.kind == "marketing"
    assert saved.frequencies == ["weekly", "monthly"]
    assert saved.default_frequency == "weekly"
    assert {t.locale: t.name for t in saved.translations} == {
        "en": "Webinars", "ar": "ندوات عبر الإنترنت"}
    assert saved.position > topic(session, "security").position
    [entry] = audits(session, "topic.create")
    assert entry.admin_email == "root@example.com"
    assert entry.entity == "topic" and entry.entity_id == str(saved.id)
    assert entry.details["slug"] == "webinars"


def test_new_topic_form_has_a_fieldset_per_locale(ui):
    page = ui.get("/admin/topics/new").get_data(as_text=True)
    for loc in LOCALES:
        assert f'id="locale-{loc}"' in page
        assert f'name="name_{loc}"' in page
    assert '<input dir="rtl" id="name_ar" lang="ar" maxlength="200" name="name_ar"' in page
    assert '<input dir="ltr" id="name_ru" lang="ru"' in page
    for value in ("daily", "weekly", "biweekly", "monthly", "quarterly"):
        assert f'type="checkbox" value="{value}"' in page


@pytest.mark.parametrize("overrides,field", [
    ({"frequencies": None}, "frequencies"),
    ({"default_frequency": "daily"}, "default_frequency"),
    ({"name_en": ""}, "name_en"),
    ({"slug": "Bad Slug!"}, "slug"),
    ({"slug": ""}, "slug"),
    ({"slug": "offers"}, "slug"),
    ({"kind": "spam"}, "kind"),
    ({"frequencies": ["weekly", "hourly"]}, "frequencies"),
    ({"name_en": "x" * 201}, "name_en"),
])
def test_invalid_topic_is_refused_with_field_errors_and_nothing_saved(ui, session, overrides,
                                                                      field):
    before = session.scalar(select(func.count(Topic.id)))
    response = post(ui, "/admin/topics/new", **topic_fields(**overrides))
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert 'class="field-error"' in page
    # The error sits on the field at fault (its name alone is on every form page).
    kind_error = '<fieldset class="admin-choices has-error">'  # radios: no per-field id
    assert (kind_error if field == "kind" else f'id="{field}-error"') in page
    session.expire_all()
    assert session.scalar(select(func.count(Topic.id))) == before
    assert audits(session) == []


def test_edit_topic_keeps_the_slug_and_updates_the_rest(ui, session):
    offers = topic(session, "offers")
    page = ui.get(f"/admin/topics/{offers.id}").get_data(as_text=True)
    assert 'name="slug" readonly type="text" value="offers"' in page
    response = post(ui, f"/admin/topics/{offers.id}", slug="renamed", kind="marketing",
                    frequencies=["monthly", "quarterly"], default_frequency="quarterly",
                    channels=["sms", "email"],
                    name_en="Special offers", name_ar="عروض خاصة", name_ru="", name_ms="Tawaran")
    assert response.status_code == 303
    saved = topic(session, "offers")
    assert saved is not None and topic(session, "renamed") is None
    assert saved.frequencies == ["monthly", "quarterly"]
    assert saved.channels == ["email", "sms"]
    assert saved.default_frequency == "quarterly"
    names = {t.locale: t.name for t in saved.translations}
    assert names == {"en": "Special offers", "ar": "عروض خاصة", "ms": "Tawaran"}
    [entry] = audits(session, "topic.update")
    assert entry.details["slug"] == "offers"
    assert entry.details["default_frequency"] == {"before": "weekly", "after": "quarterly"}


def test_edit_topic_validation_error_changes_nothing(ui, session):
    offers = topic(session, "offers")
    response = post(ui, f"/admin/topics/{offers.id}", kind="marketing",
                    frequencies=["monthly"], default_frequency="weekly", name_en="Changed")
    assert response.status_code == 422
    assert "the default frequency must be one of the offered ones" in response.get_data(
        as_text=True)
    saved = topic(session, "offers")
    assert saved.text("en", "en") == "Offers"
    assert saved.frequencies == ["daily", "weekly", "biweekly", "monthly"]


def test_unknown_topic_is_404(ui):
    assert ui.get("/admin/topics/999999").status_code == 404
    assert post(ui, "/admin/topics/999999/archive").status_code == 404


def order(session) -> list[str]:
    session.expire_all()
    return list(session.scalars(select(Topic.slug).order_by(Topic.position, Topic.slug)))


def test_move_topics_up_and_down(ui, session):
    start = order(session)
    second = topic(session, start[1])
    assert post(ui, f"/admin/topics/{second.id}/move", direction="up").status_code == 303
    assert order(session) == [start[1], start[0], *start[2:]]
    assert post(ui, f"/admin/topics/{second.id}/move", direction="down").status_code == 303
    assert order(session) == start
    first = topic(session, start[0])
    post(ui, f"/admin/topics/{first.id}/move", direction="up")  # already first: no change
    assert order(session) == start
    assert post(ui, f"/admin/topics/{first.id}/move", direction="sideways").status_code == 400
    assert [e.action for e in audits(session)] == ["topic.move_up", "topic.move_down"]


def test_archive_and_unarchive(ui, session, catalogue, links):
    subscriber = catalogue.subscriber()
    alerts = topic(session, "alerts")
    assert post(ui, f"/admin/topics/{alerts.id}/archive").status_code == 303
    assert topic(session, "alerts").archived
    page = ui.get(links.preferences(subscriber)).get_data(as_text=True)
    assert "Alerts" not in page and "Offers" in page
    assert post(ui, f"/admin/topics/{alerts.id}/unarchive").status_code == 303
    assert not topic(session, "alerts").archived
    assert "Alerts" in ui.get(links.preferences(subscriber)).get_data(as_text=True)
    assert [e.action for e in audits(session)] == ["topic.archive", "topic.unarchive"]


def test_a_topic_in_use_cannot_be_deleted(ui, session, catalogue):
    catalogue.subscriber()  # holds subscriptions to the shopper topics, offers included
    offers = topic(session, "offers")
    listing = ui.get("/admin/topics").get_data(as_text=True)
    row = listing.split('id="topic-offers"')[1].split("</tr>")[0]
    assert "/delete" not in row
    response = post(ui, f"/admin/topics/{offers.id}/delete")
    assert response.status_code == 409
    assert "can only be archived" in response.get_data(as_text=True)
    assert topic(session, "offers") is not None
    assert audits(session) == []


def test_a_topic_named_by_an_event_cannot_be_deleted(ui, session, catalogue):
    subscriber = catalogue.subscriber(role="developer")
    post(ui, "/admin/topics/new", **topic_fields())
    webinars = topic(session, "webinars")
    change(session, subscriber, context=Context(source="system"),
           topics={"webinars": TopicChoice(subscribed=True)}, allowed={"webinars": webinars})
    session.commit()
    assert post(ui, f"/admin/topics/{webinars.id}/delete").status_code == 409


def test_an_unused_topic_can_be_deleted_and_leaves_its_roles(ui, session):
    post(ui, "/admin/topics/new", **topic_fields())
    webinars = topic(session, "webinars")
    shopper = session.scalars(select(Role).where(Role.slug == "shopper")).one()
    assert post(ui, f"/admin/roles/{shopper.id}/topics", topic=str(webinars.id)).status_code == 303
    assert 'id="topic-webinars"' in ui.get("/admin/topics").get_data(as_text=True)
    response = post(ui, f"/admin/topics/{webinars.id}/delete")
    assert response.status_code == 303
    assert topic(session, "webinars") is None
    session.expire_all()
    role = session.scalars(select(Role).where(Role.slug == "shopper")).one()
    assert "webinars" not in [rt.topic.slug for rt in role.role_topics]
    [entry] = audits(session, "topic.delete")
    assert entry.details["removed_from_roles"] == ["shopper"]


# Roles -------------------------------------------------------------------------------------


def role(session, slug) -> Role:
    session.expire_all()
    return session.scalars(select(Role).where(Role.slug == slug)).one()


def role_order(session, slug) -> list[str]:
    return [rt.topic.slug for rt in role(session, slug).role_topics]


def test_role_list_and_create(ui, session):
    listing = ui.get("/admin/roles").get_data(as_text=True)
    for slug in ("shopper", "developer", "marketer"):
        assert f'id="role-{slug}"' in listing
    bad = post(ui, "/admin/roles/new", slug="partner", name_ar="شريك")
    assert bad.status_code == 422
    assert "a name in the default locale is required" in bad.get_data(as_text=True)
    duplicate = post(ui, "/admin/roles/new", slug="shopper", name_en="Shopper again")
    assert duplicate.status_code == 422
    created = post(ui, "/admin/roles/new", slug="partner", name_en="Partner", name_ar="شريك")
    assert created.status_code == 303
    partner = role(session, "partner")
    assert created.headers["Location"] == f"/admin/roles/{partner.id}"
    assert {t.locale: t.name for t in partner.translations} == {"en": "Partner", "ar": "شريك"}
    listing = ui.get("/admin/roles").get_data(as_text=True)
    row = listing.split('id="role-partner"')[1].split("</tr>")[0]
    assert ">ru</span>" in row and ">ms</span>" in row
    assert [e.action for e in audits(session)] == ["role.create"]


def test_role_topics_add_move_remove(ui, session):
    shopper = role(session, "shopper")
    assert role_order(session, "shopper") == ["offers", "alerts", "news", "events"]
    page = ui.get(f"/admin/roles/{shopper.id}").get_data(as_text=True)
    assert "(tips)</option>" in page and "(offers)</option>" not in page
    tips = topic(session, "tips")
    assert post(ui, f"/admin/roles/{shopper.id}/topics", topic=str(tips.id)).status_code == 303
    assert role_order(session, "shopper") == ["offers", "alerts", "news", "events", "tips"]
    again = post(ui, f"/admin/roles/{shopper.id}/topics", topic=str(tips.id))
    assert again.status_code == 422
    receipts = topic(session, "receipts")
    assert post(ui, f"/admin/roles/{shopper.id}/topics",
                topic=str(receipts.id)).status_code == 422
    rt = {rt.topic.slug: rt.id for rt in role(session, "shopper").role_topics}
    move = f"/admin/roles/{shopper.id}/topics/{rt['tips']}/move"
    assert post(ui, move, direction="up").status_code == 303
    assert role_order(session, "shopper") == ["offers", "alerts", "news", "tips", "events"]
    post(ui, f"/admin/roles/{shopper.id}/topics/{rt['offers']}/move", direction="down")
    assert role_order(session, "shopper") == ["alerts", "offers", "news", "tips", "events"]
    remove = f"/admin/roles/{shopper.id}/topics/{rt['news']}/remove"
    assert post(ui, remove).status_code == 303
    assert role_order(session, "shopper") == ["alerts", "offers", "tips", "events"]
    assert post(ui, remove).status_code == 404
    other = role(session, "developer").role_topics[0].id
    assert post(ui, f"/admin/roles/{shopper.id}/topics/{other}/remove").status_code == 404
    assert [e.action for e in audits(session)] == [
        "role.topic_add", "role.topic_move_up", "role.topic_move_down", "role.topic_remove"]


def test_role_texts_and_defaults(ui, session, catalogue):
    shopper = role(session, "shopper")
    rts = {rt.topic.slug: rt.id for rt in shopper.role_topics}
    form = {f"name_{loc}": "" for loc in LOCALES}
    form.update({f"benefit_{rt_id}_{loc}": "" for rt_id in rts.values() for loc in LOCALES})
    form.update(name_en="Shopper", name_ar="متسوّق", name_ru="Покупатель")
    form[f"default_{rts['alerts']}"] = "y"  # offers unticked, alerts ticked
    form[f"benefit_{rts['alerts']}_en"] = "Know first."
    form[f"benefit_{rts['alerts']}_ar"] = "كن أول من يعلم."
    response = post(ui, f"/admin/roles/{shopper.id}", **form)
    assert response.status_code == 303
    saved = role(session, "shopper")
    assert {t.locale: t.name for t in saved.translations} == {
        "en": "Shopper", "ar": "متسوّق", "ru": "Покупатель"}
    by_slug = {rt.topic.slug: rt for rt in saved.role_topics}
    assert not by_slug["offers"].default_subscribed
    assert by_slug["alerts"].default_subscribed
    assert {t.locale: t.benefit for t in by_slug["alerts"].translations} == {
        "en": "Know first.", "ar": "كن أول من يعلم."}
    assert by_slug["offers"].translations == []
    newcomer = catalogue.subscriber()
    subscribed = {s.topic.slug for s in newcomer.subscriptions if s.subscribed}
    assert subscribed == {"alerts"}
    [entry] = audits(session, "role.update")
    assert entry.details["topics"]["alerts"]["default_subscribed"] is True


def test_role_edit_without_default_name_is_refused(ui, session):
    shopper = role(session, "shopper")
    response = post(ui, f"/admin/roles/{shopper.id}", name_en="", name_ar="x")
    assert response.status_code == 422
    assert role(session, "shopper").text("en", "en") == "Shopper"
    assert audits(session) == []


def test_preview_renders_the_role_in_any_locale_and_cannot_be_submitted(ui, session):
    before = session.scalar(select(func.count(Subscriber.id)))
    shopper = role(session, "shopper")
    response = ui.get(f"/admin/roles/{shopper.id}/preview?lang=ar")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert 'dir="rtl"' in page
    assert "العروض" in page and "التنبيهات" in page
    assert "يوفّر أعضاؤنا 20%" in page  # the role's benefit text in Arabic
    assert "preview-banner" in page
    assert 'action="#"' in page and "/p/" not in page
    assert page.count(" disabled>") == 3  # save, unsubscribe from all, pause
    # The role's defaults: offers is on for a new shopper, alerts is off.
    assert "checked" in page.split('id="field-topic-offers"')[1].split(">")[0]
    assert "checked" not in page.split('id="field-topic-alerts"')[1].split(">")[0]
    english = ui.get(f"/admin/roles/{shopper.id}/preview?lang=en").get_data(as_text=True)
    assert "Offers" in english and "Preview" in english
    session.expire_all()
    assert session.scalar(select(func.count(Subscriber.id))) == before
    assert ui.get("/admin/roles/999999/preview").status_code == 404


def test_preview_of_a_role_without_topics(ui, session):
    post(ui, "/admin/roles/new", slug="empty", name_en="Empty")
    response = ui.get(f"/admin/roles/{role(session, 'empty').id}/preview")
    assert response.status_code == 200
    assert "There are no topics to choose from right now." in response.get_data(as_text=True)


def test_audit_log_lists_entries_newest_first(ui, session):
    post(ui, "/admin/topics/new", **topic_fields())
    post(ui, "/admin/roles/new", slug="partner", name_en="Partner")
    page = ui.get("/admin/audit").get_data(as_text=True)
    assert page.index("role.create") < page.index("topic.create")
    assert "root@example.com" in page
    assert "ندوات عبر الإنترنت" in page  # details shown as text, not \u escapes


def test_field_errors_are_translated(ui):
    bad = ui.post("/admin/roles/new?lang=ru",
                  data={"csrf_token": token(ui), "slug": "partner"})
    assert bad.status_code == 422
    assert "Нужно название на языке по умолчанию" in bad.get_data(as_text=True)

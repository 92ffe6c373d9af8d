"""The integrator API through HTTP: auth, subscribers, erasure, links, catalogue, events."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import func, select

from app.api.auth import create_api_key
from app.db import utcnow
from app.events.models import Event
from app.limits import limiter
from app.subscribers.models import Subscriber, Subscription, Suppression
from app.subscribers.services import email_hash
from app.topics.models import Topic
from app.webhooks.models import WebhookDelivery, WebhookEndpoint
from tests.conftest import ApiClient, serve


@pytest.fixture
def api_key(session):
    _key, plain = create_api_key(session, "crm-sync")
    session.commit()
    return plain


@pytest.fixture
def api(client, api_key, catalogue):
    """A client speaking to /api/v1 with a valid key."""
    return ApiClient(client, api_key)


def assert_problem(response, status: int, detail_part: str = ""):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["status"] == status
    assert body["title"]
    assert detail_part in body["detail"], body["detail"]
    return body


def count_events(session, **where) -> int:
    query = select(func.count(Event.id))
    for name, value in where.items():
        query = query.where(getattr(Event, name) == value)
    return session.scalar(query)


# --- auth --------------------------------------------------------------------------


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer pc_nope_nope", "Basic abc",
                                    "Bearer pc_deadbeef_wrongsecret"])
def test_missing_or_wrong_key_is_401_problem(client, catalogue, header):
    headers = {"Authorization": header} if header else {}
    response = client.get("/api/v1/topics", headers=headers)
    assert_problem(response, 401, "API key")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_revoked_key_is_401(client, session, catalogue):
    key, plain = create_api_key(session, "old")
    session.commit()
    headers = {"Authorization": f"Bearer {plain}"}
    assert client.get("/api/v1/topics", headers=headers).status_code == 200
    key.revoked_at = utcnow()
    session.commit()
    assert_problem(client.get("/api/v1/topics", headers=headers), 401)


def test_unknown_api_path_and_method_are_problems(api):
    assert_problem(api.get("/nowhere"), 404)
    assert_problem(api.patch("/topics"), 405)


def test_api_is_not_csrf_protected(api):
    # A JSON POST with no CSRF token and no cookie is answered by the API itself.
    response = api.post("/links", json={"external_id": "nobody"})
    assert_problem(response, 404, "nobody")


# --- upsert ------------------------------------------------------------------------


def test_put_creates_then_updates_then_no_op(api, session):
    body = {"email": "New.Person@Example.COM", "locale": "ru", "role": "developer",
            "topics": {"tips": {"subscribed": True, "frequency": "monthly"},
                       "events": {"subscribed": True}}}
    created = api.put("/subscribers/crm-1", json=body)
    assert created.status_code == 201, created.get_json()
    assert created.headers["Location"] == "/api/v1/subscribers/crm-1"
    data = created.get_json()
    assert data["external_id"] == "crm-1"
    assert data["email"] == "New.Person@example.com"
    assert data["locale"] == "ru"
    assert data["role"] == "developer"
    assert data["unsubscribed_all"] is False
    assert data["topics"]["tips"] == {"subscribed": True, "frequency": "monthly",
                                     "channels": ["email"]}
    assert data["topics"]["events"]["subscribed"] is True
    assert data["topics"]["news"] == {"subscribed": True, "frequency": "monthly",
                                     "channels": ["email"]}  # role default
    subscriber = session.scalar(select(Subscriber).where(Subscriber.external_id == "crm-1"))
    events_after_create = count_events(session, subscriber_id=subscriber.id)
    assert count_events(session, subscriber_id=subscriber.id, type="subscriber.created") == 1
    sources = set(session.scalars(select(Event.source).where(
        Event.subscriber_id == subscriber.id)))
    actors = set(session.scalars(select(Event.actor).where(
        Event.subscriber_id == subscriber.id)))
    assert sources == {"api"} and actors == {"crm-sync"}

    updated = api.put("/subscribers/crm-1",
                      json={"email": "new.person@example.com", "locale": "ms",
                            "topics": {"tips": {"subscribed": False}}})
    assert updated.status_code == 200
    data = updated.get_json()
    assert data["email"] == "new.person@example.com"
    assert data["locale"] == "ms"
    assert data["topics"]["tips"]["subscribed"] is False
    assert data["version"] > created.get_json()["version"]
    events_after_update = count_events(session, subscriber_id=subscriber.id)
    assert events_after_update == events_after_create + 3  # email, locale, tips

    same = api.put("/subscribers/crm-1", json={"email": "new.person@example.com",
                                                "topics": {"tips": {"subscribed": False}}})
    assert same.status_code == 200
    assert same.get_json()["version"] == data["version"]
    assert count_events(session, subscriber_id=subscriber.id) == events_after_update

    fetched = api.get("/subscribers/crm-1")
    assert fetched.status_code == 200
    assert fetched.get_json() == same.get_json()


def test_put_defaults_role_and_leaves_locale_unknown(api, app):
    response = api.put("/subscribers/crm-2", json={"email": "two@example.com"})
    assert response.status_code == 201
    data = response.get_json()
    assert data["role"] == app.config["DEFAULT_ROLE"] == "shopper"
    assert data["locale"] is None  # nobody told us: the pages follow the browser
    assert data["topics"]["offers"]["subscribed"] is True


def test_put_writes_outbox_rows_with_the_events(api, session):
    endpoint = WebhookEndpoint(url="http://127.0.0.1:9/hook", secret="whsec_dGVzdA==")
    session.add(endpoint)
    session.commit()
    assert api.put("/subscribers/crm-3", json={"email": "three@example.com"}).status_code == 201
    subscriber = session.scalar(select(Subscriber).where(Subscriber.external_id == "crm-3"))
    event_ids = set(session.scalars(select(Event.id).where(
        Event.subscriber_id == subscriber.id)))
    delivered = set(session.scalars(select(WebhookDelivery.event_id).where(
        WebhookDelivery.endpoint_id == endpoint.id)))
    assert event_ids and event_ids == delivered


def test_duplicate_email_is_409(api, catalogue):
    other = catalogue.subscriber(email="taken@example.com", external_id="owner")
    response = api.put("/subscribers/someone-else", json={"email": "taken@example.com"})
    body = assert_problem(response, 409, "taken@example.com")
    assert body["conflicting_external_id"] == other.external_id
    assert api.get("/subscribers/someone-else").status_code == 404


@pytest.mark.parametrize(("body", "pointer", "detail"), [
    ({"email": "not-an-address"}, "/email", "valid address"),
    ({}, "/email", "required"),
    ({"email": 42}, "/email", "must be a string"),
    ({"email": "a@example.com", "role": "astronaut"}, "/role", "astronaut"),
    ({"email": "a@example.com", "locale": "xx"}, "/locale", "xx"),
    ({"email": "a@example.com", "topics": {"gossip": {"subscribed": True}}},
     "/topics/gossip", "gossip"),
    ({"email": "a@example.com", "topics": {"receipts": {"subscribed": False}}},
     "/topics/receipts", "receipts"),
    ({"email": "a@example.com", "topics": {"events": {"subscribed": True,
                                                       "frequency": "daily"}}},
     "/topics/events/frequency", "daily"),
    ({"email": "a@example.com", "topics": {"offers": {"frequency": "daily"}}},
     "/topics/offers/subscribed", "required"),
    ({"email": "a@example.com", "topics": {"offers": {"subscribed": "yes"}}},
     "/topics/offers/subscribed", "boolean"),
    ({"email": "a@example.com", "topics": ["offers"]}, "/topics", "object"),
    ({"email": "a@example.com", "nickname": "x"}, "/nickname", "Unknown member"),
])
def test_invalid_upserts_are_422_naming_the_field(api, session, body, pointer, detail):
    before = session.scalar(select(func.count(Subscriber.id)))
    response = api.put("/subscribers/crm-bad", json=body)
    problem = assert_problem(response, 422, detail)
    assert problem["errors"][0]["pointer"] == pointer
    assert session.scalar(select(func.count(Subscriber.id))) == before


def test_body_format_problems(api, app):
    headers = {"Content-Type": "application/json"}
    assert_problem(api.put("/subscribers/x", data="{bad", headers=headers), 400, "not valid JSON")
    assert_problem(api.put("/subscribers/x", data=b"\xff\xfe", headers=headers), 400, "UTF-8")
    assert_problem(api.put("/subscribers/x", data="[]", headers=headers), 422, "an array")
    assert_problem(api.put("/subscribers/x", data="email=a@example.com",
                           headers={"Content-Type": "application/x-www-form-urlencoded"}),
                   415, "application/x-www-form-urlencoded")
    assert_problem(api.put("/subscribers/x", data="{}"), 415, "no Content-Type")
    big = json.dumps({"email": "a@example.com", "pad": "x" * app.config["MAX_CONTENT_LENGTH"]})
    assert_problem(api.put("/subscribers/x", data=big, headers=headers), 413)


def test_get_unknown_subscriber_is_404(api):
    assert_problem(api.get("/subscribers/ghost"), 404, "ghost")


def test_api_can_push_a_master_unsubscribe(api, session):
    api.put("/subscribers/crm-4", json={"email": "four@example.com"})
    response = api.put("/subscribers/crm-4", json={"unsubscribed_all": True})
    assert response.status_code == 200
    assert response.get_json()["unsubscribed_all"] is True
    assert count_events(session, type="subscriber.unsubscribed", action="unsubscribed_all") == 1


# --- erasure -----------------------------------------------------------------------


def test_external_ids_may_contain_slashes(api):
    assert api.put("/subscribers/org/7/person", json={"email": "slash@example.com"}
                   ).status_code == 201
    assert api.get("/subscribers/org/7/person").get_json()["external_id"] == "org/7/person"


def test_delete_erases_and_suppresses(api, client, session, links):
    endpoint = WebhookEndpoint(url="http://127.0.0.1:9/hook", secret="whsec_dGVzdA==",
                               event_types=["subscriber.erased"])
    session.add(endpoint)
    session.commit()
    api.put("/subscribers/crm-5", json={"email": "Erase.Me@example.com",
                                        "topics": {"alerts": {"subscribed": True}}})
    api.put("/subscribers/crm-5", json={"email": "erase.me2@example.com"})
    subscriber = session.scalar(select(Subscriber).where(Subscriber.external_id == "crm-5"))
    old_link = links.unsubscribe(subscriber)
    subscriber_id = subscriber.id

    response = api.delete("/subscribers/crm-5")
    assert response.status_code == 204
    assert response.data == b""
    session.expire_all()
    erased = session.get(Subscriber, subscriber_id)
    assert erased.email is None and erased.external_id is None
    assert erased.erased_at is not None and erased.unsubscribed_all is True
    assert erased.link_epoch == 1
    assert session.scalar(select(func.count()).select_from(Subscription).where(
        Subscription.subscriber_id == subscriber_id)) == 0
    assert session.scalar(select(Suppression.id).where(
        Suppression.email_hash == email_hash("erase.me2@example.com"))) is not None
    events = session.scalars(select(Event).where(Event.subscriber_id == subscriber_id)).all()
    erased_events = [e for e in events if e.type == "subscriber.erased"]
    assert len(erased_events) == 1
    assert erased_events[0].source == "api"
    assert erased_events[0].payload["subscriber"]["external_id"] == "crm-5"
    assert erased_events[0].payload["subscriber"]["email"] is None
    queued = session.scalars(select(WebhookDelivery.event_id).where(
        WebhookDelivery.endpoint_id == endpoint.id)).all()
    assert queued == [erased_events[0].id]
    stored = json.dumps([[e.before, e.after, e.payload] for e in events]).lower()
    assert "erase.me" not in stored
    assert client.get(old_link).status_code == 404
    assert_problem(api.get("/subscribers/crm-5"), 404)
    assert_problem(api.delete("/subscribers/crm-5"), 404)

    again = api.put("/subscribers/crm-5", json={"email": "erase.me2@example.com"})
    assert again.status_code == 201
    assert again.get_json()["unsubscribed_all"] is True
    assert_problem(api.put("/subscribers/crm-5", json={"unsubscribed_all": False}), 409,
                   "suppressed")
    assert api.get("/subscribers/crm-5").get_json()["unsubscribed_all"] is True


def test_changing_to_a_suppressed_address_unsubscribes(api):
    api.put("/subscribers/crm-6", json={"email": "gone@example.com"})
    api.delete("/subscribers/crm-6")
    api.put("/subscribers/crm-7", json={"email": "fresh@example.com"})
    response = api.put("/subscribers/crm-7", json={"email": "gone@example.com"})
    assert response.status_code == 200
    assert response.get_json()["unsubscribed_all"] is True


# --- links -------------------------------------------------------------------------


def test_single_link(api, client, catalogue):
    subscriber = catalogue.subscriber(external_id="crm-links")
    response = api.post("/links", json={"external_id": "crm-links", "topic": "offers",
                                        "campaign": "spring", "locale": "ar"})
    assert response.status_code == 200
    data = response.get_json()
    assert set(data) == {"preferences_url", "unsubscribe_url", "headers"}
    assert data["preferences_url"].startswith("http://localhost/p/")
    assert data["unsubscribe_url"].startswith("http://localhost/u/")
    assert data["headers"] == {"List-Unsubscribe": f"<{data['unsubscribe_url']}>",
                               "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
    assert "mailto:" not in json.dumps(data)
    page = client.get(data["preferences_url"].removeprefix("http://localhost"))
    assert page.status_code == 200
    assert 'dir="rtl"' in page.get_data(as_text=True)
    unsub = data["unsubscribe_url"].removeprefix("http://localhost")
    assert client.get(unsub).status_code == 200
    one_click = client.post(unsub, data={"List-Unsubscribe": "One-Click"})
    assert one_click.status_code == 200
    assert api.get(f"/subscribers/{subscriber.external_id}").get_json()[
        "topics"]["offers"]["subscribed"] is False


def test_link_problems(api, catalogue):
    catalogue.subscriber(external_id="crm-l2")
    assert_problem(api.post("/links", json={"external_id": "nobody"}), 404, "nobody")
    assert_problem(api.post("/links", json={"external_id": "crm-l2", "topic": "gossip"}),
                   422, "gossip")
    assert_problem(api.post("/links", json={"external_id": "crm-l2", "topic": "receipts"}),
                   422, "transactional")
    assert_problem(api.post("/links", json={"external_id": "crm-l2", "campaign": "x" * 101}),
                   422, "100 bytes")
    assert_problem(api.post("/links", json={"external_id": "crm-l2", "locale": "xx"}), 422)
    assert_problem(api.post("/links", json={"topic": "offers"}), 422, "external_id")
    assert_problem(api.post("/links", json={"items": []}), 422, "at least one")


def test_bulk_links(api, catalogue, session):
    a = catalogue.subscriber(external_id="bulk-a")
    catalogue.subscriber(external_id="bulk-b")
    session.get(Topic, session.scalar(select(Topic.id).where(Topic.slug == "tips"))
                ).archived = True
    session.commit()
    response = api.post("/links", json={"items": [
        {"external_id": "bulk-a", "topic": "offers", "campaign": "c1"},
        {"external_id": "missing"},
        {"external_id": "bulk-b"},
        {"external_id": "bulk-a", "topic": "tips"},
    ]})
    assert response.status_code == 200
    items = response.get_json()["items"]
    assert [i["external_id"] for i in items] == ["bulk-a", "missing", "bulk-b", "bulk-a"]
    assert items[0]["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert items[1]["error"]["status"] == 404
    assert "preferences_url" in items[2]
    assert items[3]["error"]["status"] == 422 and "archived" in items[3]["error"]["detail"]
    assert a.public_id not in json.dumps(items)  # opaque tokens, the id is only inside


def test_bulk_limits(api, catalogue):
    catalogue.subscriber(external_id="bulk-c")
    full = api.post("/links", json={"items": [{"external_id": "bulk-c"}] * 1000})
    assert full.status_code == 200
    assert len(full.get_json()["items"]) == 1000
    too_many = assert_problem(api.post("/links", json={"items": [{"external_id": "bulk-c"}]
                                                       * 1001}), 422, "1000")
    assert too_many["errors"][0]["pointer"] == "/items"
    body = assert_problem(api.post("/links", json={"items": [{"external_id": "bulk-c"},
                                                             {"external_id": 7}]}), 422)
    assert body["errors"][0]["pointer"] == "/items/1/external_id"


# --- catalogue ---------------------------------------------------------------------


def test_topics_and_roles(api):
    topics = api.get("/topics").get_json()["topics"]
    by_slug = {t["slug"]: t for t in topics}
    assert by_slug["offers"]["kind"] == "marketing"
    assert by_slug["offers"]["frequencies"] == ["daily", "weekly", "biweekly", "monthly"]
    assert by_slug["offers"]["names"]["ru"] == "Предложения"
    assert by_slug["offers"]["archived"] is False
    assert by_slug["receipts"]["kind"] == "transactional"
    roles = {r["slug"]: r for r in api.get("/roles").get_json()["roles"]}
    assert roles["developer"]["topics"] == ["tips", "news", "events"]
    assert roles["shopper"]["names"]["ms"] == "Pembeli"


# --- events feed -------------------------------------------------------------------


def test_events_feed_pages_oldest_first(api, session):
    for n in range(3):
        api.put(f"/subscribers/feed-{n}", json={"email": f"feed{n}@example.com"})
    api.put("/subscribers/feed-0", json={"topics": {"alerts": {"subscribed": True}}})
    total = count_events(session)
    seen, cursor = [], None
    while True:
        query = "/events?limit=2" + (f"&after={cursor}" if cursor else "")
        page = api.get(query).get_json()
        seen += page["events"]
        assert len(page["events"]) <= 2
        cursor = page["next_cursor"]
        if not page["has_more"]:
            break
    assert len(seen) == total
    assert [e["id"] for e in seen] == sorted(e["id"] for e in seen)
    last = seen[-1]
    assert last["subscriber"] == "feed-0"
    assert last["action"] == "topic.subscribed" and last["topic"] == "alerts"
    assert last["before"] is False and last["after"] is True and last["source"] == "api"
    empty = api.get(f"/events?after={cursor}").get_json()
    assert empty["events"] == [] and empty["next_cursor"] == cursor


def test_events_feed_names_erased_subscribers(api):
    api.put("/subscribers/feed-x", json={"email": "feedx@example.com"})
    api.delete("/subscribers/feed-x")
    events = api.get("/events?limit=1000").get_json()["events"]
    erased = [e for e in events if e["type"] == "subscriber.erased"]
    assert erased and erased[-1]["subscriber"] == "feed-x"
    assert "feedx@example.com" not in json.dumps(events)


@pytest.mark.parametrize(("query", "detail"), [
    ("after=abc", "after"), ("after=-1", "after"), ("after=1.2.3", "after"),
    ("after=" + "9" * 19, "after"), ("limit=0", "limit"), ("limit=" + "9" * 30, "limit"),
    ("limit=1001", "limit"), ("limit=ten", "limit"),
])
def test_events_feed_bad_parameters(api, query, detail):
    assert_problem(api.get(f"/events?{query}"), 400, detail)


# --- rate limit --------------------------------------------------------------------


@pytest.mark.parametrize("app_config", [{"RATELIMIT_ENABLED": True,
                                         "RATELIMIT_API": "2 per minute"}])
def test_rate_limit_is_a_429_problem_per_key(api, client, session):
    limiter.reset()
    assert api.get("/topics").status_code == 200
    assert api.get("/topics").status_code == 200
    response = api.get("/topics")
    assert_problem(response, 429)
    assert int(response.headers["Retry-After"]) > 0
    # Another key has its own allowance.
    _key, other = create_api_key(session, "other")
    session.commit()
    assert client.get("/api/v1/topics",
                      headers={"Authorization": f"Bearer {other}"}).status_code == 200
    limiter.reset()


# --- concurrency (real server, real commits) ----------------------------------------


def test_concurrent_creates_make_one_subscriber(live_app, live_session, live_catalogue):
    _key, plain = create_api_key(live_session, "race")
    live_session.commit()
    body = {"email": "race@example.com", "topics": {"alerts": {"subscribed": True}}}
    barrier = threading.Barrier(6)

    def put(base):
        barrier.wait(timeout=10)
        return httpx.put(f"{base}/api/v1/subscribers/race-1", json=body, timeout=30,
                         headers={"Authorization": f"Bearer {plain}"})

    with serve(live_app) as base, ThreadPoolExecutor(6) as pool:
        results = list(pool.map(put, [base] * 6))
    assert sorted(r.status_code for r in results) == [200] * 5 + [201], \
        [r.text for r in results]
    assert all(r.json()["topics"]["alerts"]["subscribed"] for r in results)
    live_session.expire_all()
    ids = live_session.scalars(select(Subscriber.id).where(
        Subscriber.external_id == "race-1")).all()
    assert len(ids) == 1
    assert count_events(live_session, subscriber_id=ids[0], type="subscriber.created") == 1
    assert count_events(live_session, subscriber_id=ids[0], action="topic.subscribed") == 1


def test_a_suppressed_address_is_never_resubscribed_not_even_by_the_subscriber(api, session):
    """Issue 12, finding 3: the rule is one function, so even a change in the subscriber's
    own name is refused, and a later sync keeps the address unsubscribed."""
    from app.subscribers.services import Context, Suppressed, change

    api.put("/subscribers/crm-8", json={"email": "back@example.com"})
    api.delete("/subscribers/crm-8")
    assert api.put("/subscribers/crm-8", json={"email": "back@example.com"}
                   ).get_json()["unsubscribed_all"] is True
    subscriber = session.scalar(select(Subscriber).where(Subscriber.external_id == "crm-8"))
    with pytest.raises(Suppressed):
        change(session, subscriber, context=Context(source="preference_page"),
               unsubscribed_all=False)
    session.rollback()
    synced = api.put("/subscribers/crm-8", json={"email": "back@example.com", "locale": "ms"})
    assert synced.status_code == 200
    assert synced.get_json()["unsubscribed_all"] is True


def test_a_create_that_lost_the_race_before_its_address_check_becomes_an_update(
        api, session, monkeypatch):
    """The window behind a flaky 409 in test_concurrent_creates_make_one_subscriber: this
    request found no subscriber, then a concurrent one created it (same external id and
    address) before this request checked the address. It must update, not refuse."""
    import app.api.services as services

    assert api.put("/subscribers/race-2", json={"email": "race2@example.com"}).status_code == 201
    first_read = []
    real = services.load_drafts

    def not_yet_committed(session_, **kwargs):
        if not first_read:
            first_read.extend(kwargs["external_ids"])
            return []  # as seen before the other request committed
        return real(session_, **kwargs)

    monkeypatch.setattr(services, "load_drafts", not_yet_committed)
    response = api.put("/subscribers/race-2", json={
        "email": "race2@example.com", "topics": {"alerts": {"subscribed": True}}})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["topics"]["alerts"]["subscribed"] is True
    assert first_read == ["race-2"]
    assert session.scalar(select(func.count(Subscriber.id)).where(
        Subscriber.external_id == "race-2")) == 1

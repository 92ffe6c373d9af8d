"""Issue 12, findings 7 and 8, through HTTP and the CLI: links are minted only if the pages
will accept them, and malformed or extreme input is a 4xx, never a 500."""

from __future__ import annotations

import csv
import io
import re

import pytest
from sqlalchemy import select

from app.admin.services import create_admin
from app.api.auth import create_api_key
from app.links.services import MAX_TOKEN_LENGTH
from app.subscribers.models import Subscriber
from tests.conftest import FAST_HASH, csrf_from

PASSWORD = "correct horse battery staple"


@pytest.fixture
def app_config():
    return dict(FAST_HASH)


@pytest.fixture
def key(session, catalogue):
    _key, plain = create_api_key(session, "crm")
    session.commit()
    return {"Authorization": f"Bearer {plain}"}


# Finding 7: links the server mints but then refuses ----------------------------------------

BAD_CAMPAIGNS = ["\x01" * 100, "spring\nsale", "tab\there", "bell\x07", "nul\x00", "\u2028"]


@pytest.mark.parametrize("campaign", BAD_CAMPAIGNS)
def test_the_api_mints_no_link_with_a_campaign_that_is_not_printable(client, catalogue, key,
                                                                    campaign):
    catalogue.subscriber(external_id="mint-1")
    single = client.post("/api/v1/links", headers=key,
                         json={"external_id": "mint-1", "campaign": campaign})
    assert single.status_code == 422, single.get_json()
    body = single.get_json()
    assert "printable" in body["detail"] and body["errors"][0]["pointer"] == "/campaign"
    batch = client.post("/api/v1/links", headers=key, json={"items": [
        {"external_id": "mint-1", "campaign": "fine"},
        {"external_id": "mint-1", "campaign": campaign}]})
    assert batch.status_code == 422
    assert batch.get_json()["errors"][0]["pointer"] == "/items/1/campaign"


def test_every_link_the_api_mints_opens_its_page(client, catalogue, key):
    catalogue.subscriber(external_id="mint-2")
    # The longest campaign allowed, of the characters JSON escapes: the largest token.
    for campaign in ('"' * 100, "\\" * 100, "é" * 50, "😀" * 25):
        minted = client.post("/api/v1/links", headers=key, json={
            "external_id": "mint-2", "topic": "offers", "campaign": campaign, "locale": "ms"})
        assert minted.status_code == 200, minted.get_json()
        links = minted.get_json()
        for url in (links["preferences_url"], links["unsubscribe_url"]):
            token = url.rsplit("/", 1)[1]
            assert len(token) <= MAX_TOKEN_LENGTH
            assert client.get(url.removeprefix("http://localhost")).status_code == 200


def test_the_cli_mints_no_link_with_a_campaign_that_is_not_printable(app, catalogue):
    catalogue.subscriber(external_id="mint-3")
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["external_id", "campaign"])
    writer.writerow(["mint-3", "\x01" * 100])
    writer.writerow(["mint-3", "two\nlines"])
    writer.writerow(["mint-3", '"' * 100])
    result = app.test_cli_runner().invoke(args=["links", "mint"], input=out.getvalue())
    assert result.exit_code == 1
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert ["printable" in r["error"] for r in rows] == [True, True, False]
    assert rows[0]["unsubscribe_url"] == "" and rows[1]["unsubscribe_url"] == ""
    assert len(rows[2]["unsubscribe_url"].rsplit("/", 1)[1]) <= MAX_TOKEN_LENGTH


# Finding 8: no unhandled 500s --------------------------------------------------------------

DEEP_ARRAY = "[" * 100_000 + "]" * 100_000
DEEP_OBJECT = '{"a":' * 50_000 + "1" + "}" * 50_000


@pytest.mark.parametrize("body", [DEEP_ARRAY, DEEP_OBJECT], ids=["array", "object"])
@pytest.mark.parametrize(("method", "path"), [
    ("put", "/api/v1/subscribers/x"), ("post", "/api/v1/links"),
    ("post", "/api/v1/webhook-endpoints"), ("post", "/api/v1/subscribers/batch"),
])
def test_deeply_nested_json_is_a_400(client, key, method, path, body):
    response = getattr(client, method)(path, data=body,
                                       headers={**key, "Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    assert "not valid JSON" in response.get_json()["detail"]


def test_huge_numbers_in_api_parameters_are_4xx(client, key):
    for query in ("after=9999999999999999999", "after=" + "9" * 5000, "limit=" + "9" * 40):
        response = client.get(f"/api/v1/events?{query}", headers=key)
        assert response.status_code == 400, (query, response.get_json())
        assert response.mimetype == "application/problem+json"
    endpoint = client.post("/api/v1/webhook-endpoints", headers=key,
                           json={"url": "https://crm.example/h"}).get_json()["id"]
    base = f"/api/v1/webhook-endpoints/{endpoint}"
    response = client.get(f"{base}/deliveries?before=99999999999999999999", headers=key)
    assert response.status_code == 400
    assert response.get_json()["errors"][0]["parameter"] == "query:before"
    for overlap in ("14425971945832294545381916672", "1e400", "-1"):
        response = client.post(f"{base}/rotate-secret", data=f'{{"overlap_seconds": {overlap}}}',
                               headers={**key, "Content-Type": "application/json"})
        assert response.status_code in (400, 422), (overlap, response.get_json())
        assert response.mimetype == "application/problem+json"
    response = client.post(f"{base}/replay", headers=key,
                           json={"delivery_id": 99999999999999999999})
    assert response.status_code == 422


@pytest.fixture
def admin_client(app, client, session):
    create_admin(session, "root@example.com", PASSWORD, app)
    session.commit()
    page = client.get("/admin/login")
    response = client.post("/admin/login", data={
        "csrf_token": csrf_from(page.get_data(as_text=True)),
        "email": "root@example.com", "password": PASSWORD})
    assert response.status_code == 303
    return client


HUGE = "99999999999999999999"


def test_huge_numbers_in_admin_urls_are_4xx_pages(admin_client, key, session):
    endpoint = admin_client.post("/api/v1/webhook-endpoints", headers=key,
                                 json={"url": "https://crm.example/h"}).get_json()["id"]
    subscriber = admin_client.put("/api/v1/subscribers/s-1", headers=key,
                                  json={"email": "s1@example.com"})
    assert subscriber.status_code == 201
    subscriber_id = session.scalar(select(Subscriber.id).where(Subscriber.external_id == "s-1"))
    for path, status in [
        (f"/admin/audit?page={HUGE}", 400),
        (f"/admin/audit?page={'9' * 40}", 400),
        ("/admin/audit?page=0", 400),
        ("/admin/audit?page=abc", 400),
        (f"/admin/deliverability?page={HUGE}", 400),
        (f"/admin/subscribers/{subscriber_id}?page={HUGE}", 400),
        (f"/admin/webhooks/{endpoint}?before={HUGE}", 400),
        (f"/admin/webhooks/{endpoint}?before=-1", 400),
        (f"/admin/topics/{HUGE}", 404),
        (f"/admin/roles/{HUGE}", 404),
        (f"/admin/subscribers/{HUGE}", 404),
        (f"/admin/deliverability/{HUGE}", 404),
    ]:
        response = admin_client.get(path)
        assert response.status_code == status, path
        assert response.mimetype == "text/html"
    token = csrf_from(admin_client.get("/admin/topics").get_data(as_text=True))
    replay = admin_client.post(f"/admin/webhooks/{endpoint}/deliveries/{HUGE}/replay",
                               data={"csrf_token": token})
    assert replay.status_code == 404
    assert admin_client.get("/admin/audit?page=1").status_code == 200


@pytest.mark.parametrize("target", ["/admin/%0d%0aSet-Cookie:%20x=1", "/admin/topics%0a",
                                    "/admin/%09x", "/admin/ x"])
def test_a_login_next_with_control_characters_goes_to_the_dashboard(app, client, session,
                                                                  target):
    create_admin(session, "root@example.com", PASSWORD, app)
    session.commit()
    page = client.get("/admin/login?next=" + target)
    assert page.status_code == 200
    response = client.post("/admin/login?next=" + target, data={
        "csrf_token": csrf_from(page.get_data(as_text=True)),
        "email": "root@example.com", "password": PASSWORD})
    assert response.status_code == 303
    assert response.headers["Location"] == "/admin/"
    assert not any(re.search(r"[\r\n]", value) or "x=1" in value
                   for _name, value in response.headers.items())

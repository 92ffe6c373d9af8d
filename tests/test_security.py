"""Issue 12, through HTTP and the CLI: webhook destinations (SSRF), what a receiver's answer
leaves behind, the /test timeout, the secret-key rule. Admin sessions: tests/test_admin.py;
case-insensitive addresses, API keys: below; links and bad input: tests/test_security_input.py."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from sqlalchemy import create_engine, select, text, update

from app import create_app
from app.api.auth import create_api_key
from app.config import ROOT, from_environ
from app.db import get_db, write_session
from app.migrate import upgrade
from app.subscribers.models import Subscriber
from app.webhooks.models import WebhookDelivery, WebhookEndpoint
from app.webhooks.services import WebhookSettings, create_endpoint
from app.webhooks.worker import Worker
from tests.conftest import ApiClient
from tests.webhook_receiver import Receiver

PREFCENTER = ROOT / ".venv" / "bin" / "prefcenter"

# What a server started from an empty environment does: the rule under test is the default.
DEFAULT_ALLOW_PRIVATE = from_environ({})["WEBHOOK_ALLOW_PRIVATE"]


@pytest.fixture
def app_config():
    return {"WEBHOOK_ALLOW_PRIVATE": DEFAULT_ALLOW_PRIVATE}


@pytest.fixture
def api(client, session, catalogue):
    _key, plain = create_api_key(session, "crm")
    session.commit()
    return ApiClient(client, plain, "/webhook-endpoints")


PRIVATE_URLS = [
    "http://127.0.0.1:8080/hooks",
    "http://localhost/hooks",
    "http://LocalHost./hooks",
    "http://admin.localhost/hooks",
    "http://[::1]/hooks",
    "http://[::ffff:127.0.0.1]/hooks",
    "http://0.0.0.0/hooks",
    "http://[::]/hooks",
    "http://2130706433/hooks",
    "http://127.1/hooks",
    "http://0x7f.0.0.1/hooks",
    "http://0177.0.0.1/hooks",
    "http://169.254.169.254/latest/meta-data/",
    "http://[fe80::1]/hooks",
    "http://10.1.2.3/hooks",
    "http://172.16.0.1/hooks",
    "http://192.168.1.1:6379/hooks",
    "http://[fd00::1]/hooks",
    "http://100.64.0.1/hooks",
    "http://224.0.0.1/hooks",
    "http://240.0.0.1/hooks",
    "http://255.255.255.255/hooks",
]


def test_the_default_refuses_private_destinations():
    assert DEFAULT_ALLOW_PRIVATE is False
    assert from_environ({"PREFCENTER_WEBHOOK_ALLOW_PRIVATE": "1"})["WEBHOOK_ALLOW_PRIVATE"]


@pytest.mark.parametrize("url", PRIVATE_URLS)
def test_registering_a_private_destination_is_a_422(api, session, url):
    response = api.post("", json={"url": url})
    assert response.status_code == 422, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert "public address" in body["detail"]
    assert "PREFCENTER_WEBHOOK_ALLOW_PRIVATE" in body["detail"]
    assert body["errors"][0]["pointer"] == "/url"
    assert session.scalars(select(WebhookEndpoint)).all() == []


@pytest.mark.parametrize("url", ["https://user:secret@crm.example/hooks",
                                 "https://token@crm.example/hooks"])
def test_credentials_in_the_url_are_refused(api, session, url):
    response = api.post("", json={"url": url})
    assert response.status_code == 422
    assert "credentials" in response.get_json()["detail"]
    assert response.get_json()["errors"][0]["pointer"] == "/url"
    assert session.scalars(select(WebhookEndpoint)).all() == []


@pytest.mark.parametrize("url", ["https://crm.example/hooks", "http://8.8.8.8/hooks",
                                 "https://[2606:4700:4700::1111]:8443/hooks"])
def test_public_destinations_are_accepted(api, url):
    assert api.post("", json={"url": url}).status_code == 201


def test_changing_an_endpoint_to_a_private_destination_is_refused(api, session):
    created = api.post("", json={"url": "https://crm.example/hooks"}).get_json()
    response = api.patch(f"/{created['id']}", json={"url": "http://169.254.169.254/"})
    assert response.status_code == 422
    assert response.get_json()["errors"][0]["pointer"] == "/url"
    session.expire_all()
    assert session.get(WebhookEndpoint, created["id"]).url == "https://crm.example/hooks"


def test_the_cli_refuses_a_private_destination(app, session):
    result = app.test_cli_runner().invoke(args=["webhooks", "add", "http://127.1:6379/"])
    assert result.exit_code == 2
    assert "public address" in result.output
    assert session.scalars(select(WebhookEndpoint)).all() == []


@pytest.mark.parametrize("app_config", [{"WEBHOOK_ALLOW_PRIVATE": True}])
def test_allow_private_lets_development_receivers_in(api):
    assert api.post("", json={"url": "http://127.0.0.1:8080/hooks"}).status_code == 201


def _rebind(session, endpoint_id: str, url: str) -> None:
    """The endpoint's host now resolves to a private address (what DNS rebinding does
    after a name passed registration; here the row is simply pointed there)."""
    session.execute(update(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id)
                    .values(url=url))
    session.commit()


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_a_destination_that_became_private_is_refused_at_connect_time(api, session, host):
    with Receiver() as receiver:
        created = api.post("", json={"url": "https://crm.example/hooks"}).get_json()
        _rebind(session, created["id"], receiver.url.replace("127.0.0.1", host))
        answer = api.post(f"/{created['id']}/test").get_json()
        assert answer == {"ok": False, "status_code": None,
                          "error": "destination refused: not a public address"}
        assert receiver.snapshot() == []


def test_the_worker_refuses_a_destination_that_became_private(live_app, live_catalogue):
    session = write_session(get_db(live_app))
    with live_app.app_context():
        endpoint, _secret = create_endpoint(session, "https://crm.example/hooks")
    session.commit()
    with Receiver() as receiver:
        _rebind(session, endpoint.id, receiver.url.replace("127.0.0.1", "localhost"))
        live_catalogue.subscriber()
        with Worker(get_db(live_app), WebhookSettings.from_config(live_app.config)) as worker:
            worker.run_once()
        assert receiver.snapshot() == []
    session.rollback()
    (delivery,) = session.scalars(select(WebhookDelivery)).all()
    assert delivery.status == "pending" and delivery.attempts == 1
    assert delivery.last_error == "destination refused: not a public address"
    session.close()


@pytest.mark.parametrize("app_config", [{"WEBHOOK_ALLOW_PRIVATE": True}])
def test_the_receivers_answer_is_never_kept_or_echoed(api, session):
    with Receiver() as receiver:
        created = api.post("", json={"url": receiver.url}).get_json()
        receiver.mode = "error"  # answers 500 "receiver broke"
        answer = api.post(f"/{created['id']}/test").get_json()
        assert answer == {"ok": False, "status_code": 500, "error": "HTTP 500"}
        receiver.mode = "redirect"
        answer = api.post(f"/{created['id']}/test").get_json()
        assert answer == {"ok": False, "status_code": 302,
                          "error": "HTTP 302: redirect not followed"}
        receiver.stop()
        answer = api.post(f"/{created['id']}/test").get_json()
        assert answer == {"ok": False, "status_code": None, "error": "connection failed"}


@pytest.mark.parametrize("app_config", [{"WEBHOOK_ALLOW_PRIVATE": True,
                                         "WEBHOOK_TIMEOUT": 10}])
def test_the_test_event_gives_up_long_before_the_delivery_timeout(api, app):
    with Receiver() as receiver:
        receiver.mode = "hang"
        receiver.hang_seconds = 12
        created = api.post("", json={"url": receiver.url}).get_json()
        started = time.monotonic()
        answer = api.post(f"/{created['id']}/test").get_json()
        elapsed = time.monotonic() - started
        assert answer["ok"] is False and answer["error"].startswith("timeout")
        assert elapsed < app.config["WEBHOOK_TEST_TIMEOUT"] + 2 < 10
        receiver.unhang.set()


# The secret key -----------------------------------------------------------------------------


def _cli(env_changes: dict, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFCENTER_")}
    env.update(env_changes)
    command = [str(PREFCENTER)] if PREFCENTER.exists() else [sys.executable, "-m", "app.cli"]
    return subprocess.run([*command, *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("mode", ["test", "production"])
def test_no_environment_but_demo_starts_without_a_secret_key(database_url, mode):
    result = _cli({"PREFCENTER_ENV": mode, "PREFCENTER_DATABASE_URL": database_url},
                  "api-keys", "list")
    assert result.returncode != 0
    assert "PREFCENTER_SECRET_KEY is required" in result.stderr
    with_key = _cli({"PREFCENTER_ENV": mode, "PREFCENTER_DATABASE_URL": database_url,
                     "PREFCENTER_SECRET_KEY": "a-real-secret"}, "api-keys", "list")
    assert with_key.returncode == 0, with_key.stderr


# One subscriber per address, whatever its letter case ---------------------------------------


@pytest.fixture
def key(session, catalogue):
    _key, plain = create_api_key(session, "crm")
    session.commit()
    return {"Authorization": f"Bearer {plain}"}


def test_case_variants_of_an_address_are_one_subscriber(client, session, key):
    put = client.put("/api/v1/subscribers/crm-1", headers=key,
                     json={"email": "Jane.Doe@X.com"})
    assert put.status_code == 201
    assert put.get_json()["email"] == "Jane.Doe@x.com"  # kept as given (domain lower-cased)
    for external_id, email in (("crm-2", "jane.doe@x.com"), ("crm-3", "JANE.DOE@X.COM")):
        refused = client.put(f"/api/v1/subscribers/{external_id}", headers=key,
                             json={"email": email})
        assert refused.status_code == 409, refused.get_json()
        body = refused.get_json()
        assert body["conflicting_external_id"] == "crm-1" and "'crm-1'" in body["detail"]
    # The owner may change the letter case of its own address.
    again = client.put("/api/v1/subscribers/crm-1", headers=key,
                       json={"email": "JANE.DOE@x.com"})
    assert again.status_code == 200 and again.get_json()["email"] == "JANE.DOE@x.com"
    # Moving another subscriber onto the address in another case is refused too.
    assert client.put("/api/v1/subscribers/crm-4", headers=key,
                      json={"email": "other@x.com"}).status_code == 201
    moved = client.put("/api/v1/subscribers/crm-4", headers=key, json={"email": "jane.doe@X.COM"})
    assert moved.status_code == 409 and moved.get_json()["conflicting_external_id"] == "crm-1"

    batch = client.post("/api/v1/subscribers/batch", headers=key, json={"items": [
        {"external_id": "crm-5", "email": "Jane.Doe@x.COM"},
        {"external_id": "crm-6", "email": "fresh@x.com"},
        {"external_id": "crm-7", "email": "FRESH@X.COM"}]})
    items = batch.get_json()["items"]
    assert [i["status"] for i in items] == [409, 201, 409]
    assert "crm-1" in items[0]["detail"]
    assert "crm-6" in items[2]["detail"]

    result = client.application.test_cli_runner().invoke(
        args=["subscribers", "import", "-"],
        input="external_id,email\ncrm-8,jane.DOE@x.com\ncrm-9,new@x.com\n")
    assert result.exit_code == 1
    assert "crm-8" in result.stderr and "409" in result.stderr and "crm-1" in result.stderr

    session.expire_all()
    rows = session.scalars(select(Subscriber).where(Subscriber.email_key == "jane.doe@x.com"))
    assert [s.external_id for s in rows] == ["crm-1"]
    exported = client.get("/api/v1/topics/offers/recipients", headers=key).get_data(as_text=True)
    assert exported.lower().count("jane.doe@x.com") <= 1


def test_the_migration_resolves_existing_case_duplicates(tmp_path):
    url = f"sqlite:///{tmp_path / 'dups.sqlite3'}"
    upgrade(url, "20261202_1300")
    engine = create_engine(url)
    now = "2026-12-01 10:00:00.000000"
    with engine.begin() as conn:
        for n, (email, off) in enumerate([("Jane@X.com", 0), ("jane@x.com", 1),
                                          ("JANE@X.COM", 0), ("solo@x.com", 0)], start=1):
            conn.execute(text(
                "INSERT INTO subscribers (id, public_id, external_id, email, locale,"
                " unsubscribed_all, link_epoch, soft_bounces, version, created_at, updated_at)"
                " VALUES (:id, :pid, :ext, :email, 'en', :off, 0, 0, 1, :now, :now)"),
                {"id": n, "pid": f"pid-{n}", "ext": f"crm-{n}", "email": email, "off": off,
                 "now": now})
    upgrade(url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT external_id, email, email_key, unsubscribed_all "
                                 "FROM subscribers ORDER BY id")).all()
        audit = conn.execute(text("SELECT entity_id FROM admin_audit "
                                  "WHERE action = 'address.duplicate'")).scalars().all()
    engine.dispose()
    assert [tuple(r) for r in rows] == [
        ("crm-1", "Jane@X.com", "jane@x.com", 1),   # the oldest keeps it; crm-2's opt-out holds
        ("crm-2", "jane@x.com", None, 1),
        ("crm-3", "JANE@X.COM", None, 1),
        ("crm-4", "solo@x.com", "solo@x.com", 0),
    ]
    assert sorted(audit) == ["1", "2", "3"]


# API keys: list and revoke ------------------------------------------------------------------


def test_api_keys_are_listed_and_a_revoked_key_is_refused_at_once_everywhere(
        live_app, database_url):
    from tests.conftest import make_config

    runner = live_app.test_cli_runner()
    plain = {}
    for name in ("crm-sync", "esp", "crm-sync"):
        created = runner.invoke(args=["api-keys", "create", name])
        assert created.exit_code == 0, created.output
        plain.setdefault(name, []).append(created.stdout.strip())
    other_node = create_app(make_config(database_url))
    nodes = [live_app.test_client(), other_node.test_client()]

    def status(node, key):
        return node.get("/api/v1/topics", headers={"Authorization": f"Bearer {key}"}
                        ).status_code

    assert {status(n, k) for n in nodes for keys in plain.values() for k in keys} == {200}
    listed = runner.invoke(args=["api-keys", "list"])
    assert listed.exit_code == 0
    lines = listed.output.splitlines()
    assert lines[0].split() == ["NAME", "PREFIX", "CREATED", "LAST", "USED", "REVOKED"]
    assert len(lines) == 4 and all(line.split()[0] in ("crm-sync", "esp") for line in lines[1:])
    assert all(k.split("_", 2)[2] not in listed.output for keys in plain.values() for k in keys)
    assert all(line.rstrip().endswith("-") and "Z" in line for line in lines[1:])  # used

    esp_prefix = plain["esp"][0].split("_")[1]
    revoked = runner.invoke(args=["api-keys", "revoke", esp_prefix])
    assert revoked.exit_code == 0 and f"revoked esp (prefix {esp_prefix})" in revoked.output
    assert [status(n, plain["esp"][0]) for n in nodes] == [401, 401]
    assert [status(n, k) for n in nodes for k in plain["crm-sync"]] == [200] * 4

    by_name = runner.invoke(args=["api-keys", "revoke", "crm-sync"])
    assert by_name.exit_code == 0 and by_name.output.count("revoked crm-sync") == 2
    assert {status(n, k) for n in nodes for k in plain["crm-sync"]} == {401}
    listed = runner.invoke(args=["api-keys", "list"]).output.splitlines()[1:]
    assert all(not line.rstrip().endswith("-") for line in listed)  # every one revoked

    unknown = runner.invoke(args=["api-keys", "revoke", "nobody"])
    assert unknown.exit_code == 1 and "no API key named or prefixed 'nobody'" in unknown.output
    other_node.extensions["prefcenter.db"].engine.dispose()

"""Configuration, CLI, probes, links and small rules."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from app import create_app
from app.config import ConfigError
from app.links.services import PREFERENCES, UNSUBSCRIBE, InvalidLink, LinkSigner, token_id
from app.preferences.services import mask_email
from tests.conftest import make_config

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("mode", ["production", "test", "development"])
def test_refuses_to_start_without_a_secret_key_outside_demo(database_url, mode):
    with pytest.raises(ConfigError, match="PREFCENTER_SECRET_KEY"):
        create_app({"PREFCENTER_ENV": mode, "SECRET_KEYS": [], "TESTING": True,
                    "DATABASE_URL": database_url})
    app = create_app({"PREFCENTER_ENV": "production", "SECRET_KEYS": ["a", "b"],
                      "DATABASE_URL": database_url})
    assert app.config["SECRET_KEY"] == "a"


def test_secret_keys_from_the_environment_rotate(monkeypatch, database_url):
    monkeypatch.setenv("PREFCENTER_SECRET_KEY", "new-key, old-key")
    monkeypatch.setenv("PREFCENTER_DATABASE_URL", database_url)
    app = create_app({"PREFCENTER_ENV": "production"})
    assert app.config["SECRET_KEYS"] == ["new-key", "old-key"]


def test_links_are_short_scoped_and_never_carry_the_email():
    signer = LinkSigner(["k"], {PREFERENCES: 60, UNSUBSCRIBE: 60})
    public_id = "q7Yh3kP0c9bXw2LmN4sT1A"
    token = signer.mint(UNSUBSCRIBE, public_id, topic="offers", campaign="black-friday-2026",
                        locale="ar")
    url = f"https://preferences.example-brand.com/u/{token}"
    assert len(url) < 200
    claims = signer.loads(UNSUBSCRIBE, token)
    assert (claims.public_id, claims.topic, claims.campaign, claims.locale) == (
        public_id, "offers", "black-friday-2026", "ar")
    assert claims.token_id == token_id(token)
    with pytest.raises(InvalidLink):
        signer.loads(PREFERENCES, token)
    bare = signer.mint(PREFERENCES, public_id)
    assert signer.loads(PREFERENCES, bare).topic is None
    # No zlib: the payload part is plain base64 JSON (compressed payloads start with ".").
    assert not token.startswith(".")


@pytest.mark.parametrize(("email", "masked"), [
    ("jane.doe@example.com", "j*******@e******.com"),
    ("a@b.co", "a*@b*.co"),
    ("x@localhost", "x*@l********"),
    (None, ""),
])
def test_mask_email(email, masked):
    assert mask_email(email) == masked


def test_probes(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json()["database"] == "ok"


def test_readiness_fails_when_the_database_is_unreachable(tmp_path):
    app = create_app(make_config("postgresql+psycopg://nobody@127.0.0.1:1/none"))
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.headers["Retry-After"]


def test_unknown_locale_and_garbage_accept_language_fall_back(client, catalogue, links):
    subscriber = catalogue.subscriber(locale="en")
    url = links.preferences(subscriber)
    for query, header in (("?lang=xx", None), ("?lang=" + "e" * 300, None),
                          ("", "klingon;q=1, *;q=0.5"), ("", ";;;q=abc")):
        headers = {"Accept-Language": header} if header else {}
        response = client.get(url + query, headers=headers)
        assert response.status_code == 200
        assert '<html lang="en" dir="ltr">' in response.get_data(as_text=True)


def test_demo_and_db_upgrade_commands_on_a_fresh_database(tmp_path):
    env = {**os.environ, "PREFCENTER_ENV": "demo",
           "PREFCENTER_DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite3'}",
           "PREFCENTER_SECRET_KEY": "demo-test-key",
           "PREFCENTER_BASE_URL": "https://prefs.example.com"}
    cli = [sys.executable, "-m", "app.cli"]
    upgrade = subprocess.run([*cli, "db", "upgrade"], env=env, cwd=ROOT, capture_output=True,
                             text=True, timeout=120)
    assert upgrade.returncode == 0, upgrade.stderr
    first = subprocess.run([*cli, "demo"], env=env, cwd=ROOT, capture_output=True, text=True,
                           timeout=120)
    assert first.returncode == 0, first.stderr
    assert re.search(r"Preference page: https://prefs\.example\.com/p/\S+", first.stdout)
    assert re.search(r"Unsubscribe page: https://prefs\.example\.com/u/\S+", first.stdout)
    again = subprocess.run([*cli, "demo"], env=env, cwd=ROOT, capture_output=True, text=True,
                           timeout=120)
    assert again.returncode == 0, again.stderr  # idempotent: nothing duplicated

    app = create_app(make_config(env["PREFCENTER_DATABASE_URL"],
                                 SECRET_KEYS=["demo-test-key"]))
    path = re.search(r"Preference page: https://prefs\.example\.com(/p/\S+)",
                     again.stdout).group(1)
    page = app.test_client().get(path)
    assert page.status_code == 200
    assert "Offers" in page.get_data(as_text=True)
    app.extensions["prefcenter.db"].engine.dispose()


def test_rate_limit_answers_429_with_retry_after_and_only_then(database_url, catalogue, links):
    app = create_app(make_config(database_url, RATELIMIT_ENABLED=True,
                                 RATELIMIT_PUBLIC="2 per minute"))
    client = app.test_client()
    ok = client.get("/p/anything")
    assert ok.status_code == 400
    assert "Retry-After" not in ok.headers
    client.get("/p/anything")
    limited = client.get("/p/anything")
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) > 0
    assert "Too many requests" in limited.get_data(as_text=True)


def test_unsubscribe_posts_count_one_limit_each_once(database_url):
    """POST /u/<token>: one-clicks, in either encoding (below Flask or through the view),
    share the one-click limit, counted once and without X-RateLimit headers; the page's form
    has the public one (Flask-Limiter's decorator, exempting one-clicks)."""
    app = create_app(make_config(database_url, RATELIMIT_ENABLED=True,
                                 RATELIMIT_PUBLIC="2 per minute",
                                 RATELIMIT_ONE_CLICK="3 per minute"))
    client = app.test_client()
    page = client.get("/p/anything")
    assert page.headers["X-RateLimit-Limit"] == "2"
    one_click = {"List-Unsubscribe": "One-Click"}
    answers = [client.post("/u/anything", data=one_click, content_type=content_type)
               for content_type in ("application/x-www-form-urlencoded", "multipart/form-data",
                                    "multipart/form-data", "application/x-www-form-urlencoded")]
    assert [a.status_code for a in answers] == [400, 400, 400, 429]
    assert not any("X-RateLimit-Limit" in a.headers for a in answers)
    assert int(answers[3].headers["Retry-After"]) > 0
    form = [client.post("/u/anything", data={"confirm": "1"}).status_code for _ in range(3)]
    assert form == [400, 400, 429]


@pytest.mark.parametrize("base_url", ["https://prefs.example.com", "http://127.0.0.1"])
def test_security_headers_on_every_answer_and_hsts_only_over_https(database_url, base_url):
    app = create_app(make_config(database_url, BASE_URL=base_url))
    client = app.test_client()
    for response in (client.get("/healthz"), client.get("/p/not-a-token"),
                     client.post("/u/not-a-token", data={"List-Unsubscribe": "One-Click"})):
        headers = response.headers
        assert headers["Referrer-Policy"] == "no-referrer"
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["X-Frame-Options"] == "DENY"
        assert "default-src 'none'" in headers["Content-Security-Policy"]
        assert ("Strict-Transport-Security" in headers) is base_url.startswith("https://")
        # A header the view set itself is kept, once.
        assert len(headers.getlist("Cache-Control")) <= 1
        assert "Retry-After" not in headers

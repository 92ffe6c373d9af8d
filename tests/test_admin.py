"""The admin through HTTP: login and session rules, every route's permission, the CLI."""

from __future__ import annotations

import datetime as dt
import re
import time

import pytest
from sqlalchemy import select

from app.admin.models import Admin, AdminSession
from app.admin.services import create_admin, set_password
from app.clock import get_clock
from tests.conftest import FAST_HASH, csrf_from

PASSWORD = "correct horse battery staple"
EMAIL = "root@example.com"


@pytest.fixture
def app_config():
    return dict(FAST_HASH)


@pytest.fixture
def admin(app, session):
    found = create_admin(session, EMAIL, PASSWORD, app)
    session.commit()
    return found


def login(client, email=EMAIL, password=PASSWORD, next_=None):
    page = client.get("/admin/login")
    assert page.status_code == 200
    url = "/admin/login" + (f"?next={next_}" if next_ else "")
    return client.post(url, data={"csrf_token": csrf_from(page.get_data(as_text=True)),
                                  "email": email, "password": password})


def token(client) -> str:
    return csrf_from(client.get("/admin/").get_data(as_text=True))


@pytest.fixture
def admin_client(client, admin):
    response = login(client)
    assert response.status_code == 303
    return client


@pytest.fixture
def ui(admin_client, catalogue):
    """A logged-in admin's client, with the test catalogue loaded."""
    return admin_client


def post(client, path, **data):
    """A form post carrying the admin session's CSRF token."""
    return client.post(path, data={"csrf_token": token(client), **data})


def example_args(rule) -> dict:
    return {name: 1 for name in rule.arguments}


def test_every_admin_page_needs_a_session(app, client):
    rules = [r for r in app.url_map.iter_rules()
             if r.endpoint.startswith("admin.") and r.endpoint != "admin.login"]
    assert len(rules) >= 20
    csrf = csrf_from(client.get("/admin/login").get_data(as_text=True))
    for rule in rules:
        with app.test_request_context():
            from flask import url_for

            url = url_for(rule.endpoint, **example_args(rule))
        if "GET" in rule.methods:
            response = client.get(url)
            assert response.status_code == 302, url
            assert response.headers["Location"].startswith("/admin/login"), url
        if "POST" in rule.methods:
            assert client.post(url).status_code == 400, url  # no CSRF token
            response = client.post(url, data={"csrf_token": csrf})
            assert response.status_code == 302, url
            assert response.headers["Location"].startswith("/admin/login"), url


def test_login_page_and_successful_login(client, admin, session):
    response = login(client)
    assert response.status_code == 303
    assert response.headers["Location"] == "/admin/"
    dashboard = client.get("/admin/")
    assert dashboard.status_code == 200
    assert EMAIL in dashboard.get_data(as_text=True)
    session.expire_all()
    assert session.get(Admin, admin.id).last_login_at is not None


def test_login_email_is_case_insensitive(client, admin):
    assert login(client, email="  ROOT@Example.com ").status_code == 303


def test_wrong_password_and_unknown_email_get_the_same_answer(client, admin):
    wrong = login(client, password="not the password at all")
    unknown = login(client, email="nobody@example.com")
    assert wrong.status_code == unknown.status_code == 401
    message = "That email and password do not match an administrator."
    assert message in wrong.get_data(as_text=True)
    assert message in unknown.get_data(as_text=True)
    strip = re.compile(r'value="[^"]*"')
    assert strip.sub("", wrong.get_data(as_text=True)) == strip.sub(
        "", unknown.get_data(as_text=True))
    assert client.get("/admin/").status_code == 302


@pytest.mark.parametrize("app_config", [{"ADMIN_ARGON2_TIME_COST": 2,
                                         "ADMIN_ARGON2_MEMORY_COST": 8192,
                                         "ADMIN_ARGON2_PARALLELISM": 1}])
def test_unknown_email_takes_about_as_long_as_a_wrong_password(client, admin):
    def timed(email):
        started = time.perf_counter()
        assert login(client, email=email, password="wrong wrong wrong").status_code == 401
        return time.perf_counter() - started

    wrong, unknown = [], []
    for _ in range(7):  # interleaved, and the fastest of each: other load adds, never removes
        wrong.append(timed(EMAIL))
        unknown.append(timed("nobody@example.com"))
    # Without the dummy verification an unknown email answers many times faster.
    assert min(unknown) > 0.5 * min(wrong), (unknown, wrong)


def test_login_replaces_the_whole_session(client, admin):
    with client.session_transaction() as planted:
        planted["admin_id"] = 999
        planted["planted"] = "by an attacker"
    assert login(client).status_code == 303
    with client.session_transaction() as fresh:
        assert "planted" not in fresh
        assert fresh["admin_id"] == admin.id
        first_nonce = fresh["admin_sid"]
    client.post("/admin/logout", data={"csrf_token": token(client)})
    assert login(client).status_code == 303
    with client.session_transaction() as again:
        assert again["admin_sid"] != first_nonce


def test_a_forged_session_without_a_stored_session_is_refused(client, admin):
    with client.session_transaction() as forged:
        forged["admin_id"] = admin.id
        forged["admin_sid"] = "made-up"
    assert client.get("/admin/").status_code == 302


def test_changing_the_password_ends_older_sessions(app, admin_client, session):
    assert admin_client.get("/admin/").status_code == 200
    set_password(session, EMAIL, "a brand new long password", app)
    session.commit()
    response = admin_client.get("/admin/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/admin/login")
    assert login(admin_client).status_code == 401
    assert login(admin_client, password="a brand new long password").status_code == 303


def test_deactivated_admin_is_logged_out(admin_client, admin, session):
    admin.is_active = False
    session.commit()
    assert admin_client.get("/admin/").status_code == 302
    assert login(admin_client).status_code == 401


@pytest.mark.parametrize("app_config", [{**FAST_HASH, "ADMIN_IDLE_TIMEOUT": 60}])
def test_idle_session_expires(app, admin_client):
    clock = get_clock(app)
    assert admin_client.get("/admin/topics").status_code == 200
    # The clock is the real time plus an offset: steps of 45 s leave 15 s for a slow machine
    # between requests, and each step is past the 30 s after which a use is written down.
    clock.advance(dt.timedelta(seconds=45))
    assert admin_client.get("/admin/topics").status_code == 200  # activity refreshes it
    clock.advance(dt.timedelta(seconds=45))
    assert admin_client.get("/admin/topics").status_code == 200
    clock.advance(dt.timedelta(seconds=61))
    response = admin_client.get("/admin/topics")
    assert response.status_code == 302
    assert "expired=1" in response.headers["Location"]
    page = admin_client.get(response.headers["Location"])
    assert "period of inactivity" in page.get_data(as_text=True)
    assert admin_client.get("/admin/topics").status_code == 302


@pytest.mark.parametrize("app_config", [{**FAST_HASH, "ADMIN_IDLE_TIMEOUT": 600,
                                         "ADMIN_SESSION_LIFETIME": 3600}])
def test_a_session_in_constant_use_still_ends_at_its_lifetime(app, admin_client):
    clock = get_clock(app)
    for _ in range(11):  # used every 5 minutes: never idle
        clock.advance(dt.timedelta(minutes=5))
        assert admin_client.get("/admin/").status_code == 200
    clock.advance(dt.timedelta(minutes=5, seconds=1))  # 3601 s after the login
    response = admin_client.get("/admin/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/admin/login")
    assert login(admin_client).status_code == 303  # a new login starts a new lifetime
    assert admin_client.get("/admin/").status_code == 200


def test_a_cookie_saved_before_logout_opens_nothing_after_it(app, admin_client, session):
    assert admin_client.get("/admin/").status_code == 200
    saved = admin_client.get_cookie("prefcenter_session").value
    response = admin_client.post("/admin/logout", data={"csrf_token": token(admin_client)})
    assert response.status_code == 303
    thief = app.test_client()
    thief.set_cookie("prefcenter_session", saved, domain="localhost")
    response = thief.get("/admin/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/admin/login")
    assert thief.post("/admin/topics/new", data={"csrf_token": "x"}).status_code in (302, 400)
    ended = session.scalars(select(AdminSession)).all()
    assert len(ended) == 1 and ended[0].ended_at is not None
    assert all(len(row.id) == 64 for row in ended)  # the token's SHA-256, not the token


def test_rehash_on_login_when_parameters_change(app, client, admin, session):
    before = admin.password_hash
    assert "t=1," in before
    app.config["ADMIN_ARGON2_TIME_COST"] = 2
    app.extensions.pop("prefcenter.admin.hasher")
    assert login(client).status_code == 303
    session.expire_all()
    rehashed = session.get(Admin, admin.id).password_hash
    assert "t=2," in rehashed and rehashed != before
    # The session made at login already carries the new hash's version.
    assert client.get("/admin/").status_code == 200


@pytest.mark.parametrize("app_config", [{**FAST_HASH, "RATELIMIT_ENABLED": True,
                                         "RATELIMIT_LOGIN": "3 per minute"}])
def test_login_attempts_are_rate_limited(client, admin):
    statuses = [login(client, password=f"wrong password {i}").status_code for i in range(4)]
    assert statuses == [401, 401, 401, 429]
    assert client.get("/admin/login").status_code == 200  # only attempts count
    assert login(client).status_code == 429


def test_login_needs_csrf(client, admin):
    response = client.post("/admin/login", data={"email": EMAIL, "password": PASSWORD})
    assert response.status_code == 400
    assert client.get("/admin/").status_code == 302


def test_login_form_errors_are_422(client):
    page = client.get("/admin/login")
    response = client.post("/admin/login", data={
        "csrf_token": csrf_from(page.get_data(as_text=True)), "email": "", "password": ""})
    assert response.status_code == 422


@pytest.mark.parametrize("target,expected", [
    ("/admin/topics", "/admin/topics"),
    ("https://evil.example/admin/", "/admin/"),
    ("//evil.example/admin/", "/admin/"),
    ("/p/abc", "/admin/"),
])
def test_login_goes_back_only_inside_the_admin(client, admin, target, expected):
    response = login(client, next_=target)
    assert response.headers["Location"] == expected


def test_redirect_to_login_remembers_the_page(client, admin):
    response = client.get("/admin/roles")
    assert response.headers["Location"].startswith("/admin/login?next=/admin/roles")


def test_logout_is_a_post_and_ends_the_session(admin_client):
    assert admin_client.get("/admin/logout").status_code == 405
    csrf = token(admin_client)
    assert admin_client.post("/admin/logout").status_code == 400  # CSRF
    response = admin_client.post("/admin/logout", data={"csrf_token": csrf})
    assert response.status_code == 303
    assert response.headers["Location"] == "/admin/login"
    assert admin_client.get("/admin/").status_code == 302


def test_admin_pages_send_the_strict_headers(admin_client):
    response = admin_client.get("/admin/")
    assert "script-src" not in response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["Cache-Control"] == "no-store"
    assert "<script" not in response.get_data(as_text=True)


# CLI --------------------------------------------------------------------------------------


def test_cli_creates_an_admin_from_stdin(app, session):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["admins", "create", "Ops@Example.com", "--password-stdin"],
                           input="a long enough password\n")
    assert result.exit_code == 0, result.output
    assert "Created admin ops@example.com" in result.output
    found = session.scalars(select(Admin).where(Admin.email == "ops@example.com")).one()
    assert found.password_hash.startswith("$argon2id$")
    assert "a long enough password" not in found.password_hash
    client = app.test_client()
    assert login(client, email="ops@example.com",
                 password="a long enough password").status_code == 303


def test_cli_prompts_twice_and_checks_the_confirmation(app, session):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["admins", "create", "ops2@example.com"],
                           input="first long password\nsecond long password\n"
                                 "first long password\nfirst long password\n")
    assert result.exit_code == 0, result.output
    assert "Error: The two entered values do not match." in result.output
    assert session.scalars(select(Admin).where(Admin.email == "ops2@example.com")).one()


def test_cli_refuses_short_passwords_and_duplicates(app, session, admin):
    runner = app.test_cli_runner()
    short = runner.invoke(args=["admins", "create", "new@example.com", "--password-stdin"],
                          input="elevenchars\n")
    assert short.exit_code == 1
    assert "at least 12 characters" in short.output
    assert session.scalar(select(Admin.id).where(Admin.email == "new@example.com")) is None
    duplicate = runner.invoke(args=["admins", "create", EMAIL, "--password-stdin"],
                              input="another long password\n")
    assert duplicate.exit_code == 1
    assert "already exists" in duplicate.output
    bad = runner.invoke(args=["admins", "create", "not-an-email", "--password-stdin"],
                        input="another long password\n")
    assert bad.exit_code == 1


def test_cli_sets_a_password(app, session, admin):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["admins", "set-password", EMAIL, "--password-stdin"],
                           input="the replacement password\n")
    assert result.exit_code == 0, result.output
    client = app.test_client()
    assert login(client, password="the replacement password").status_code == 303
    missing = runner.invoke(args=["admins", "set-password", "x@example.com", "--password-stdin"],
                            input="the replacement password\n")
    assert missing.exit_code == 1


def test_login_page_sends_a_logged_in_admin_to_the_dashboard(admin_client):
    response = admin_client.get("/admin/login")
    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/"

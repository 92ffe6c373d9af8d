"""``prefcenter demo`` under PREFCENTER_ENV=demo also makes a demo administrator and prints
where to log in, its email and a random password, once; outside the demo there is none."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from sqlalchemy import create_engine, text

from app import create_app
from tests.conftest import make_config
from tests.test_admin import login

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "app.cli"]


def prefcenter(*args: str, env: dict) -> subprocess.CompletedProcess:
    result = subprocess.run([*CLI, *args], env=env, cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return result


def admins(url: str) -> list[str]:
    engine = create_engine(url)
    with engine.connect() as conn:
        found = list(conn.execute(text("SELECT email FROM admins")).scalars())
    engine.dispose()
    return found


def test_the_demo_prints_an_admin_with_a_fresh_password_once(tmp_path):
    url = f"sqlite:///{tmp_path / 'demo.sqlite3'}"
    env = {**os.environ, "PREFCENTER_ENV": "demo", "PREFCENTER_DATABASE_URL": url,
           "PREFCENTER_SECRET_KEY": "demo-test-key",
           "PREFCENTER_BASE_URL": "https://prefs.example.com"}
    prefcenter("db", "upgrade", env=env)
    first = prefcenter("demo", env=env).stdout
    assert "Admin: https://prefs.example.com/admin/login" in first
    email = re.search(r"^Admin email: (\S+)$", first, re.M).group(1)
    password = re.search(r"^Admin password: (\S+) \(made for this demo, shown only now\)$",
                         first, re.M).group(1)
    assert len(password) >= 16

    again = prefcenter("demo", env=env).stdout
    assert f"Admin email: {email}" in again
    assert password not in again  # printed once
    assert "admins set-password" in again
    assert admins(url) == [email]

    app = create_app(make_config(url, SECRET_KEYS=["demo-test-key"], PREFCENTER_ENV="demo"))
    client = app.test_client()
    assert login(client, email=email, password="not-the-password-at-all").status_code == 401
    assert login(client, email=email, password=password).status_code == 303
    assert client.get("/admin/").status_code == 200
    app.extensions["prefcenter.db"].engine.dispose()

    # Another demo database gets another password.
    other_url = f"sqlite:///{tmp_path / 'other.sqlite3'}"
    other_env = {**env, "PREFCENTER_DATABASE_URL": other_url}
    prefcenter("db", "upgrade", env=other_env)
    other = prefcenter("demo", env=other_env).stdout
    assert re.search(r"^Admin password: (\S+)", other, re.M).group(1) != password


def test_no_demo_admin_outside_the_demo(tmp_path):
    url = f"sqlite:///{tmp_path / 'prod.sqlite3'}"
    env = {**os.environ, "PREFCENTER_ENV": "production", "PREFCENTER_DATABASE_URL": url,
           "PREFCENTER_SECRET_KEY": "a-real-key"}
    prefcenter("db", "upgrade", env=env)
    result = prefcenter("demo", env=env)
    assert "Admin" not in result.stdout and "password" not in result.stdout.lower()
    assert admins(url) == []

"""Every admin route is refused without a logged-in admin, by construction: one guard on the
blueprint with an allow-list (the login page), not a decorator each route must remember."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from werkzeug.routing.converters import NumberConverter

from app.admin.views import PUBLIC_ENDPOINTS

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def app_config():
    # CSRF is checked before the blueprint's guard: without it, a POST reaches the guard.
    return {"WTF_CSRF_ENABLED": False}


def admin_routes(app):
    """(endpoint, method, URL) of every admin route, its arguments filled in."""
    adapter = app.url_map.bind("localhost")
    for rule in app.url_map.iter_rules():
        if rule.endpoint.split(".")[0] != "admin" or rule.endpoint in PUBLIC_ENDPOINTS:
            continue
        values = {name: 1 if isinstance(rule._converters[name], NumberConverter) else "x"
                  for name in rule.arguments}
        method = "GET" if "GET" in rule.methods else sorted(rule.methods - {"OPTIONS"})[0]
        yield rule.endpoint, method, adapter.build(rule.endpoint, values)


def test_every_admin_route_but_login_sends_a_stranger_to_the_login_page(app, client):
    routes = list(admin_routes(app))
    assert len(routes) > 30  # the whole admin, insights included
    assert {endpoint for endpoint, _m, _u in routes} >= {
        "admin.dashboard", "admin.logout", "admin.subscriber_change", "admin.insights"}
    for endpoint, method, url in routes:
        response = client.open(url, method=method)
        assert response.status_code == 302, (endpoint, method, url, response.status_code)
        assert response.headers["Location"].startswith("/admin/login"), (endpoint, url)
    assert client.get("/admin/login").status_code == 200


def test_a_route_added_later_is_refused_without_its_own_check(database_url):
    """A new route on the admin blueprint, written with no check at all, is guarded."""
    script = f"""
import json
from app.admin.views import bp
bp.add_url_rule("/probe", "probe", lambda: "open to anyone")
from app import create_app
from tests.conftest import make_config
app = create_app(make_config({database_url!r}))
answer = app.test_client().get("/admin/probe")
print(json.dumps([answer.status_code, answer.headers.get("Location", "")]))
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    status, location = json.loads(done.stdout.strip().splitlines()[-1])
    assert status == 302 and location.startswith("/admin/login?next=/admin/probe")

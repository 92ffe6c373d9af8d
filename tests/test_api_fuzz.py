"""Schemathesis against a live server: every /api/v1 operation, generated from openapi.json,
with every check (server errors, status codes and bodies true to the document, valid data
accepted and invalid data refused, auth enforced). A fixed seed and a bounded number of
examples keep it short and repeatable. The NDJSON recipient export has no deserializer
here; tests/test_api_openapi.py validates each of its lines against the document.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app import create_app
from app.api.auth import create_api_key
from app.demo import seed_catalogue
from app.migrate import upgrade
from app.subscribers.services import Context, create_subscriber
from app.webhooks.services import create_endpoint
from tests.conftest import make_config, serve

SEED = 20261202
MAX_EXAMPLES = int(os.environ.get("PREFCENTER_FUZZ_EXAMPLES", "5"))

pytestmark = pytest.mark.slow


def test_schemathesis_finds_no_failure(tmp_path, database_url):
    if not database_url.startswith("sqlite"):
        pytest.skip("runs once per CI, on SQLite (the API under test has its own database)")
    url = f"sqlite:///{tmp_path / 'fuzz.sqlite3'}"
    upgrade(url)
    app = create_app(make_config(url))
    session = app.extensions["prefcenter.db"].sessionmaker()
    seed_catalogue(session)
    _key, plain = create_api_key(session, "fuzz")
    create_subscriber(session, email="known@example.com", external_id="0",
                      context=Context(source="system"))
    create_endpoint(session, "https://crm.example/hooks")
    session.commit()
    session.close()
    st = Path(sys.executable).with_name("st")
    with serve(app) as base_url:
        app.config["BASE_URL"] = base_url
        run = subprocess.run(
            [str(st), "--config-file", str(Path(__file__).with_name("schemathesis.toml")),
             "run", f"{base_url}/api/v1/openapi.json", "--checks", "all",
             "--seed", str(SEED), "--max-examples", str(MAX_EXAMPLES), "--no-shrink",
             "--header", f"Authorization: Bearer {plain}", "--request-timeout", "10",
             "--warnings", "off", "--output-truncate", "false"],
            capture_output=True, text=True, timeout=900, check=False,
            env={**os.environ, "NO_COLOR": "1"})
    app.extensions["prefcenter.db"].engine.dispose()
    assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-5000:]

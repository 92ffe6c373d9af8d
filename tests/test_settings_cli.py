"""The newcomer's first hour: ``prefcenter --help`` needs no configuration, and a setting that
cannot work is one line on stderr naming the variable, exit status 2 (CLI and gunicorn)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PREFCENTER = Path(sys.executable).with_name("prefcenter")
GUNICORN = Path(sys.executable).with_name("gunicorn")


def bare_env(**settings: str) -> dict:
    """The environment of a fresh shell: no PREFCENTER_* at all, unless given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFCENTER_", "FLASK_"))}
    env.update(settings)
    return env


def run(*args: str, env: dict, cwd: Path = ROOT, timeout: float = 60):
    return subprocess.run([str(PREFCENTER), *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def commands(help_text: str) -> list[str]:
    listed = help_text.split("Commands:", 1)[1] if "Commands:" in help_text else ""
    return re.findall(r"^  (\S+)", listed, re.M)


WALK_HELP = """
import json, re
from click.testing import CliRunner
from app.cli import main

def commands(text):
    listed = text.split("Commands:", 1)[1] if "Commands:" in text else ""
    return re.findall(r"^  (\\S+)", listed, re.M)

runner, seen, pending = CliRunner(), [], [[]]
while pending:
    path = pending.pop()
    result = runner.invoke(main, [*path, "--help"], prog_name="prefcenter")
    seen.append({"path": path, "code": result.exit_code, "output": result.output,
                 "error": repr(result.exception) if result.exit_code else ""})
    pending.extend([*path, sub] for sub in commands(result.output))
print(json.dumps(seen))
"""


def test_every_help_works_with_no_configuration_at_all(tmp_path):
    env = bare_env()
    top = run("--help", env=env, cwd=tmp_path)  # not even the checkout's instance/
    assert top.returncode == 0, top.stderr
    assert top.stderr == ""
    names = commands(top.stdout)
    for expected in ("db", "demo", "api-keys", "subscribers", "links", "webhooks", "admins",
                     "translate"):
        assert expected in names
    one = run("webhooks", "work", "--help", env=env, cwd=tmp_path)
    assert (one.returncode, one.stderr) == (0, "")
    assert "Usage: prefcenter webhooks work" in one.stdout

    # Every group and command below them, walked in one process (a process each is slow).
    walk = subprocess.run([sys.executable, "-c", WALK_HELP], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert walk.returncode == 0, walk.stderr
    assert walk.stderr == ""
    seen = json.loads(walk.stdout)
    assert len(seen) > 20
    for entry in seen:
        assert entry["code"] == 0, entry
        assert "Usage: prefcenter " + " ".join(entry["path"]) in entry["output"], entry


SQLITE_MISSING_DIR = "sqlite:////nonexistent-dir/prefcenter.sqlite3"


@pytest.mark.parametrize(("settings", "variable", "words"), [
    ({}, "PREFCENTER_SECRET_KEY", "required"),
    ({"PREFCENTER_SMTP_PORT": "twenty-five"}, "PREFCENTER_SMTP_PORT", "integer"),
    ({"PREFCENTER_WEBHOOK_TIMEOUT": "soon"}, "PREFCENTER_WEBHOOK_TIMEOUT", "number"),
    ({"PREFCENTER_WEBHOOK_RETRY_SCHEDULE": "5,later"}, "PREFCENTER_WEBHOOK_RETRY_SCHEDULE",
     "integers"),
    ({"PREFCENTER_TRUSTED_PROXIES": "-1"}, "PREFCENTER_TRUSTED_PROXIES", "0 or more"),
    ({"PREFCENTER_DATABASE_URL": "not a url"}, "PREFCENTER_DATABASE_URL", "not a database URL"),
    ({"PREFCENTER_DATABASE_URL": "oracle+nothing://db/x"}, "PREFCENTER_DATABASE_URL",
     "not a database URL"),
    ({"PREFCENTER_BASE_URL": "prefs.example.com"}, "PREFCENTER_BASE_URL", "http(s) origin"),
    ({"PREFCENTER_RATELIMIT_STORAGE_URI": "redis//localhost"},
     "PREFCENTER_RATELIMIT_STORAGE_URI", "not a storage URI"),
    ({"PREFCENTER_RATELIMIT_LOGIN": "lots"}, "PREFCENTER_RATELIMIT_LOGIN", "not a rate limit"),
    ({"PREFCENTER_DATABASE_URL": "postgresql+psycopg://someone:hunter2@127.0.0.1:1/nowhere"},
     "PREFCENTER_DATABASE_URL", "cannot connect"),
    ({"PREFCENTER_DATABASE_URL": SQLITE_MISSING_DIR}, "PREFCENTER_DATABASE_URL",
     "cannot connect"),
])
def test_a_bad_setting_is_one_line_naming_it_and_exit_2(settings, variable, words, tmp_path):
    check_refused(("db", "upgrade"), settings, variable, words, tmp_path)


@pytest.mark.parametrize("command", [("demo",), ("webhooks", "work", "--once"),
                                     ("api-keys", "create", "crm")])
@pytest.mark.parametrize(("settings", "variable", "words"), [
    ({}, "PREFCENTER_SECRET_KEY", "required"),
    ({"PREFCENTER_DATABASE_URL": "postgresql+psycopg://someone:hunter2@127.0.0.1:1/nowhere"},
     "PREFCENTER_DATABASE_URL", "cannot connect"),
])
def test_every_command_refuses_the_same_way(command, settings, variable, words, tmp_path):
    check_refused(command, settings, variable, words, tmp_path)


def check_refused(command, settings, variable, words, tmp_path):
    if variable != "PREFCENTER_SECRET_KEY":
        settings = {"PREFCENTER_SECRET_KEY": "k", **settings}
    settings.setdefault("PREFCENTER_DATABASE_URL", SQLITE_MISSING_DIR)
    result = run(*command, env=bare_env(**settings), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"prefcenter: {variable}")
    assert words in lines[0]
    assert "Traceback" not in result.stderr
    assert "hunter2" not in result.stderr  # a password is never shown


def gunicorn(env: dict, *args: str, timeout: float = 30):
    return subprocess.run([str(GUNICORN), "--bind", "127.0.0.1:0", "--no-control-socket",
                           *args], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize(("settings", "variable"), [
    ({}, "PREFCENTER_SECRET_KEY"),
    ({"PREFCENTER_SECRET_KEY": "k", "PREFCENTER_MAX_CONTENT_LENGTH": "1MB"},
     "PREFCENTER_MAX_CONTENT_LENGTH"),
    ({"PREFCENTER_SECRET_KEY": "k", "PREFCENTER_DATABASE_URL": SQLITE_MISSING_DIR},
     "PREFCENTER_DATABASE_URL"),
    ({"PREFCENTER_SECRET_KEY": "k", "PREFCENTER_RATELIMIT_STORAGE_URI": "redis://127.0.0.1:1/0"},
     "PREFCENTER_RATELIMIT_STORAGE_URI"),
])
def test_gunicorn_refuses_a_bad_setting_before_any_worker(settings, variable, tmp_path):
    settings.setdefault("PREFCENTER_DATABASE_URL", f"sqlite:///{tmp_path / 'x.sqlite3'}")
    result = gunicorn(bare_env(**settings))
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith(f"prefcenter: {variable}")


def test_a_database_without_its_schema_says_to_upgrade_it(tmp_path):
    empty = tmp_path / "empty.sqlite3"
    env = bare_env(PREFCENTER_SECRET_KEY="k", PREFCENTER_DATABASE_URL=f"sqlite:///{empty}")
    result = run("demo", env=env, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        f"prefcenter: PREFCENTER_DATABASE_URL: sqlite:///{empty} has no tables yet: "
        "run 'prefcenter db upgrade' first"]

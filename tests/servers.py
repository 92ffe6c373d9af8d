"""Real processes for the deployment tests: a ``redis-server`` and gunicorn servers on free
loopback ports, each stopped by the test that started it."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GUNICORN = Path(sys.executable).with_name("gunicorn")
PREFCENTER = Path(sys.executable).with_name("prefcenter")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited {process.returncode}: {log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listening on {port}: {log.read_text()}")


def stop(process: subprocess.Popen) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


@contextmanager
def redis_server(tmp_path: Path):
    """``redis-server`` on a free port, nothing saved to disk; yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed (scripts/test installs it)")
    port = free_port()
    log = tmp_path / f"redis-{port}.log"
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, process, log, timeout=20)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop(process)


def server_env(database_url: str, **settings: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFCENTER_")}
    env.update({"PREFCENTER_ENV": "production", "PREFCENTER_SECRET_KEY": "two-node-secret",
                "PREFCENTER_DATABASE_URL": database_url,
                "PREFCENTER_BASE_URL": "http://127.0.0.1"})
    env.update(settings)
    return env


class Gunicorn:
    """``gunicorn`` with the checkout's gunicorn.conf.py, as deployed."""

    def __init__(self, env: dict, log: Path, workers: int = 2, threads: int = 1):
        self.port = free_port()
        self.log = log
        command = [str(GUNICORN), "--config", str(ROOT / "gunicorn.conf.py"),
                   "--bind", f"127.0.0.1:{self.port}", "--workers", str(workers),
                   "--no-control-socket"]
        if threads > 1:
            command += ["--worker-class", "gthread", "--threads", str(threads)]
        self.process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=log.open("wb"),
                                        stderr=subprocess.STDOUT)
        wait_for_port(self.port, self.process, log)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> int:
        return stop(self.process)

    def __enter__(self) -> Gunicorn:
        return self

    def __exit__(self, *_exc) -> None:
        self.stop()

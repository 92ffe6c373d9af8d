"""A real webhook receiver on 127.0.0.1 for the webhook tests and the benchmark.

Every request is checked with the ``standardwebhooks`` package (the library a CRM
would use), once per secret it is told to expect; the answer depends on ``mode``:
``ok`` (200), ``error`` (500), ``redirect`` (302), ``hang`` (answers only after
``hang_seconds``, past the sender's timeout) or ``slow`` (200 after ``delay``).
"""

from __future__ import annotations

import json
import sys
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook, WebhookVerificationError


class _Server(ThreadingHTTPServer):
    allow_reuse_address = True  # restart on the same port after stop()
    request_queue_size = 128
    daemon_threads = True

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], OSError):  # a client hanging up is no news
            super().handle_error(request, client_address)


@dataclass
class Received:
    webhook_id: str
    headers: dict
    body: bytes
    verified: dict  # secret -> True / error text
    answer: str  # the status sent back, or "hung"

    @property
    def data(self) -> dict:
        return json.loads(self.body)

    @property
    def accepted(self) -> bool:
        return self.answer.startswith("2")


class Receiver:
    def __init__(self, secrets: list[str] | None = None, *, verify: bool = True):
        self.secrets = list(secrets or [])
        self.verify = verify
        self.mode = "ok"
        self.delay = 0.0
        self.hang_seconds = 2.0
        self.received: list[Received] = []
        self.lock = threading.Lock()
        self.unhang = threading.Event()
        self.server: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None
        self.port = 0

    # lifecycle -----------------------------------------------------------------------

    def start(self, port: int | None = None) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in two writes

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                receiver.handle(self, body)

            def do_GET(self):
                body = json.dumps(receiver.stats()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args):
                pass

        self.server = _Server(("127.0.0.1", port if port is not None else self.port),
                                          Handler)
        self.port = self.server.server_port
        self.unhang.clear()
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        """Stop listening: connections to the port are refused until ``start()``."""
        if self.server is not None:
            self.unhang.set()
            self.server.shutdown()
            self.server.server_close()
            self.thread.join(timeout=5)
            self.server = None

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *_exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    # requests ------------------------------------------------------------------------

    def handle(self, request: BaseHTTPRequestHandler, body: bytes) -> None:
        headers = {k.lower(): v for k, v in request.headers.items()}
        verified = {}
        if self.verify:
            for secret in self.secrets:
                try:
                    Webhook(secret).verify(body, headers)
                    verified[secret] = True
                except WebhookVerificationError as exc:
                    verified[secret] = str(exc)
        mode = self.mode
        if mode == "hang":
            answer = "hung"
        elif mode == "error":
            answer = "500"
        elif mode == "redirect":
            answer = "302"
        else:
            answer = "200"
        with self.lock:
            self.received.append(Received(headers.get("webhook-id", ""), headers, body,
                                          verified, answer))
        if mode == "hang":
            self.unhang.wait(self.hang_seconds)
        elif mode == "slow" and self.delay:
            self.unhang.wait(self.delay)
        try:
            payload = b"ok" if answer != "500" else b"receiver broke"
            request.send_response(int(answer) if answer != "hung" else 200)
            if answer == "302":
                request.send_header("Location", "https://elsewhere.example/hooks")
            request.send_header("Content-Type", "text/plain")
            request.send_header("Content-Length", str(len(payload)))
            request.end_headers()
            request.wfile.write(payload)
        except OSError:
            pass  # the sender gave up (timeout)

    # views ---------------------------------------------------------------------------

    def snapshot(self) -> list[Received]:
        with self.lock:
            return list(self.received)

    def accepted(self) -> list[Received]:
        return [r for r in self.snapshot() if r.accepted]

    def stats(self) -> dict:
        """Counts, for a receiver in another process (``GET`` answers them)."""
        with self.lock:
            received = list(self.received)
        return {
            "received": len(received),
            "accepted": sum(r.accepted for r in received),
            "distinct_ids": len({r.webhook_id for r in received}),
            "unverified": sum(not r.verified or not all(v is True for v in r.verified.values())
                              for r in received) if self.verify else 0,
        }

    def clear(self) -> None:
        with self.lock:
            self.received.clear()

"""A real SMTP server (aiosmtpd) on 127.0.0.1 that keeps what it receives."""

from __future__ import annotations

import email
import email.policy
import socket
import threading

import pytest
from aiosmtpd.controller import Controller


class _Handler:
    def __init__(self, inbox):
        self.inbox = inbox

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.original_content or envelope.content,
                                           policy=email.policy.default)
        self.inbox.append(message)
        self.inbox.arrived.set()
        return "250 Message accepted for delivery"


class Inbox(list):
    def __init__(self):
        super().__init__()
        self.arrived = threading.Event()
        self.port = 0

    @property
    def messages(self):
        return list(self)

    def wait_for_message(self, timeout: float = 10):
        if not self.arrived.wait(timeout):
            raise AssertionError("no mail arrived")
        return self[-1]


@pytest.fixture
def smtp_server():
    inbox = Inbox()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        inbox.port = probe.getsockname()[1]
    controller = Controller(_Handler(inbox), hostname="127.0.0.1", port=inbox.port)
    controller.start()
    try:
        yield inbox
    finally:
        controller.stop()

"""Where webhooks may go: public addresses only, unless private ones are allowed.

One rule, applied twice: when an endpoint is registered (its URL's host, if it is an
address or a local name) and when a connection is opened (every address the host name
resolves to, at that moment; the connection then goes to the very address that was
checked, so a name that resolves to a public address at registration and to a private
one later (DNS rebinding) is still refused). ``PREFCENTER_WEBHOOK_ALLOW_PRIVATE=1``
lifts the rule for development and for test receivers on 127.0.0.1.

Refused: loopback, private (RFC 1918, unique-local), link-local (169.254.0.0/16: cloud
metadata services), shared CGNAT space (100.64.0.0/10), multicast, reserved and
unspecified (``0.0.0.0``, ``::``) addresses, IPv6 addresses that embed one of those,
the name ``localhost`` and anything under ``.localhost``. Numeric hosts are read the
way the C library reads them (``127.1``, ``2130706433``, ``0x7f.0.0.1`` are 127.0.0.1).
"""

from __future__ import annotations

import ipaddress
import socket
import typing

import httpcore
from httpcore._backends.sync import SyncBackend

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class RefusedDestination(httpcore.ConnectError):
    """A connection to an address the rule refuses; nothing was sent."""


def parse_address(host: str) -> IPAddress | None:
    """``host`` as an IP address if it is one, in any form a resolver would take."""
    host = host.strip("[]")
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        pass
    if host and all(c in "0123456789abcdefxABCDEFX." for c in host) \
            and host[0].isdigit():
        try:  # 127.1, 2130706433, 0x7f.1, 0177.0.0.1: what getaddrinfo would connect to
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def refusal(address: IPAddress) -> str | None:
    """Why ``address`` may not receive webhooks, or None when it is public."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour or (
            address.teredo[1] if address.teredo else None)
        if embedded is not None:
            return refusal(embedded)
    for reason, test in (("unspecified", address.is_unspecified),
                         ("loopback", address.is_loopback),
                         ("link-local", address.is_link_local),
                         ("multicast", address.is_multicast),
                         ("private", address.is_private),
                         ("reserved", address.is_reserved)):
        if test:
            return reason
    if not address.is_global:  # 100.64.0.0/10 (CGNAT) and other special-purpose space
        return "non-public"
    return None


def host_refusal(host: str) -> str | None:
    """Why a URL's ``host`` is refused as it is written (before any DNS), or None.

    A name other than ``localhost`` passes here; its addresses are checked when a
    connection is opened.
    """
    name = host.strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return f"{host} is a loopback name"
    address = parse_address(name)
    if address is None:
        return None
    reason = refusal(address)
    return f"{host} is a {reason} address" if reason else None


class GuardedBackend(SyncBackend):
    """httpcore's network backend, but it resolves the host itself, checks every address,
    and connects to a checked one (never resolving again)."""

    def __init__(self, allow_private: bool = False):
        self.allow_private = allow_private

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None,
                    socket_options: typing.Iterable | None = None):
        if self.allow_private:
            return super().connect_tcp(host, port, timeout, local_address, socket_options)
        address = parse_address(host)
        if address is not None:
            addresses = [address]
        else:
            try:
                infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except OSError as exc:
                raise httpcore.ConnectError(f"could not resolve {host}") from exc
            addresses = list(dict.fromkeys(
                ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos))
        for found in addresses:
            reason = refusal(found)
            if reason is not None:
                raise RefusedDestination(f"{host} resolves to a {reason} address")
        last: Exception | None = None
        for found in addresses:
            try:
                return super().connect_tcp(str(found), port, timeout, local_address,
                                           socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        raise last or httpcore.ConnectError(f"no address for {host}")

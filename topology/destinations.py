"""Which webhook destinations are internal: the SSRF rule, without any network I/O.

A webhook URL is chosen by whoever edits the topology, but the request is sent
from inside the fleet's network. Addresses on loopback, private, link-local,
shared (carrier-grade NAT), unspecified, multicast or reserved ranges reach
what the outside world should not, so they are refused unless the subscription
allows them explicitly (`allow_private`, or the host in `allow_hosts`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from urllib.parse import urlsplit

#: Host names that always mean this machine.
LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})


def internal_range(address: str) -> str | None:
    """The kind of internal range an IP address is in (``"loopback"``, ``"private"``…),
    or None for a public address. Not an IP address: None."""
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:10.0.0.1 reaches 10.0.0.1
    checks = (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("shared", ip in ipaddress.ip_network("100.64.0.0/10")),
        ("private", ip.is_private),
        ("multicast", ip.is_multicast),
        ("reserved", ip.is_reserved),
    )
    for kind, hit in checks:
        if hit:
            return kind
    return None


def host_of(url: str) -> str | None:
    """The host of an http(s) URL, lower-case, without brackets; None if it has none."""
    host = urlsplit(url).hostname
    return host.lower() if host else None


def allowed(host: str, address: str | None, allow_hosts: Sequence[str]) -> bool:
    """Whether `allow_hosts` lists the host name, the address, or a network holding it."""
    for entry in allow_hosts:
        if entry.lower() in (host, address):
            return True
        if address is not None and "/" in entry:
            try:
                if ipaddress.ip_address(address) in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
    return False


def literal_internal(url: str) -> str | None:
    """What is internal about a URL's host as written (no DNS): ``"loopback"`` for
    ``localhost`` or ``127.0.0.1``, the range of another internal IP literal, else None."""
    host = host_of(url)
    if host is None:
        return None
    if host in LOCAL_NAMES or host.endswith(".localhost"):
        return "loopback"
    return internal_range(host)

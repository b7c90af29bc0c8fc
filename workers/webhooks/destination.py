"""The SSRF guard, at delivery time: resolve the URL's host and refuse internal addresses.

Checked before every attempt, so a name that starts resolving to an internal
address is caught too. The request then connects to the very address that was
checked (`sender.post(connect_to=…)`), so a DNS answer that changes in between
(DNS rebinding) cannot steer it elsewhere.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from topology.destinations import allowed, host_of, internal_range
from workers.webhooks.errors import DeliveryFailed, DestinationRefused


async def check_destination(
    url: str, *, allow_private: bool = False, allow_hosts: tuple[str, ...] = ()
) -> str | None:
    """The address to connect to if `url` may be called (None: connect as the URL
    says, because the host is an IP literal or allowed by name); raise otherwise.

    Raises:
        DestinationRefused: the host is, or resolves to, an internal address that
            neither `allow_private` nor `allow_hosts` allows (permanent).
        DeliveryFailed: the host name cannot be resolved right now (transient).
    """
    host = host_of(url)
    if host is None:
        raise DestinationRefused(f"{url!r} has no host")
    if allow_private or allowed(host, None, allow_hosts):
        return None
    addresses = await _addresses(host, urlsplit(url).port)
    for address in addresses:
        kind = internal_range(address)
        if kind is not None and not allowed(host, address, allow_hosts):
            shown = host if host == address else f"{host} ({address})"
            raise DestinationRefused(
                f"{shown} is a {kind} address: refused (SSRF guard); allow it with "
                "allow_private or allow_hosts in the subscription"
            )
    return None if addresses == [host] else addresses[0]


async def _addresses(host: str, port: int | None) -> list[str]:
    if _is_ip(host):
        return [host]  # an IP literal needs no lookup
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port or 443, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise DeliveryFailed(f"cannot resolve {host}: {exc.strerror}") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True

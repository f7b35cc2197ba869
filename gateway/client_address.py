"""The client's address, the one thing per-address limits may trust.

The peer of the connection is the client unless it is one of TRUSTED_PROXIES (addresses or
networks). Then X-Forwarded-For is read from the right, each trusted proxy adding the address it
saw, and the first address no trusted proxy accounts for is the client. Entries to its left were
written by the client itself and prove nothing, so they are never used.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from functools import cache
from typing import Any

from django.conf import settings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@cache
def _trusted(proxies: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(proxy, strict=False) for proxy in proxies)


def _address(raw: str) -> Address | None:
    raw = raw.strip()
    if raw.startswith("[") and "]" in raw:  # "[2001:db8::1]:443"
        raw = raw[1 : raw.index("]")]
    elif raw.count(":") == 1:  # "192.0.2.1:443"
        raw = raw.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(raw)
    except ValueError:
        return None
    # An IPv4 client seen through an IPv6 socket is the same client.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _is_trusted(address: Address, networks: tuple[Network, ...]) -> bool:
    return any(address.version == network.version and address in network for network in networks)


def client_address(meta: Mapping[str, Any]) -> str:
    """The client's address from a WSGI/ASGI request's META (REMOTE_ADDR, HTTP_X_FORWARDED_FOR)."""
    peer = _address(str(meta.get("REMOTE_ADDR") or ""))
    if peer is None:
        return str(meta.get("REMOTE_ADDR") or "unknown")
    networks = _trusted(tuple(settings.TRUSTED_PROXIES))
    client = peer
    if _is_trusted(peer, networks):
        forwarded = [hop for hop in str(meta.get("HTTP_X_FORWARDED_FOR") or "").split(",") if hop.strip()]
        for hop in reversed(forwarded):
            address = _address(hop)
            if address is None:
                break  # garbage from the client's side: the last trusted hop stands
            client = address
            if not _is_trusted(address, networks):
                break
    return str(client)

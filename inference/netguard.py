"""Where tenant-registered model servers may point.

Organization owners register providers through the API, and the gateway then calls those URLs
from inside the operator's network (health polls every minute, chat traffic) and shows what
came back. A URL aimed at 127.0.0.1, 10.0.0.0/8 or 169.254.169.254 would make the gateway a
proxy into that network, so an organization's providers must resolve to public addresses only,
unless the operator sets PROVIDER_PRIVATE_URLS_ALLOWED. Global providers (Django admin,
JAN_INFERENCE_MODEL_URL) are the operator's own and may point anywhere.

Checked twice: when the URL is registered (IP literals and the names' current addresses), and
on every connection, chat (the aiohttp resolver below) and health polls (the httpcore backend
below) alike: each resolves the name once and dials an address it has just judged, so a name
that later resolves to a private address (DNS rebinding) is refused too, and no second lookup
can answer differently from the one that was checked.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import httpcore
from aiohttp.abc import AbstractResolver, ResolveResult

from gateway.errors import InvalidRequest

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def is_public(address: IPAddress, *, allow_loopback: bool = False) -> bool:
    """Globally routable unicast only: no loopback, private, link-local (cloud metadata),
    shared (100.64/10), unspecified (0.0.0.0), multicast or reserved. An IPv4 address carried
    inside IPv6 (mapped, NAT64, 6to4, Teredo) is judged as that IPv4 address. The one policy
    for every outbound URL a caller controls: tenants' providers and the MCP page fetch."""
    if isinstance(address, ipaddress.IPv6Address):
        if address in _NAT64:
            address = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        else:
            embedded = (
                address.ipv4_mapped or address.sixtofour or (address.teredo[1] if address.teredo else None)
            )
            if embedded is not None:
                address = embedded
            elif address.is_site_local:
                return False
    if address.is_loopback:
        return allow_loopback
    return address.is_global and not (
        address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or address.is_link_local
        or address.is_private
    )


class PrivateAddressRefused(aiohttp.ClientConnectionError):
    """Raised at connect time; counts as an unreachable upstream."""


def check_public_url(url: str) -> None:
    """Refuse a URL whose host is, or resolves to, a non-public address (InvalidRequest)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        addresses: list[IPAddress] = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError:
            raise InvalidRequest(
                f"The host '{host}' of base_url does not resolve.", param="base_url"
            ) from None
        addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    if not addresses or not all(is_public(address) for address in addresses):
        raise InvalidRequest(
            "base_url must point at a public address: private, loopback and link-local networks are "
            "reserved for providers the operator registers.",
            param="base_url",
            code="private_address_refused",
        )


class PublicOnlyResolver(AbstractResolver):
    """aiohttp resolver that drops every non-public address of a name."""

    def __init__(self) -> None:
        self._inner = aiohttp.ThreadedResolver()

    async def resolve(self, host: str, port: int = 0, family: Any = socket.AF_INET) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        public = [result for result in results if is_public(ipaddress.ip_address(result["host"]))]
        if not public:
            raise PrivateAddressRefused(f"{host} resolves to no public address")
        return public

    async def close(self) -> None:
        await self._inner.close()


class PublicOnlyBackend(httpcore.SyncBackend):
    """httpcore backend (the health poll's httpx client) that resolves a name once, keeps its
    public addresses and dials one of those. TLS still verifies the certificate against the
    name: httpcore takes `server_hostname` from the URL, not from the address dialled."""

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise httpcore.ConnectError(f"{host} does not resolve") from exc
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        public = [
            address for address in addresses if is_public(ipaddress.ip_address(address.split("%", 1)[0]))
        ]
        if not public:
            raise httpcore.ConnectError(f"{host} resolves to no public address")
        last_error: httpcore.ConnectError | None = None
        for address in public:
            try:
                return super().connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except httpcore.ConnectError as exc:
                last_error = exc
        assert last_error is not None  # noqa: S101 -- the loop ran at least once
        raise last_error

"""Web tools: Serper search and a guarded page fetch, as plain async functions.

Shared by the MCP server (mcp_server.server) and the Responses API's server-side `web_search`
tool, so nothing here knows about MCP or about higher apps. Every failure a caller can cause
or meet upstream (no key, a 4xx/5xx, a timeout, a refused address) comes back as a
`WebToolResult` with `is_error=True` and a readable message; only programming errors raise.

The fetch is the SSRF-sensitive part. The address check happens where the socket is dialled
(`_GuardedBackend.connect_tcp`), after DNS resolution, for every connection including each
redirect hop, and the checked IP is the one dialled: a name that resolves to a public address
at check time and a private one at connect time (DNS rebinding) never gets through.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import re
import socket
import ssl
import weakref
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpcore
import httpx
from django.conf import settings

from inference import netguard

logger = logging.getLogger(__name__)

USER_AGENT = "JanGateway-WebFetch/1.0 (+https://jan.ai)"
TEXT_CONTENT_TYPES = frozenset(
    {
        "text/html",
        "application/xhtml+xml",
        "text/plain",
        "text/markdown",
        "text/xml",
        "application/xml",
        "application/json",
    }
)
_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml", "text/xml", "application/xml"})
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_HARD_MAX_CHARS = 200_000
# NAT64 embeds an IPv4 address in IPv6; a gateway with NAT64 routing would reach it.


@dataclass
class WebToolResult:
    """One tool call's outcome: `text` for a model to read, `structured` for programs."""

    text: str
    structured: dict[str, Any] = field(default_factory=dict)
    is_error: bool = False


def _error(message: str, *, kind: str, **extra: Any) -> WebToolResult:
    return WebToolResult(
        text=message, structured={"error": {"type": kind, "message": message, **extra}}, is_error=True
    )


# --- Serper search -------------------------------------------------------------------------

_serper_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
    weakref.WeakKeyDictionary()
)


def _serper_client() -> httpx.AsyncClient:
    """One pooled client per event loop (an httpx client must not cross loops)."""
    loop = asyncio.get_running_loop()
    client = _serper_clients.get(loop)
    if client is None:
        client = httpx.AsyncClient(headers={"User-Agent": USER_AGENT})
        _serper_clients[loop] = client
    return client


def _serper_message(response: httpx.Response) -> str:
    """Serper's flat `{"message", "statusCode"}` error body, or the status alone."""
    try:
        body = response.json()
    except ValueError:
        body = None
    message = body.get("message") if isinstance(body, dict) else None
    text = str(message)[:300] if message else response.reason_phrase
    return f"Serper answered HTTP {response.status_code}: {text}"


async def _serper_post(url: str, payload: dict[str, Any], *, what: str) -> dict[str, Any] | WebToolResult:
    if not settings.SERPER_API_KEY:
        return _error(
            f"{what} is not available: the gateway has no SERPER_API_KEY configured.",
            kind="not_configured",
        )
    try:
        response = await _serper_client().post(
            url,
            json=payload,
            headers={"X-API-KEY": settings.SERPER_API_KEY},
            timeout=httpx.Timeout(settings.SERPER_TIMEOUT_SECONDS, connect=5.0),
        )
    except httpx.TimeoutException:
        return _error(
            f"{what} timed out: Serper did not answer within {settings.SERPER_TIMEOUT_SECONDS:g} s.",
            kind="timeout",
        )
    except httpx.HTTPError as exc:
        # The exception text names the URL at most, never the X-API-KEY header.
        return _error(f"{what} failed: could not reach Serper ({type(exc).__name__}).", kind="upstream_error")
    if response.status_code >= 400:
        return _error(_serper_message(response), kind="upstream_error", status=response.status_code)
    try:
        body = response.json()
    except ValueError:
        return _error(f"{what} failed: Serper answered with invalid JSON.", kind="upstream_error")
    if not isinstance(body, dict):
        return _error(f"{what} failed: Serper answered with an unexpected body.", kind="upstream_error")
    return body


_SEARCH_SECTIONS = (
    "searchParameters",
    "answerBox",
    "knowledgeGraph",
    "organic",
    "topStories",
    "peopleAlsoAsk",
    "relatedSearches",
)


def _search_text(q: str, body: dict[str, Any]) -> str:
    lines = [f'Search results for "{q}"']
    answer = body.get("answerBox")
    if isinstance(answer, dict):
        value = answer.get("answer") or answer.get("snippet") or ""
        title = answer.get("title")
        lines += ["", "Answer box:" + (f" {title}" if title else ""), f"  {value}".rstrip()]
        if answer.get("link"):
            lines.append(f"  {answer['link']}")
    graph = body.get("knowledgeGraph")
    if isinstance(graph, dict):
        head = graph.get("title", "")
        if graph.get("type"):
            head += f" ({graph['type']})"
        lines += ["", f"Knowledge graph: {head}"]
        if graph.get("description"):
            lines.append(f"  {graph['description']}")
        if graph.get("website"):
            lines.append(f"  {graph['website']}")
        for key, value in (graph.get("attributes") or {}).items():
            lines.append(f"  {key}: {value}")
    organic = body.get("organic") or []
    lines += ["", "Results:" if organic else "No results."]
    for index, result in enumerate(organic, start=1):
        lines.append(f"{result.get('position', index)}. {result.get('title', '')}")
        lines.append(f"   {result.get('link', '')}")
        if result.get("date"):
            lines.append(f"   {result['date']}")
        if result.get("snippet"):
            lines.append(f"   {result['snippet']}")
    stories = body.get("topStories") or []
    if stories:
        lines += ["", "Top stories:"]
        lines += [f"- {s.get('title', '')} ({s.get('source', '')}) {s.get('link', '')}" for s in stories]
    questions = body.get("peopleAlsoAsk") or []
    if questions:
        lines += ["", "People also ask:"]
        for item in questions:
            lines.append(f"- {item.get('question', '')}")
            if item.get("snippet"):
                lines.append(f"  {item['snippet']}")
            if item.get("link"):
                lines.append(f"  {item['link']}")
    related = body.get("relatedSearches") or []
    if related:
        lines += ["", "Related searches: " + "; ".join(str(r.get("query", "")) for r in related)]
    return "\n".join(lines)


async def serper_search(
    *,
    q: str,
    num: int | None = None,
    gl: str | None = None,
    hl: str | None = None,
    location: str | None = None,
    page: int | None = None,
    tbs: str | None = None,
    autocorrect: bool | None = None,
) -> WebToolResult:
    """Google search through Serper (`POST {SERPER_BASE_URL}/search`).

    `structured` holds Serper's own sections (organic, answerBox, knowledgeGraph, peopleAlsoAsk,
    relatedSearches, topStories, searchParameters) as Serper named them; `organic` is always there.
    """
    q = (q or "").strip()
    if not q:
        return _error("The search query `q` must not be empty.", kind="invalid_argument")
    if num is not None and not 1 <= num <= 100:
        return _error("`num` must be between 1 and 100.", kind="invalid_argument")
    if page is not None and page < 1:
        return _error("`page` must be 1 or more.", kind="invalid_argument")
    payload: dict[str, Any] = {"q": q}
    optional = {"num": num, "gl": gl, "hl": hl, "location": location, "page": page, "tbs": tbs}
    payload.update({key: value for key, value in optional.items() if value not in (None, "")})
    if autocorrect is not None:
        payload["autocorrect"] = autocorrect
    body = await _serper_post(f"{settings.SERPER_BASE_URL.rstrip('/')}/search", payload, what="Web search")
    if isinstance(body, WebToolResult):
        return body
    structured = {key: body[key] for key in _SEARCH_SECTIONS if key in body}
    structured["organic"] = [r for r in body.get("organic") or [] if isinstance(r, dict)]
    return WebToolResult(text=_search_text(q, structured), structured=structured)


# --- The guarded fetch ---------------------------------------------------------------------


class FetchRefused(Exception):
    """The URL or the address it resolves to is not one we may fetch."""


class FetchFailed(Exception):
    """The page could not be fetched (status, type, redirects); the message is for the model."""


def address_allowed(address: str, *, allow_loopback: bool = False) -> bool:
    """Only globally routable unicast addresses (inference.netguard's policy, shared with
    tenants' model servers); a scoped IPv6 literal is judged without its zone."""
    try:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    return netguard.is_public(ip, allow_loopback=allow_loopback)


def check_url(url: str) -> str:
    """Syntax-level refusals before any DNS lookup: scheme, userinfo, literal addresses."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise FetchRefused(f"Not a valid URL: {url[:200]!r}.") from None
    if parts.scheme not in ("http", "https"):
        raise FetchRefused("Only http and https URLs can be fetched.")
    if not parts.hostname:
        raise FetchRefused("The URL has no host.")
    if parts.username is not None or parts.password is not None:
        raise FetchRefused("URLs with credentials (user:password@) are not fetched.")
    if port == 0:
        raise FetchRefused("Port 0 is not a valid port.")
    host = parts.hostname
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        pass  # a name: judged on what it resolves to, at connect time
    else:
        if not address_allowed(host, allow_loopback=settings.WEB_FETCH_ALLOW_LOOPBACK):
            raise FetchRefused(f"The address {host} is not a public internet address.")
    return url


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves once, refuses unless every address is public, then dials the checked IP.

    TLS still verifies the certificate against the original host name: httpcore passes
    `server_hostname` from the URL, not from the address we dial.
    """

    def __init__(self, *, allow_loopback: bool) -> None:
        self._inner = httpcore.AnyIOBackend()
        self._allow_loopback = allow_loopback

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 -- httpcore's backend interface
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            with anyio.fail_after(timeout):
                infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, TimeoutError) as exc:
            raise httpcore.ConnectError(f"Could not resolve {host}.") from exc
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        refused = [a for a in addresses if not address_allowed(a, allow_loopback=self._allow_loopback)]
        if refused or not addresses:
            # Any private answer refuses the name: picking the public one would still let an
            # attacker steer which address a retry or a later hop lands on.
            raise FetchRefused(f"{host} resolves to an address that is not a public internet address.")
        last_error: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except httpcore.ConnectError as exc:
                last_error = exc
        assert last_error is not None  # noqa: S101 -- the loop ran at least once
        raise last_error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 -- httpcore's backend interface
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        raise FetchRefused("Unix sockets are not fetched.")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """Loading the CA bundle costs milliseconds; one context serves every fetch."""
    return httpx.create_ssl_context(trust_env=False)


class _GuardedTransport(httpx.AsyncHTTPTransport):
    def __init__(self, *, allow_loopback: bool) -> None:
        super().__init__(verify=_ssl_context(), retries=0, trust_env=False)
        # httpx's transport takes no network backend; its pool is swapped for one that dials
        # through the guard. httpx/httpcore are pinned and mcp_server/tests/test_web.py covers
        # this seam (a name resolving to loopback is refused where it is dialled).
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=_ssl_context(),
            max_connections=10,
            retries=0,
            network_backend=_GuardedBackend(allow_loopback=allow_loopback),
        )


@dataclass
class _Page:
    url: str
    final_url: str
    status: int
    content_type: str
    charset: str | None
    body: bytes
    truncated_bytes: bool


def _media_type(header: str) -> tuple[str, str | None]:
    media, _, params = header.partition(";")
    match = re.search(r"charset\s*=\s*\"?([\w.:-]+)", params, re.IGNORECASE)
    return media.strip().lower(), (match.group(1) if match else None)


async def _fetch_direct(url: str) -> _Page:
    max_bytes: int = settings.WEB_FETCH_MAX_BYTES
    timeout = httpx.Timeout(
        settings.WEB_FETCH_READ_TIMEOUT_SECONDS, connect=settings.WEB_FETCH_CONNECT_TIMEOUT_SECONDS
    )
    headers = {
        "User-Agent": USER_AGENT,
        "Accept": "text/html,application/xhtml+xml,text/plain;q=0.9,application/json;q=0.8,*/*;q=0.1",
    }
    transport = _GuardedTransport(allow_loopback=settings.WEB_FETCH_ALLOW_LOOPBACK)
    async with httpx.AsyncClient(
        transport=transport, follow_redirects=False, trust_env=False, timeout=timeout, headers=headers
    ) as client:
        current = url
        for _hop in range(settings.WEB_FETCH_MAX_REDIRECTS + 1):
            async with client.stream("GET", current) as response:
                location = response.headers.get("location")
                if response.status_code in _REDIRECT_STATUSES and location:
                    current = check_url(str(response.url.join(location)))
                    continue
                if response.status_code >= 400:
                    raise FetchFailed(f"The page answered HTTP {response.status_code}.")
                media, charset = _media_type(response.headers.get("content-type", ""))
                if media not in TEXT_CONTENT_TYPES:
                    shown = media or "no content type"
                    raise FetchFailed(f"Only text pages can be fetched; this one is {shown}.")
                length = response.headers.get("content-length")
                if length and length.isdigit() and int(length) > max_bytes:
                    raise FetchFailed(f"The page is larger than the {max_bytes} byte limit.")
                body = bytearray()
                truncated = False
                # aiter_bytes yields decoded bytes, so the cap also stops compression bombs.
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > max_bytes:
                        del body[max_bytes:]
                        truncated = True
                        break
                return _Page(
                    url, str(response.url), response.status_code, media, charset, bytes(body), truncated
                )
        raise FetchFailed(f"Too many redirects (more than {settings.WEB_FETCH_MAX_REDIRECTS}).")


def _decode(body: bytes, charset: str | None) -> str:
    from trafilatura.utils import decode_file

    if charset:
        try:
            return body.decode(charset, errors="replace")
        except LookupError:
            pass
    return decode_file(body)


def _extract(page: _Page, include_markdown: bool) -> tuple[str, str]:
    """(title, content) for a fetched page. CPU-bound: runs on a worker thread."""
    import trafilatura

    text = _decode(page.body, page.charset)
    if page.content_type not in _HTML_TYPES:
        return "", text
    metadata = trafilatura.extract_metadata(text)
    title = (metadata.title if metadata is not None else None) or ""
    content = trafilatura.extract(
        text,
        url=page.final_url,
        output_format="markdown" if include_markdown else "txt",
        include_links=include_markdown,
        include_comments=False,
        include_tables=True,
        favor_recall=True,
    )
    if not content:
        # Pages with little prose (link lists, forms) defeat main-text extraction; every text
        # node is better than nothing.
        content = trafilatura.html2txt(text)
    return title.strip(), content.strip()


def _page_result(
    *,
    url: str,
    final_url: str,
    title: str,
    content: str,
    content_type: str,
    include_markdown: bool,
    max_chars: int,
    truncated: bool,
    source: str,
) -> WebToolResult:
    if len(content) > max_chars:
        content = content[:max_chars]
        truncated = True
    structured = {
        "url": url,
        "final_url": final_url,
        "title": title,
        "content_type": content_type,
        "format": "markdown" if include_markdown else "text",
        "content": content,
        "truncated": truncated,
        "source": source,
    }
    head = [f"# {title}" if title else "# (untitled page)", f"URL: {final_url}", ""]
    tail = ["", f"[Truncated to {max_chars} characters.]"] if truncated else []
    return WebToolResult(text="\n".join([*head, content, *tail]), structured=structured)


async def _fetch_via_serper(url: str, *, include_markdown: bool, max_chars: int) -> WebToolResult:
    body = await _serper_post(
        settings.SERPER_SCRAPE_URL, {"url": url, "includeMarkdown": include_markdown}, what="Page fetch"
    )
    if isinstance(body, WebToolResult):
        return body
    metadata = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
    content = body.get("markdown") if include_markdown and body.get("markdown") else body.get("text")
    return _page_result(
        url=url,
        final_url=str((metadata or {}).get("og:url") or url),
        title=str((metadata or {}).get("title") or ""),
        content=str(content or ""),
        content_type="text/markdown" if include_markdown else "text/plain",
        include_markdown=include_markdown,
        max_chars=max_chars,
        truncated=False,
        source="serper",
    )


async def fetch_webpage(
    *, url: str, include_markdown: bool = False, max_chars: int | None = None
) -> WebToolResult:
    """Fetch a page and return its main text (or markdown), its title and its final URL.

    Direct by default, through the SSRF guard; through Serper's scrape endpoint when
    WEB_FETCH_BACKEND is "serper". `max_chars` defaults to WEB_FETCH_MAX_CHARS.
    """
    url = (url or "").strip()
    limit = settings.WEB_FETCH_MAX_CHARS if max_chars is None else max_chars
    if not 1 <= limit <= _HARD_MAX_CHARS:
        return _error(f"`max_chars` must be between 1 and {_HARD_MAX_CHARS}.", kind="invalid_argument")
    try:
        check_url(url)
    except FetchRefused as exc:
        return _error(str(exc), kind="refused", url=url)
    if settings.WEB_FETCH_BACKEND == "serper":
        return await _fetch_via_serper(url, include_markdown=include_markdown, max_chars=limit)
    try:
        with anyio.fail_after(settings.WEB_FETCH_TIMEOUT_SECONDS):
            page = await _fetch_direct(url)
    except FetchRefused as exc:
        return _error(str(exc), kind="refused", url=url)
    except FetchFailed as exc:
        return _error(str(exc), kind="fetch_failed", url=url)
    except (TimeoutError, httpx.TimeoutException):
        return _error(
            f"Fetching {url} timed out after {settings.WEB_FETCH_TIMEOUT_SECONDS:g} s.",
            kind="timeout",
            url=url,
        )
    except httpx.HTTPError as exc:
        if "CERTIFICATE_VERIFY_FAILED" in str(exc):
            reason = "its TLS certificate could not be verified"
        elif isinstance(exc, httpx.ConnectError):
            reason = "the site could not be reached"
        else:
            reason = type(exc).__name__
        return _error(f"Could not fetch {url}: {reason}.", kind="fetch_failed", url=url)
    title, content = await anyio.to_thread.run_sync(_extract, page, include_markdown)
    return _page_result(
        url=url,
        final_url=page.final_url,
        title=title,
        content=content,
        content_type=page.content_type,
        include_markdown=include_markdown,
        max_chars=limit,
        truncated=page.truncated_bytes,
        source="direct",
    )

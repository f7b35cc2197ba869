"""A fake Serper (google.serper.dev search + scrape.serper.dev) as a real HTTP server on 127.0.0.1.

The gateway's own client code talks to it over a socket, exactly as in production; point
SERPER_BASE_URL at ``fake.base_url`` and SERPER_SCRAPE_URL at ``fake.scrape_url``.

- ``POST /search``: checks ``X-API-KEY`` (403 ``{"message","statusCode"}`` on a mismatch, as Serper
  does), 400 without ``q``; answers a hand-written result in Serper's recorded shape (answerBox,
  knowledgeGraph, organic with sitelinks, peopleAlsoAsk, relatedSearches, credits) that echoes
  the query in ``searchParameters`` and in the first organic title.
- ``POST /scrape``: ``{url, includeMarkdown}`` → ``{text, markdown?, metadata, credits}``.

``fake.behaviour`` scripts failures: "ok", "empty" (no organic), "error_500", "error_429",
"slow" (sleeps ``fake.delay`` seconds first). ``fake.requests`` records (path, headers, json).

Also ``StaticSite``: a tiny web server serving fixed pages (HTML, plain text, a PDF, redirects) for
the fetch tool's tests.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

API_KEY = "serper-test-key"


def search_body(query: dict[str, Any]) -> dict[str, Any]:
    q = query["q"]
    return {
        "searchParameters": {
            "q": q,
            "gl": query.get("gl", "us"),
            "hl": query.get("hl", "en"),
            "type": "search",
            "num": query.get("num", 10),
            **({"page": query["page"]} if "page" in query else {}),
            **({"tbs": query["tbs"]} if "tbs" in query else {}),
            **({"location": query["location"]} if "location" in query else {}),
            **({"autocorrect": query["autocorrect"]} if "autocorrect" in query else {}),
            "engine": "google",
        },
        "answerBox": {
            "title": "Model Context Protocol",
            "answer": "An open protocol that connects AI applications to tools and data.",
            "link": "https://modelcontextprotocol.io/",
        },
        "knowledgeGraph": {
            "title": "Model Context Protocol",
            "type": "Protocol",
            "website": "https://modelcontextprotocol.io/",
            "description": "MCP standardizes how applications provide context to LLMs.",
            "attributes": {"Introduced": "November 2024"},
        },
        "organic": [
            {
                "title": f"Result about {q}",
                "link": "https://example.com/first",
                "snippet": "The first result's snippet.",
                "position": 1,
                "sitelinks": [{"title": "Docs", "link": "https://example.com/docs"}],
            },
            {
                "title": "Second result",
                "link": "https://example.org/second",
                "snippet": "Another snippet.",
                "date": "Nov 20, 2026",
                "position": 2,
            },
        ][: int(query.get("num", 10))],
        "peopleAlsoAsk": [
            {
                "question": "What is MCP used for?",
                "snippet": "Connecting models to tools.",
                "title": "MCP FAQ",
                "link": "https://example.com/faq",
            }
        ],
        "relatedSearches": [{"query": "mcp server"}, {"query": "mcp inspector"}],
        "credits": 1,
    }


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


class ThreadedServer:
    """An ASGI app under uvicorn in a daemon thread, on its own 127.0.0.1 port."""

    def __init__(self, app: Any, name: str, **options: Any) -> None:
        self._sock = _free_socket()
        self.port = int(self._sock.getsockname()[1])
        scheme = "https" if options.get("ssl_certfile") else "http"
        self.base_url = f"{scheme}://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, lifespan="off", log_level="warning", interface="asgi3", **options)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True, name=name
        )

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        if not self._server.started:
            raise RuntimeError("the fake server did not start")

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=5)
        self._sock.close()


@dataclass
class FakeSerper:
    api_key: str = API_KEY
    behaviour: str = "ok"
    delay: float = 2.0
    requests: list[tuple[str, dict[str, str], Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        app = Starlette(
            routes=[
                Route("/search", self._search, methods=["POST"]),
                Route("/scrape", self._scrape, methods=["POST"]),
            ]
        )
        self._server = ThreadedServer(app, "fake-serper")
        self.base_url = self._server.base_url
        self.scrape_url = f"{self._server.base_url}/scrape"

    def start(self) -> FakeSerper:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    async def _common(self, request: Request) -> tuple[Any, Response | None]:
        try:
            body = await request.json()
        except ValueError:
            body = None
        self.requests.append((request.url.path, dict(request.headers), body))
        if request.headers.get("x-api-key") != self.api_key:
            return body, JSONResponse({"message": "Unauthorized.", "statusCode": 403}, status_code=403)
        if self.behaviour == "slow":
            await asyncio.sleep(self.delay)
        if self.behaviour == "error_500":
            return body, JSONResponse({"message": "Internal error.", "statusCode": 500}, status_code=500)
        if self.behaviour == "error_429":
            return body, JSONResponse({"message": "Not enough credits.", "statusCode": 429}, status_code=429)
        return body, None

    async def _search(self, request: Request) -> Response:
        body, failure = await self._common(request)
        if failure is not None:
            return failure
        if not isinstance(body, dict) or not body.get("q"):
            return JSONResponse({"message": "Missing query q.", "statusCode": 400}, status_code=400)
        result = search_body(body)
        if self.behaviour == "empty":
            for key in ("organic", "answerBox", "knowledgeGraph", "peopleAlsoAsk", "relatedSearches"):
                result.pop(key)
        return JSONResponse(result)

    async def _scrape(self, request: Request) -> Response:
        body, failure = await self._common(request)
        if failure is not None:
            return failure
        if not isinstance(body, dict) or not body.get("url"):
            return JSONResponse({"message": "Missing url.", "statusCode": 400}, status_code=400)
        result: dict[str, Any] = {
            "text": f"Scraped text of {body['url']}.",
            "metadata": {"title": "Scraped page", "description": "A page Serper scraped."},
            "credits": 1,
        }
        if body.get("includeMarkdown"):
            result["markdown"] = f"# Scraped page\n\nScraped text of {body['url']}."
        return JSONResponse(result)


Page = tuple[int, dict[str, str], bytes]


class StaticSite:
    """Fixed pages by path: ``site.pages[path] = (status, headers, body)`` or a callable returning one."""

    def __init__(self, **options: Any) -> None:
        """`options` go to uvicorn.Config (e.g. ssl_certfile/ssl_keyfile for an HTTPS site)."""
        self.pages: dict[str, Page | Callable[[], Page]] = {}
        self.hits: list[str] = []
        self.delays: dict[str, float] = {}  # path -> seconds to wait before answering

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            assert scope["type"] == "http"
            self.hits.append(scope["path"])
            if scope["path"] in self.delays:
                await asyncio.sleep(self.delays[scope["path"]])
            page = self.pages.get(scope["path"], (404, {"content-type": "text/plain"}, b"not found"))
            status, headers, body = page() if callable(page) else page
            # "transfer-encoding: chunked" asks for a body with no Content-Length, sent in pieces.
            chunked = headers.get("transfer-encoding") == "chunked"
            raw = [(k.encode(), v.encode()) for k, v in headers.items() if k != "transfer-encoding"]
            if not chunked:
                raw.append((b"content-length", str(len(body)).encode()))
            await send({"type": "http.response.start", "status": status, "headers": raw})
            pieces = [body[i : i + 1024] for i in range(0, len(body), 1024)] if chunked else [body]
            for piece in pieces:
                await send({"type": "http.response.body", "body": piece, "more_body": True})
            await send({"type": "http.response.body", "body": b""})

        self._server = ThreadedServer(app, "static-site", **options)
        self.base_url = self._server.base_url
        self.port = self._server.port

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def start(self) -> StaticSite:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

"""The MCP server: tools, prompts, resources and subscriptions, on the SDK's low-level `Server`.

The low-level server (not `MCPServer`) because every list here is per caller (resources), some
tools are callable but unlisted (jan-server's `google_search` and `scrape`), and tool errors
must reach the model as written rather than as "Error executing tool …". Arguments are still
validated, by the pydantic models below, and their JSON schemas are hand-written so models see
plain types.

Every handler finds its principal on the ASGI scope, where mcp_server.transport put it after
authenticating the request; a request never reaches a handler without one.
"""

from __future__ import annotations

import asyncio
import logging
import time
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import mcp_types as types
import orjson
from django.conf import settings
from django.core.cache import cache
from mcp.server.caching import CACHEABLE_METHODS, CacheHint
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import Server
from mcp.server.subscriptions import ListenHandler
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from accounts.auth import AsgiHeaders, Principal, aprincipal_from_headers
from gateway.background import fire_and_forget, run_sync
from gateway.errors import GatewayError, NotFound
from mcp_server import resources, services
from mcp_server.sessions import StreamLimitReached, hub, send_to_session, session_store
from organizations.ratelimits import admit_tool_call
from webtools.tools import WebToolResult, fetch_webpage, serper_search

logger = logging.getLogger(__name__)

PRINCIPAL_KEY = "gateway.principal"
SESSION_KEY = "gateway.mcp_session"
REQUEST_ID_KEY = "gateway.request_id"

INSTRUCTIONS = (
    "Jan API Gateway tools. Use serper_search to find current information on the web and "
    "fetch_webpage to read a page in full; cite the URLs you used. Resources expose your "
    "recent conversations (conversation://{id}) and stored responses (response://{id})."
)

Ctx = ServerRequestContext[Any, Any]


def principal_of(ctx: Ctx) -> Principal:
    request = ctx.request
    principal = request.scope.get(PRINCIPAL_KEY) if request is not None else None
    if not isinstance(principal, Principal):
        # Only reachable if the server is mounted without mcp_server.transport in front.
        raise MCPError(types.INTERNAL_ERROR, "The request is not authenticated.")
    return principal


def session_of(ctx: Ctx) -> str | None:
    request = ctx.request
    session = request.scope.get(SESSION_KEY) if request is not None else None
    return session if isinstance(session, str) else None


# --- Tools ----------------------------------------------------------------------------------


class SerperSearchArgs(BaseModel):
    model_config = ConfigDict(extra="ignore")

    q: str = Field(min_length=1)
    num: int | None = Field(default=None, ge=1, le=100)
    gl: str | None = None
    hl: str | None = None
    location: str | None = None
    page: int | None = Field(default=None, ge=1)
    tbs: str | None = None
    autocorrect: bool | None = None


class FetchWebpageArgs(BaseModel):
    model_config = ConfigDict(extra="ignore")

    url: str = Field(min_length=1)
    include_markdown: bool = False
    max_chars: int | None = Field(default=None, ge=1, le=200_000)


class ScrapeArgs(BaseModel):
    """jan-server's `scrape` arguments."""

    model_config = ConfigDict(extra="ignore")

    url: str = Field(min_length=1)
    includeMarkdown: bool = False  # jan-server's wire name


SEARCH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "q": {"type": "string", "description": "Search query."},
        "num": {
            "type": "integer",
            "minimum": 1,
            "maximum": 100,
            "description": "Results per page (default 10).",
        },
        "gl": {"type": "string", "description": "Country, ISO 3166-1 alpha-2 code, e.g. 'us'."},
        "hl": {"type": "string", "description": "Interface language, ISO 639-1 code, e.g. 'en'."},
        "location": {"type": "string", "description": "Where the search comes from, e.g. 'SoHo, New York'."},
        "page": {"type": "integer", "minimum": 1, "description": "Result page, 1-based."},
        "tbs": {"type": "string", "description": "Time filter: qdr:h, qdr:d, qdr:w, qdr:m or qdr:y."},
        "autocorrect": {"type": "boolean", "description": "Let Google correct the query's spelling."},
    },
    "required": ["q"],
}
FETCH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "url": {"type": "string", "description": "The http(s) URL of the page."},
        "include_markdown": {
            "type": "boolean",
            "description": "Return the main content as markdown (with links) instead of plain text.",
        },
        "max_chars": {
            "type": "integer",
            "minimum": 1,
            "maximum": 200_000,
            "description": "Cut the content after this many characters (default 20000).",
        },
    },
    "required": ["url"],
}
SCRAPE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"url": {"type": "string"}, "includeMarkdown": {"type": "boolean"}},
    "required": ["url"],
}


async def _run_search(args: BaseModel) -> WebToolResult:
    assert isinstance(args, SerperSearchArgs)  # noqa: S101 -- ToolSpec pairs each runner with its model
    return await serper_search(**args.model_dump())


async def _run_fetch(args: BaseModel) -> WebToolResult:
    assert isinstance(args, FetchWebpageArgs)  # noqa: S101
    return await fetch_webpage(**args.model_dump())


async def _run_scrape(args: BaseModel) -> WebToolResult:
    assert isinstance(args, ScrapeArgs)  # noqa: S101
    return await fetch_webpage(url=args.url, include_markdown=args.includeMarkdown)


@dataclass(frozen=True)
class ToolSpec:
    tool: types.Tool
    model: type[BaseModel]
    run: Callable[[BaseModel], Awaitable[WebToolResult]]
    listed: bool = True


_READ_ONLY_WEB = types.ToolAnnotations(read_only_hint=True, open_world_hint=True, destructive_hint=False)

TOOLS: dict[str, ToolSpec] = {
    spec.tool.name: spec
    for spec in (
        ToolSpec(
            types.Tool(
                name="serper_search",
                title="Web search",
                description=(
                    "Search the web (Google, through Serper). Returns organic results with titles, "
                    "links and snippets, plus the answer box, knowledge graph, 'people also ask' and "
                    "related searches when Google shows them."
                ),
                input_schema=SEARCH_SCHEMA,
                annotations=_READ_ONLY_WEB,
            ),
            SerperSearchArgs,
            _run_search,
        ),
        ToolSpec(
            types.Tool(
                name="fetch_webpage",
                title="Fetch a web page",
                description=(
                    "Fetch a public web page and return its title, its main text (or markdown) "
                    "without navigation and boilerplate, and the final URL after redirects."
                ),
                input_schema=FETCH_SCHEMA,
                annotations=_READ_ONLY_WEB,
            ),
            FetchWebpageArgs,
            _run_fetch,
        ),
        # jan-server's names, still callable by clients configured against jan-server.
        ToolSpec(
            types.Tool(
                name="google_search", description="Alias of serper_search.", input_schema=SEARCH_SCHEMA
            ),
            SerperSearchArgs,
            _run_search,
            listed=False,
        ),
        ToolSpec(
            types.Tool(name="scrape", description="Alias of fetch_webpage.", input_schema=SCRAPE_SCHEMA),
            ScrapeArgs,
            _run_scrape,
            listed=False,
        ),
    )
}


def _tool_error(message: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=message)], is_error=True)


def _validation_message(name: str, exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "arguments"
    return f"Invalid arguments for {name}: {where}: {first['msg']}."


async def list_tools(ctx: Ctx, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
    return types.ListToolsResult(tools=[spec.tool for spec in TOOLS.values() if spec.listed])


async def call_tool(ctx: Ctx, params: types.CallToolRequestParams) -> types.CallToolResult:
    principal = principal_of(ctx)
    spec = TOOLS.get(params.name)
    if spec is None:
        raise MCPError(types.INVALID_PARAMS, f"Unknown tool: {params.name}")
    try:
        args = spec.model.model_validate(params.arguments or {})
    except ValidationError as exc:
        return _tool_error(_validation_message(params.name, exc))
    try:
        await admit_tool_call(principal, tool=params.name)
    except GatewayError as refused:  # RateLimited: the message says which limit and when to retry
        return _tool_error(refused.message)
    started = time.perf_counter()
    await _log(ctx, "debug", {"tool": params.name, "event": "started"})
    result = await spec.run(args)
    latency_ms = round((time.perf_counter() - started) * 1000, 1)
    outcome = {
        "tool": params.name,
        "event": "finished",
        "is_error": result.is_error,
        "latency_ms": latency_ms,
    }
    await _log(ctx, "warning" if result.is_error else "info", outcome)
    fire_and_forget(
        services.tool_call_record,
        principal=principal,
        tool=params.name,
        is_error=result.is_error,
        latency_ms=(time.perf_counter() - started) * 1000,
        request_id=str(ctx.request.scope.get(REQUEST_ID_KEY, "")) if ctx.request is not None else "",
    )
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=result.text)],
        structured_content=result.structured,
        is_error=result.is_error,
    )


# --- Prompts ----------------------------------------------------------------------------------

PROMPTS: dict[str, types.Prompt] = {
    "web_research": types.Prompt(
        name="web_research",
        title="Research a topic on the web",
        description="Instructions to search the web, read the best sources and answer with citations.",
        arguments=[
            types.PromptArgument(name="topic", description="What to research.", required=True),
            types.PromptArgument(
                name="sources", description="How many pages to read in full (default 3).", required=False
            ),
        ],
    ),
    "summarize_conversation": types.Prompt(
        name="summarize_conversation",
        title="Summarize a conversation",
        description="A conversation's transcript with instructions to summarize it.",
        arguments=[
            types.PromptArgument(
                name="conversation_id", description="The conversation's id (conv_…).", required=True
            )
        ],
    ),
}


def _required(arguments: dict[str, str], name: str) -> str:
    value = (arguments.get(name) or "").strip()
    if not value:
        raise MCPError(types.INVALID_PARAMS, f"Missing required argument: {name}")
    return value


def _user_message(text: str) -> types.PromptMessage:
    return types.PromptMessage(role="user", content=types.TextContent(type="text", text=text))


def _web_research(arguments: dict[str, str]) -> types.GetPromptResult:
    topic = _required(arguments, "topic")
    raw_sources = (arguments.get("sources") or "3").strip()
    if not raw_sources.isdigit() or not 1 <= int(raw_sources) <= 10:
        raise MCPError(types.INVALID_PARAMS, "sources must be a whole number from 1 to 10")
    text = (
        f"Research this topic and write a well-sourced answer: {topic}\n\n"
        "1. Call the `serper_search` tool with one or more focused queries.\n"
        f"2. Pick the {raw_sources} most relevant and trustworthy results and read each with "
        "`fetch_webpage` (set include_markdown to true to keep links).\n"
        "3. Answer from what you read, not from the snippets alone. Prefer recent and primary sources; "
        "say where sources disagree or when information may be outdated.\n"
        "4. Cite every claim inline as [1], [2], … and end with a 'Sources' list of the numbered "
        "titles and URLs you actually used."
    )
    return types.GetPromptResult(description=f"Web research: {topic}", messages=[_user_message(text)])


async def _summarize_conversation(principal: Principal, arguments: dict[str, str]) -> types.GetPromptResult:
    conversation_id = _required(arguments, "conversation_id")
    if not resources.conversations_available():
        raise MCPError(types.INVALID_PARAMS, "Conversations are not available on this gateway.")
    try:
        conversation, items, truncated = await run_sync(
            resources.conversation_read,
            principal,
            conversation_id,
            max_items=settings.MCP_TRANSCRIPT_MAX_ITEMS,
        )
    except NotFound:
        raise MCPError(types.INVALID_PARAMS, f"Conversation not found: {conversation_id}") from None
    transcript = resources.transcript_markdown(conversation, items, truncated=truncated)
    text = (
        "Summarize the conversation below. Give its purpose in one sentence, then the key points, "
        "decisions and open questions as short bullet lists, and keep names, numbers and code "
        "identifiers exact. Do not invent anything that is not in the transcript.\n\n"
        f"<transcript>\n{transcript}</transcript>"
    )
    return types.GetPromptResult(
        description=f"Summary of conversation {conversation_id}", messages=[_user_message(text)]
    )


async def list_prompts(ctx: Ctx, params: types.PaginatedRequestParams | None) -> types.ListPromptsResult:
    return types.ListPromptsResult(prompts=list(PROMPTS.values()))


async def get_prompt(ctx: Ctx, params: types.GetPromptRequestParams) -> types.GetPromptResult:
    principal = principal_of(ctx)
    arguments = dict(params.arguments or {})
    if params.name == "web_research":
        return _web_research(arguments)
    if params.name == "summarize_conversation":
        return await _summarize_conversation(principal, arguments)
    raise MCPError(types.INVALID_PARAMS, f"Unknown prompt: {params.name}")


# --- Resources ------------------------------------------------------------------------------


def _not_found(uri: str) -> MCPError:
    return MCPError(types.INVALID_PARAMS, "Resource not found", data={"uri": uri})


async def _readable(principal: Principal, uri: str) -> tuple[str, str]:
    """(scheme, id) of a resource the caller may read; MCPError otherwise."""
    parsed = resources.parse_uri(uri)
    if parsed is None:
        raise _not_found(uri)
    scheme, identifier = parsed
    try:
        if scheme == resources.CONVERSATION_SCHEME and resources.conversations_available():
            await run_sync(resources.conversation_check, principal, identifier)
        elif scheme == resources.RESPONSE_SCHEME and resources.responses_available():
            await run_sync(resources.response_read, principal, identifier)
        else:
            raise _not_found(uri)
    except NotFound:
        raise _not_found(uri) from None
    return scheme, identifier


async def list_resources(ctx: Ctx, params: types.PaginatedRequestParams | None) -> types.ListResourcesResult:
    principal = principal_of(ctx)
    if not resources.conversations_available():
        return types.ListResourcesResult(resources=[])
    conversations = await run_sync(
        resources.recent_conversations, principal, limit=settings.MCP_RESOURCE_LIST_LIMIT
    )
    listed = []
    for conversation in conversations:
        title = resources.conversation_title(conversation)
        listed.append(
            types.Resource(
                uri=resources.conversation_uri(conversation["id"]),
                name=conversation["id"],
                title=title or None,
                description=f"Conversation {conversation['id']} (created {conversation.get('created_at')})",
                mime_type="text/markdown",
            )
        )
    return types.ListResourcesResult(resources=listed)


async def list_resource_templates(
    ctx: Ctx, params: types.PaginatedRequestParams | None
) -> types.ListResourceTemplatesResult:
    templates = []
    if resources.conversations_available():
        templates.append(
            types.ResourceTemplate(
                uri_template="conversation://{conversation_id}",
                name="conversation",
                title="Conversation transcript",
                description="A conversation of the caller's project, as markdown and as JSON.",
                mime_type="text/markdown",
            )
        )
    if resources.responses_available():
        templates.append(
            types.ResourceTemplate(
                uri_template="response://{response_id}",
                name="response",
                title="Stored response",
                description="A stored response of the caller's project, as markdown and as JSON.",
                mime_type="text/markdown",
            )
        )
    return types.ListResourceTemplatesResult(resource_templates=templates)


async def read_resource(ctx: Ctx, params: types.ReadResourceRequestParams) -> types.ReadResourceResult:
    principal = principal_of(ctx)
    uri = str(params.uri)
    parsed = resources.parse_uri(uri)
    try:
        if (
            parsed is not None
            and parsed[0] == resources.CONVERSATION_SCHEME
            and resources.conversations_available()
        ):
            conversation, items, truncated = await run_sync(
                resources.conversation_read, principal, parsed[1], max_items=settings.MCP_TRANSCRIPT_MAX_ITEMS
            )
            markdown = resources.transcript_markdown(conversation, items, truncated=truncated)
            document: dict[str, Any] = {"conversation": conversation, "items": items, "truncated": truncated}
        elif (
            parsed is not None and parsed[0] == resources.RESPONSE_SCHEME and resources.responses_available()
        ):
            response = await run_sync(resources.response_read, principal, parsed[1])
            markdown = resources.response_markdown(response)
            document = {"response": response}
        else:
            raise _not_found(uri)
    except NotFound:
        raise _not_found(uri) from None
    return types.ReadResourceResult(
        contents=[
            types.TextResourceContents(uri=uri, mime_type="text/markdown", text=markdown),
            types.TextResourceContents(
                uri=uri, mime_type="application/json", text=orjson.dumps(document).decode()
            ),
        ]
    )


# --- Subscriptions ----------------------------------------------------------------------------


async def subscribe(ctx: Ctx, params: types.SubscribeRequestParams) -> types.EmptyResult:
    """2025-11-25: updates travel on the session's GET stream, so a session is required."""
    principal = principal_of(ctx)
    uri = str(params.uri)
    session = session_of(ctx)
    if session is None:
        raise MCPError(
            types.INVALID_REQUEST,
            "resources/subscribe needs a session: send the Mcp-Session-Id from initialize.",
        )
    scheme, _ = await _readable(principal, uri)
    if scheme != resources.CONVERSATION_SCHEME:
        raise MCPError(types.INVALID_PARAMS, "Only conversation:// resources can be subscribed to.")
    await session_store().subscribe(session, uri)
    return types.EmptyResult()


async def unsubscribe(ctx: Ctx, params: types.UnsubscribeRequestParams) -> types.EmptyResult:
    principal_of(ctx)
    session = session_of(ctx)
    if session is not None:
        await session_store().unsubscribe(session, str(params.uri))
    return types.EmptyResult()


async def listen(ctx: Ctx, params: types.SubscriptionsListenRequestParams) -> types.SubscriptionsListenResult:
    """2026-07-28: the listen response is the stream. Every URI is checked before the stream
    opens, so a caller can only ever hear about resources it may read."""
    principal = principal_of(ctx)
    for uri in params.notifications.resource_subscriptions or ():
        await _readable(principal, str(uri))
    # One handler per stream, so this stream alone can be closed (gracefully: the client gets
    # the final result) when its credential stops working.
    current = hub()
    try:
        current.take_slot()
    except StreamLimitReached:
        raise MCPError(types.INTERNAL_ERROR, "Subscription limit reached; retry later") from None
    handler = ListenHandler(current.bus)
    watcher = asyncio.create_task(_close_when_revoked(ctx, handler))
    try:
        return await handler(ctx, params)
    finally:
        watcher.cancel()
        current.give_slot()


async def _close_when_revoked(ctx: Ctx, handler: ListenHandler) -> None:
    headers = AsgiHeaders(ctx.request.scope.get("headers", []) if ctx.request is not None else [])
    while True:
        await asyncio.sleep(settings.MCP_STREAM_KEEPALIVE_SECONDS)
        try:
            await aprincipal_from_headers(headers)
        except GatewayError:
            handler.close()
            return


# --- Logging ---------------------------------------------------------------------------------
# A session that asked for logs (logging/setLevel) gets a `notifications/message` for each tool
# call at or above its level, on its GET stream. The level lives in the shared cache so that
# the worker running the tool knows it; without a session (stateless calls) nothing is sent.

LOG_LEVELS: tuple[str, ...] = (
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
)
LOGGER_NAME = "jan-gateway"


def _log_level_key(session_id: str) -> str:
    return f"mcp:log-level:{session_id}"


async def set_logging_level(ctx: Ctx, params: types.SetLevelRequestParams) -> types.EmptyResult:
    session_id = session_of(ctx)
    if session_id is not None:
        await cache.aset(_log_level_key(session_id), params.level, timeout=settings.MCP_SESSION_TTL_SECONDS)
    return types.EmptyResult()


async def _log(ctx: Ctx, level: str, data: dict[str, Any]) -> None:
    session_id = session_of(ctx)
    if session_id is None:
        return
    wanted = await cache.aget(_log_level_key(session_id))
    if wanted not in LOG_LEVELS or LOG_LEVELS.index(level) < LOG_LEVELS.index(wanted):
        return
    message = {
        "jsonrpc": "2.0",
        "method": "notifications/message",
        "params": {"level": level, "logger": LOGGER_NAME, "data": data},
    }
    await send_to_session(session_id, message)


# --- Completions ------------------------------------------------------------------------------
# Argument values a client can offer while the user types: the caller's own conversation and
# response ids (newest first), and the small closed sets. Unknown prompts and arguments get an
# empty list, as the protocol allows.

MAX_COMPLETIONS = 100


def _conversation_ids(principal: Principal, prefix: str) -> list[str]:
    if not resources.conversations_available():
        return []
    listed = resources.recent_conversations(principal, limit=MAX_COMPLETIONS)
    return [c["id"] for c in listed if c["id"].startswith(prefix)]


def _response_ids(principal: Principal, prefix: str) -> list[str]:
    if not resources.responses_available():
        return []
    from responses.models import Response

    rows = Response.objects.filter(project_id=principal.project_id or 0, public_id__startswith=prefix)
    return list(rows.order_by("-pk").values_list("public_id", flat=True)[:MAX_COMPLETIONS])


async def complete(ctx: Ctx, params: types.CompleteRequestParams) -> types.CompleteResult:
    principal = principal_of(ctx)
    ref, argument = params.ref, params.argument
    values: list[str] = []
    if isinstance(ref, types.PromptReference):
        if ref.name == "summarize_conversation" and argument.name == "conversation_id":
            values = await run_sync(_conversation_ids, principal, argument.value)
        elif ref.name == "web_research" and argument.name == "sources":
            values = [str(n) for n in range(1, 11) if str(n).startswith(argument.value)]
    elif ref.uri == "conversation://{conversation_id}" and argument.name == "conversation_id":
        values = await run_sync(_conversation_ids, principal, argument.value)
    elif ref.uri == "response://{response_id}" and argument.name == "response_id":
        values = await run_sync(_response_ids, principal, argument.value)
    return types.CompleteResult(
        completion=types.Completion(values=values[:MAX_COMPLETIONS], total=len(values), has_more=False)
    )


# --- The server -------------------------------------------------------------------------------


def build_server() -> Server[Any]:
    hints = {method: CacheHint(ttl_ms=0, scope="private") for method in CACHEABLE_METHODS}
    with warnings.catch_warnings():
        # Logging is deprecated from protocol 2026-07-28 on, but part of 2025-11-25, which the
        # clients in use speak; the SDK warns about declaring it at all.
        warnings.simplefilter("ignore", MCPDeprecationWarning)
        server = _server(hints)
    # The seed calls prompts/get "prompts/call"; clients written against it keep working.
    server.add_request_handler("prompts/call", types.GetPromptRequestParams, get_prompt)
    return server


def _server(hints: dict[str, CacheHint]) -> Server[Any]:
    return Server(
        "jan-gateway",
        version=settings.GATEWAY_VERSION,
        title="Jan API Gateway",
        instructions=INSTRUCTIONS,
        cache_hints=hints,  # type: ignore[arg-type]
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_prompts=list_prompts,
        on_get_prompt=get_prompt,
        on_list_resources=list_resources,
        on_list_resource_templates=list_resource_templates,
        on_read_resource=read_resource,
        on_subscribe_resource=subscribe,
        on_unsubscribe_resource=unsubscribe,
        on_subscriptions_listen=listen,
        on_set_logging_level=set_logging_level,
        on_completion=complete,
    )

"""One response run: chat completion chunks in, Responses stream events and output items out.

`generate()` is the single generation path. The request path iterates it (streaming the
events, or only keeping the final object), and so does the Celery worker for background
responses (appending the events to the Redis log). The upstream is always streamed, so a run
can be stopped between any two chunks and the partial output is known.

The server-side `web_search` tool is a bounded loop: the model gets `web_search` / `open_page`
functions; when it calls only those, we run them (webtools.tools), show each call as a
`web_search_call` output item, feed the results back, and call the model again, at most
RESPONSES_WEB_SEARCH_MAX_ROUNDS times. Sources that the final text quotes become
`url_citation` annotations.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

import orjson
from django.conf import settings
from django.utils import timezone

from accounts.auth import Principal
from gateway import errors
from inference import chat
from organizations import ratelimits
from responses import translate
from responses.models import Response
from responses.selectors import response_object
from responses.translate import new_id
from responses.validation import CreateRequest

logger = logging.getLogger(__name__)

WEB_SEARCH_FUNCTION = "web_search"
OPEN_PAGE_FUNCTION = "open_page"
WEB_FUNCTIONS = (WEB_SEARCH_FUNCTION, OPEN_PAGE_FUNCTION)
_WEB_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": WEB_SEARCH_FUNCTION,
            "description": "Search the web. Returns result titles, links and snippets.",
            "parameters": {
                "type": "object",
                "properties": {"query": {"type": "string", "description": "The search query."}},
                "required": ["query"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": OPEN_PAGE_FUNCTION,
            "description": "Open a web page and read its main text.",
            "parameters": {
                "type": "object",
                "properties": {"url": {"type": "string", "description": "The page's URL."}},
                "required": ["url"],
            },
        },
    },
]
_TOOL_RESULT_MAX_CHARS = 12_000


@dataclass
class Run:
    """What a run needs: the (possibly unsaved) row it fills, and the parsed request."""

    row: Response
    request: CreateRequest
    principal: Principal
    context_items: list[dict[str, Any]]  # history (chain or conversation) + this input
    sources: dict[str, str] = field(default_factory=dict)  # url → title, from web results
    tool_calls_made: int = 0
    # A synchronous, non-streaming request can still answer with an HTTP status: our own rate
    # limit refusing the first model call is then raised (a 429 the SDK retries), not stored.
    raise_rate_limit: bool = False


def error_code(err: errors.GatewayError) -> str:
    """Our error → the spec's ResponseErrorCode enum."""
    if err.status == 429:
        return "rate_limit_exceeded"
    if 400 <= err.status < 500:
        return "invalid_prompt"
    return "server_error"


# --- One round: chunks → items and events -------------------------------------------------


@dataclass
class _Call:
    index: int
    item_id: str
    call_id: str
    name: str
    arguments: str = ""
    output_index: int | None = None  # None for our own web functions: they are not shown as calls
    # What the client declared behind the chat name: a function or custom tool, maybe namespaced.
    route: dict[str, Any] = field(default_factory=lambda: {"type": "function"})


class _Turn:
    """The items one chat completion produces, with the events that build them."""

    def __init__(self, run: Run, web_enabled: bool) -> None:
        self.run = run
        self.web_enabled = web_enabled
        self.output: list[dict[str, Any]] = run.row.output  # items are appended as they open
        self.text_item: dict[str, Any] | None = None
        self.text = ""
        self.logprobs: list[dict[str, Any]] = []
        self.reasoning_item: dict[str, Any] | None = None
        self.reasoning = ""
        self.calls: dict[int, _Call] = {}
        self.finish_reason: str | None = None

    def _open(self, item: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        self.output.append(item)
        index = len(self.output) - 1
        return index, {"type": "response.output_item.added", "output_index": index, "item": dict(item)}

    def _close_reasoning(self) -> list[dict[str, Any]]:
        item = self.reasoning_item
        if item is None:
            return []
        self.reasoning_item = None
        index = self.output.index(item)
        item["content"] = [{"type": "reasoning_text", "text": self.reasoning}]
        item["status"] = "completed"
        ids = {"item_id": item["id"], "output_index": index, "content_index": 0}
        return [
            {"type": "response.reasoning_text.done", **ids, "text": self.reasoning},
            {"type": "response.output_item.done", "output_index": index, "item": item},
        ]

    def _close_text(self, status: str = "completed") -> list[dict[str, Any]]:
        item = self.text_item
        if item is None:
            return []
        self.text_item = None
        index = self.output.index(item)
        ids = {"item_id": item["id"], "output_index": index, "content_index": 0}
        annotations = _citations(self.text, self.run.sources)
        part = {
            "type": "output_text",
            "text": self.text,
            "annotations": annotations,
            "logprobs": self.logprobs,
        }
        item["content"] = [part]
        item["status"] = status
        events = [
            {
                "type": "response.output_text.annotation.added",
                **ids,
                "annotation_index": a_index,
                "annotation": annotation,
            }
            for a_index, annotation in enumerate(annotations)
        ]
        events += [
            {"type": "response.output_text.done", **ids, "text": self.text, "logprobs": self.logprobs},
            {"type": "response.content_part.done", **ids, "part": part},
            {"type": "response.output_item.done", "output_index": index, "item": item},
        ]
        return events

    def feed(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        choices = chunk.get("choices") or []
        if not choices or not isinstance(choices[0], dict):
            return []
        choice = choices[0]
        if choice.get("finish_reason"):
            self.finish_reason = choice["finish_reason"]
        delta = choice.get("delta") or {}
        events: list[dict[str, Any]] = []
        thought = delta.get("reasoning_content") or delta.get("reasoning")
        if isinstance(thought, str) and thought:
            if self.reasoning_item is None:
                events += self._close_text()
                self.reasoning = ""
                item = {"id": new_id(translate.REASONING), "type": "reasoning", "summary": [], "content": []}
                item["status"] = "in_progress"
                index, added = self._open(item)
                self.reasoning_item = item
                events.append(added)
            index = self.output.index(self.reasoning_item)
            self.reasoning += thought
            events.append(
                {
                    "type": "response.reasoning_text.delta",
                    "item_id": self.reasoning_item["id"],
                    "output_index": index,
                    "content_index": 0,
                    "delta": thought,
                }
            )
        content = delta.get("content")
        if isinstance(content, str) and content:
            if self.text_item is None:
                events += self._close_reasoning()
                self.text, self.logprobs = "", []
                item = {
                    "id": new_id(translate.MESSAGE),
                    "type": "message",
                    "role": "assistant",
                    "status": "in_progress",
                    "content": [],
                }
                index, added = self._open(item)
                self.text_item = item
                empty = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
                ids = {"item_id": item["id"], "output_index": index, "content_index": 0}
                events += [added, {"type": "response.content_part.added", **ids, "part": empty}]
            index = self.output.index(self.text_item)
            self.text += content
            logprobs = _logprobs(choice.get("logprobs"))
            self.logprobs += logprobs
            events.append(
                {
                    "type": "response.output_text.delta",
                    "item_id": self.text_item["id"],
                    "output_index": index,
                    "content_index": 0,
                    "delta": content,
                    "logprobs": [_delta_logprob(lp) for lp in logprobs],
                }
            )
        for tool_delta in delta.get("tool_calls") or []:
            events += self._tool_delta(tool_delta)
        return events

    def _tool_delta(self, tool_delta: dict[str, Any]) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        position = tool_delta.get("index", len(self.calls))
        function = tool_delta.get("function") or {}
        call = self.calls.get(position)
        if call is None:
            events += self._close_reasoning() + self._close_text()
            name = function.get("name") or ""
            call = _Call(
                index=position,
                item_id=new_id(translate.FUNCTION_CALL),
                call_id=tool_delta.get("id") or new_id("call"),
                name=name,
            )
            self.calls[position] = call
            if not (self.web_enabled and name in WEB_FUNCTIONS):
                call.route = self.run.request.tool_routes.get(name) or {"type": "function", "name": name}
                item = {
                    "id": call.item_id,
                    "type": "function_call",
                    "call_id": call.call_id,
                    "name": call.route["name"],
                    "arguments": "",
                    "status": "in_progress",
                }
                if call.route["type"] == "custom":
                    # A custom tool's input is the one string argument of its stand-in function:
                    # it is known (and sent) once the arguments are complete.
                    call.item_id = item["id"] = new_id(translate.CUSTOM_CALL)
                    del item["arguments"]
                    item.update(type="custom_tool_call", input="")
                if call.route.get("namespace"):
                    item["namespace"] = call.route["namespace"]
                call.output_index, added = self._open(item)
                events.append(added)
        piece = function.get("arguments")
        if isinstance(piece, str) and piece:
            call.arguments += piece
            if call.output_index is not None and call.route["type"] != "custom":
                self.output[call.output_index]["arguments"] = call.arguments
                events.append(
                    {
                        "type": "response.function_call_arguments.delta",
                        "item_id": call.item_id,
                        "output_index": call.output_index,
                        "delta": piece,
                    }
                )
        return events

    def finish(self) -> list[dict[str, Any]]:
        """Close what is still open (text, reasoning, client function calls)."""
        status = "incomplete" if self.finish_reason == "length" else "completed"
        events = self._close_reasoning() + self._close_text(status)
        for call in self.calls.values():
            if call.output_index is None:
                continue
            item = self.output[call.output_index]
            if call.route["type"] == "custom":
                events += self._finish_custom(call, item)
                continue
            item.update(arguments=call.arguments, status="completed")
            events += [
                {
                    "type": "response.function_call_arguments.done",
                    "item_id": call.item_id,
                    "name": call.name,
                    "output_index": call.output_index,
                    "arguments": call.arguments,
                },
                {"type": "response.output_item.done", "output_index": call.output_index, "item": item},
            ]
        return events

    def _finish_custom(self, call: _Call, item: dict[str, Any]) -> list[dict[str, Any]]:
        item.update(input=_custom_input(call.arguments), status="completed")
        ids = {"item_id": call.item_id, "output_index": call.output_index}
        return [
            {"type": "response.custom_tool_call_input.delta", **ids, "delta": item["input"]},
            {"type": "response.custom_tool_call_input.done", **ids, "input": item["input"]},
            {"type": "response.output_item.done", "output_index": call.output_index, "item": item},
        ]

    def interrupt(self) -> None:
        """Mark what is still open as incomplete (a cancelled or failed run keeps its partial output)."""
        for entry in self.output:
            if entry.get("status") != "in_progress":
                continue
            entry["status"] = "incomplete"
            if entry is self.text_item:
                part = {
                    "type": "output_text",
                    "text": self.text,
                    "annotations": [],
                    "logprobs": self.logprobs,
                }
                entry["content"] = [part]
            if entry is self.reasoning_item:
                entry["content"] = [{"type": "reasoning_text", "text": self.reasoning}]


def _custom_input(arguments: str) -> str:
    """The free-form input of a custom tool call, from its stand-in function's JSON arguments.

    A model that answered with bare text instead of the JSON object still meant that text.
    """
    try:
        parsed = orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        return arguments
    if isinstance(parsed, dict):
        value = parsed.get(translate.CUSTOM_INPUT_ARGUMENT)
        if isinstance(value, str):
            return value
        if len(parsed) == 1:
            only = next(iter(parsed.values()))
            return only if isinstance(only, str) else orjson.dumps(only).decode()
    return arguments if not isinstance(parsed, str) else parsed


def _logprobs(raw: Any) -> list[dict[str, Any]]:
    content = raw.get("content") if isinstance(raw, dict) else None
    if not isinstance(content, list):
        return []
    out = []
    for entry in content:
        if not isinstance(entry, dict) or not isinstance(entry.get("token"), str):
            continue
        out.append(
            {
                "token": entry["token"],
                "logprob": float(entry.get("logprob") or 0.0),
                "bytes": entry.get("bytes") or list(entry["token"].encode()),
                "top_logprobs": [
                    {
                        "token": top.get("token", ""),
                        "logprob": float(top.get("logprob") or 0.0),
                        "bytes": top.get("bytes") or list(str(top.get("token", "")).encode()),
                    }
                    for top in entry.get("top_logprobs") or []
                    if isinstance(top, dict)
                ],
            }
        )
    return out


def _delta_logprob(logprob: dict[str, Any]) -> dict[str, Any]:
    return {
        "token": logprob["token"],
        "logprob": logprob["logprob"],
        "top_logprobs": [{"token": t["token"], "logprob": t["logprob"]} for t in logprob["top_logprobs"]],
    }


def _citations(text: str, sources: dict[str, str]) -> list[dict[str, Any]]:
    """url_citation annotations for the web sources the text quotes (first mention of each)."""
    found = []
    for url, title in sources.items():
        start = text.find(url)
        if start != -1:
            found.append(
                {
                    "type": "url_citation",
                    "url": url,
                    "title": title or url,
                    "start_index": start,
                    "end_index": start + len(url),
                }
            )
    return sorted(found, key=lambda annotation: annotation["start_index"])


# --- The server-side web tools ------------------------------------------------------------


async def _web_call(run: Run, call: _Call) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run one web function call: (its events, the tool message for the model)."""
    from webtools.tools import fetch_webpage, serper_search

    # Raises RateLimited: the run fails with rate_limit_exceeded (a 429 when nothing was sent yet).
    await ratelimits.admit_tool_call(run.principal, tool=call.name)
    try:
        arguments = orjson.loads(call.arguments or "{}")
    except orjson.JSONDecodeError:
        arguments = {}
    if not isinstance(arguments, dict):
        arguments = {}
    action: dict[str, Any]
    if call.name == WEB_SEARCH_FUNCTION:
        query = str(arguments.get("query") or arguments.get("q") or "")
        action = {"type": "search", "query": query, "queries": [query]}
    else:
        action = {"type": "open_page", "url": str(arguments.get("url") or "")}
    item = {
        "id": new_id(translate.WEB_SEARCH),
        "type": "web_search_call",
        "status": "in_progress",
        "action": action,
    }
    run.row.output.append(item)
    index = len(run.row.output) - 1
    ids = {"item_id": item["id"], "output_index": index}
    events: list[dict[str, Any]] = [
        {"type": "response.output_item.added", "output_index": index, "item": dict(item)},
        {"type": "response.web_search_call.in_progress", **ids},
        {"type": "response.web_search_call.searching", **ids},
    ]
    if call.name == WEB_SEARCH_FUNCTION:
        result = await serper_search(q=query, num=settings.RESPONSES_WEB_SEARCH_RESULTS)
        organic = result.structured.get("organic") or []
        sources = [
            {"type": "url", "url": entry["link"]}
            for entry in organic
            if isinstance(entry, dict) and isinstance(entry.get("link"), str)
        ]
        for entry in organic:
            if isinstance(entry, dict) and isinstance(entry.get("link"), str):
                run.sources.setdefault(entry["link"], str(entry.get("title") or ""))
        if sources:
            action["sources"] = sources
    else:
        result = await fetch_webpage(url=action["url"], max_chars=_TOOL_RESULT_MAX_CHARS)
        if not result.is_error and action["url"]:
            run.sources.setdefault(action["url"], str(result.structured.get("title") or ""))
    item["status"] = "failed" if result.is_error else "completed"
    events.append({"type": "response.web_search_call.completed", **ids})
    events.append({"type": "response.output_item.done", "output_index": index, "item": item})
    message = {"role": "tool", "tool_call_id": call.call_id, "content": result.text[:_TOOL_RESULT_MAX_CHARS]}
    return events, message


# --- The run ----------------------------------------------------------------------------


def initial_messages(run: Run) -> list[dict[str, Any]]:
    messages = translate.items_to_messages(run.context_items, run.request.tool_routes)
    if run.request.instructions:
        messages.insert(0, {"role": "system", "content": run.request.instructions})
    return messages


def _truncated(messages: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """The messages without the older half of the history (None: nothing left to drop).

    System messages and the last user turn stay; a tool result is never kept without the
    assistant message that called it.
    """
    last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=len(messages) - 1)
    droppable = [i for i, m in enumerate(messages[:last_user]) if m["role"] != "system"]
    if not droppable:
        return None
    drop = set(droppable[: max(1, len(droppable) // 2)])
    kept = [m for i, m in enumerate(messages) if i not in drop]
    while True:
        orphan = next((i for i, m in enumerate(kept) if m["role"] == "tool"), None)
        if orphan is None or any(m.get("tool_calls") for m in kept[:orphan]):
            return kept
        del kept[orphan]


async def _open_stream(run: Run, body: dict[str, Any]) -> tuple[chat.ChatStream, list[dict[str, Any]]]:
    """Open the upstream stream; with `truncation: auto`, drop old history until it fits."""
    messages: list[dict[str, Any]] = body["messages"]
    while True:
        try:
            return await chat.open_stream(run.principal, {**body, "messages": messages}), messages
        except errors.GatewayError as err:
            if run.request.truncation != "auto" or err.code != "context_length_exceeded":
                raise
            shorter = _truncated(messages)
            if shorter is None:
                raise
            messages = shorter


def _finish_row(run: Run, status: str) -> None:
    row = run.row
    row.status = status
    if status == Response.Status.COMPLETED:
        row.completed_at = timezone.now()
    if status == Response.Status.INCOMPLETE:
        row.incomplete_details = {"reason": "max_output_tokens"}


async def generate(run: Run, *, opening: bool = True) -> AsyncGenerator[dict[str, Any], None]:
    """The run's events, unnumbered. The row is updated in memory; the caller stores it.

    `opening=False` skips `response.created` (a background run: the request path sent it).
    Upstream failures end the run as `failed` (with a `response.failed` event); cancellation
    and client disconnects propagate after closing the upstream, the partial output kept.
    """
    row, request = run.row, run.request
    if opening:
        yield {"type": "response.created", "response": response_object(row)}
    yield {"type": "response.in_progress", "response": response_object(row)}
    messages = initial_messages(run)
    # `external_web_access: false` asks for no live fetch. This gateway keeps no cache of pages
    # or results to answer from instead, so the model then gets no web functions at all.
    web = request.web_search is not None and request.web_search.get("external_web_access", True) is not False
    max_rounds = settings.RESPONSES_WEB_SEARCH_MAX_ROUNDS
    max_calls = request.max_tool_calls or settings.RESPONSES_WEB_SEARCH_MAX_CALLS
    rounds = 0
    turn: _Turn | None = None
    try:
        while True:
            rounds += 1
            offer_web = web and rounds <= max_rounds and run.tool_calls_made < max_calls
            # A forced choice applies to the first call only, or the loop would never answer.
            tool_choice = request.tool_choice if rounds == 1 else "auto"
            body = translate.chat_body(
                request, messages, extra_tools=_WEB_TOOLS if offer_web else [], tool_choice=tool_choice
            )
            turn = _Turn(run, offer_web)
            stream, messages = await _open_stream(run, body)
            try:
                async for chunk in stream:
                    for event in turn.feed(chunk):
                        yield event
            finally:
                await stream.aclose()
            for event in turn.finish():
                yield event
            row.usage = translate.add_usage(row.usage, stream.usage)
            web_calls = [c for c in turn.calls.values() if c.output_index is None]
            client_calls = [c for c in turn.calls.values() if c.output_index is not None]
            if not web_calls or client_calls:
                break
            messages.append(
                {
                    "role": "assistant",
                    "content": turn.text or None,
                    "tool_calls": [
                        {
                            "id": c.call_id,
                            "type": "function",
                            "function": {"name": c.name, "arguments": c.arguments},
                        }
                        for c in web_calls
                    ],
                }
            )
            for call in web_calls:
                if run.tool_calls_made >= max_calls:
                    # Every tool call needs an answer in the history; this one is refused, not run.
                    refusal = "Not run: the limit of tool calls for this response was reached."
                    messages.append({"role": "tool", "tool_call_id": call.call_id, "content": refusal})
                    continue
                run.tool_calls_made += 1
                events, tool_message = await _web_call(run, call)
                for event in events:
                    yield event
                messages.append(tool_message)
        _finish_row(
            run, Response.Status.INCOMPLETE if turn.finish_reason == "length" else Response.Status.COMPLETED
        )
    except errors.GatewayError as err:
        if run.raise_rate_limit and isinstance(err, errors.RateLimited) and rounds == 1:
            raise
        if turn is not None:
            turn.interrupt()
        row.status = Response.Status.FAILED
        row.error = {"code": error_code(err), "message": err.message}
        logger.warning("response failed", extra={"response_id": row.public_id, "error": err.message})
    except Exception:
        # A bug of ours: the run still ends as a stored `failed` response, never a hung one.
        logger.exception("response crashed", extra={"response_id": row.public_id})
        if turn is not None:
            turn.interrupt()
        row.status = Response.Status.FAILED
        row.error = {
            "code": "server_error",
            "message": "The server had an error while generating the response.",
        }
    except BaseException:
        if turn is not None:
            turn.interrupt()
        raise
    terminal = {
        Response.Status.COMPLETED: "response.completed",
        Response.Status.INCOMPLETE: "response.incomplete",
    }.get(Response.Status(row.status), "response.failed")
    yield {"type": terminal, "response": response_object(row)}

"""OpenAPI documentation of the Responses routes (async Django views, invisible to drf-spectacular).

Each mirrors OpenAI's operation from the vendored official spec, so the documented wire format is
the one the SDKs expect; the descriptions say what this gateway does with it.
"""

from __future__ import annotations

from gateway.schema import ExternalOperation

TAG = "Responses"

OPERATIONS = [
    ExternalOperation(
        path="/v1/responses",
        method="post",
        mirror="POST /responses",
        operation_id="createResponse",
        tag=TAG,
        summary="Create a response",
        description=(
            "Runs the request as chat completions on a model server that serves `model` (instructions become a "
            "system message, input items become messages, function tools become chat tools). `store` (default "
            "true) keeps the response for retrieval and as a `previous_response_id`; `conversation` puts that "
            "conversation's items first and appends this response's items to it when it finishes. "
            "`background: true` (needs `store`) answers at once with status `queued` and a worker runs it; with "
            "`stream: true` as well the events can be resumed with `GET /v1/responses/{id}?stream=true&"
            "starting_after=N`. A `web_search` (or `web_search_preview`) tool is run by the gateway: the model "
            "searches (Serper) and opens pages in a bounded loop, each call shown as a `web_search_call` item, "
            "quoted sources as `url_citation` annotations. An upstream failure gives a stored response with "
            "status `failed` and `error` (a stream ends with `response.failed`). With `truncation: auto` the "
            "oldest history is dropped (half at a time) while the model server answers `context_length_exceeded`. "
            "A non-streaming request refused by the project's or key's rate limit is a 429 and is not stored."
        ),
        extra_errors={"413": "The body is larger than CHAT_MAX_BODY_BYTES"},
    ),
    ExternalOperation(
        path="/v1/responses/{response_id}",
        method="get",
        mirror="GET /responses/{response_id}",
        operation_id="getResponse",
        tag=TAG,
        summary="Retrieve a response",
        description=(
            "The stored response. With `stream=true` (background responses only) its events after "
            "`starting_after` are replayed, then followed live until the run ends."
        ),
        parameter_bounds={"starting_after": {"minimum": 0}},
    ),
    ExternalOperation(
        path="/v1/responses/{response_id}",
        method="delete",
        mirror="DELETE /responses/{response_id}",
        operation_id="deleteResponse",
        tag=TAG,
        summary="Delete a response",
        description="Deletes the stored response (a running background one is stopped first).",
        errors=("401", "403", "404", "429"),
    ),
    ExternalOperation(
        path="/v1/responses/{response_id}/cancel",
        method="post",
        mirror="POST /responses/{response_id}/cancel",
        operation_id="cancelResponse",
        tag=TAG,
        summary="Cancel a background response",
        description=(
            "Marks a queued or running background response `cancelled`; the worker running it stops within a "
            "second and keeps the partial output. Idempotent: a finished response comes back unchanged. A "
            "response created without `background` cannot be cancelled (400)."
        ),
    ),
    ExternalOperation(
        path="/v1/responses/{response_id}/input_items",
        method="get",
        mirror="GET /responses/{response_id}/input_items",
        operation_id="listInputItems",
        tag=TAG,
        summary="List a response's input items",
        description="This response's own input items, newest first by default (`order`, `limit`, `after`, `before`).",
        parameter_bounds={"limit": {"minimum": 1, "maximum": 100}},
    ),
]

"""OpenAPI documentation of the hot path's routes (served by inference.hotpath, not by DRF)."""

from __future__ import annotations

from gateway.schema import ExternalOperation

OPERATIONS = [
    ExternalOperation(
        path="/v1/chat/completions",
        method="post",
        mirror="POST /chat/completions",
        operation_id="createChatCompletion",
        tag="Chat Completions",
        summary="Create a chat completion",
        description=(
            "OpenAI's chat completions, routed to a healthy model server that serves `model`. The body is "
            "forwarded unchanged (fields the gateway does not know are kept), with the provider's key attached "
            "by the gateway. With `stream: true` the answer is Server-Sent Events (`data: {chunk}` lines, "
            "`reasoning_content` and tool-call deltas untouched) ending with `data: [DONE]`; the usage chunk "
            "is sent when `stream_options.include_usage` is true. An upstream failure after the first byte "
            'arrives as `data: {"error": {...}}` and ends the stream.'
        ),
        extra_errors={
            "413": "The body is larger than CHAT_MAX_BODY_BYTES",
            "502": "The model server failed or could not be reached",
            "503": "Every provider of the model is unhealthy",
            "504": "The model server did not answer in time",
        },
    ),
    ExternalOperation(
        path="/v1/completions",
        method="post",
        mirror="POST /completions",
        operation_id="createCompletion",
        tag="Chat Completions",
        summary="Create a text completion (legacy)",
        description=(
            "OpenAI's legacy text completions (`prompt` in, `choices[].text` out), routed like chat "
            "completions to a healthy model server whose model serves this endpoint. The body is forwarded "
            "unchanged (`echo`, `suffix`, `logprobs` and unknown fields included). With `stream: true` the "
            "answer is Server-Sent Events ending with `data: [DONE]`; the usage chunk is sent when "
            "`stream_options.include_usage` is true. A model that serves no text completions answers 400 "
            "`model_not_supported`; a model outside the caller's allow-list answers 403 `model_not_allowed`."
        ),
        extra_errors={
            "413": "The body is larger than CHAT_MAX_BODY_BYTES",
            "502": "The model server failed or could not be reached",
            "503": "Every provider of the model is unhealthy",
            "504": "The model server did not answer in time",
        },
    ),
    ExternalOperation(
        path="/v1/embeddings",
        method="post",
        mirror="POST /embeddings",
        operation_id="createEmbedding",
        tag="Chat Completions",
        summary="Create embeddings",
        description=(
            "Embeddings of a string, an array of strings, an array of token ids or an array of token-id "
            "arrays, from a healthy model server whose model embeds. `encoding_format` (`float` or `base64`, "
            "little-endian float32) and `dimensions` are forwarded to the model server. A model that cannot "
            "embed answers 400 `model_not_supported`; a model outside the caller's allow-list answers 403 "
            "`model_not_allowed`."
        ),
        extra_errors={
            "413": "The body is larger than CHAT_MAX_BODY_BYTES",
            "502": "The model server failed or could not be reached",
            "503": "Every provider of the model is unhealthy",
            "504": "The model server did not answer in time",
        },
    ),
    ExternalOperation(
        path="/v1/models",
        method="get",
        mirror="GET /models",
        operation_id="listModels",
        tag="Chat Completions",
        summary="List models",
        description="The models the caller's project can use right now (healthy providers only).",
        errors=("401", "403", "429"),
    ),
    ExternalOperation(
        path="/v1/models/{model}",
        method="get",
        mirror="GET /models/{model}",
        operation_id="retrieveModel",
        tag="Chat Completions",
        summary="Retrieve a model",
        description="One model the caller can use; ids may contain slashes (`meta-llama/Llama-3.1-8B`).",
        errors=("401", "403", "404", "429"),
    ),
]

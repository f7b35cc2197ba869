"""llama-index OpenAILike: chat, streamed chat and completion against an OpenAI-compatible server."""

import os

from llama_index.core.llms import ChatMessage
from llama_index.llms.openai_like import OpenAILike

ANSWER = "Hello from the fake model."
llm = OpenAILike(
    model=os.environ["COMPAT_MODEL"],
    api_base=os.environ["OPENAI_BASE_URL"],
    api_key=os.environ["OPENAI_API_KEY"],
    is_chat_model=True,
    context_window=8192,
    max_retries=0,
)
assert llm.chat([ChatMessage(role="user", content="Hi")]).message.content == ANSWER
streamed = "".join(chunk.delta or "" for chunk in llm.stream_chat([ChatMessage(role="user", content="Hi")]))
assert streamed == ANSWER, streamed
assert llm.complete("Hi").text == ANSWER
print("ok")

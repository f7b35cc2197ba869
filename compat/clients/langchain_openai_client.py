"""langchain-openai: ChatOpenAI on Chat Completions (invoke, stream, tool binding) and on the
Responses API (use_responses_api)."""

import os

from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

MODEL = os.environ["COMPAT_MODEL"]
ANSWER = "Hello from the fake model."
BASE = os.environ["OPENAI_BASE_URL"]


@tool
def weather(city: str) -> str:
    """The weather in a city."""
    return f"Sunny in {city}."


for responses in (False, True):
    llm = ChatOpenAI(model=MODEL, base_url=BASE, use_responses_api=responses, max_retries=0)
    assert llm.invoke("Hi").text == ANSWER
    assert "".join(chunk.text for chunk in llm.stream("Hi")) == ANSWER
    bound = llm.bind_tools([weather])
    asked = HumanMessage("Weather in Paris?")
    call = bound.invoke([asked])
    assert call.tool_calls, call
    assert call.tool_calls[0]["name"] == "weather", call
    output = weather.invoke(call.tool_calls[0]["args"])
    answer = bound.invoke([asked, call, ToolMessage(output, tool_call_id=call.tool_calls[0]["id"])])
    assert answer.text == ANSWER, answer
    print(f"use_responses_api={responses}: ok")

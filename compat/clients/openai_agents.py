"""openai-agents: an agent with a function tool, on the Responses and the Chat Completions models,
run and streamed, with a session that carries the first turn into the second."""

import asyncio
import os

from agents import (
    Agent,
    OpenAIChatCompletionsModel,
    OpenAIResponsesModel,
    Runner,
    SQLiteSession,
    function_tool,
    set_tracing_disabled,
)
from openai import AsyncOpenAI

MODEL = os.environ["COMPAT_MODEL"]
ANSWER = "Hello from the fake model."
set_tracing_disabled(True)  # the tracing exporter would post to OpenAI


@function_tool
def weather(city: str) -> str:
    """The weather in a city."""
    return f"Sunny in {city}."


async def main() -> None:
    client = AsyncOpenAI()
    for model in (OpenAIResponsesModel(MODEL, client), OpenAIChatCompletionsModel(MODEL, client)):
        agent = Agent(name="assistant", instructions="Be brief.", tools=[weather], model=model)
        session = SQLiteSession(f"compat-{type(model).__name__}")
        result = await Runner.run(agent, "What is the weather?", session=session)
        assert result.final_output == ANSWER, result.final_output
        kinds = [item.type for item in result.new_items]
        assert "tool_call_item" in kinds, kinds
        assert "tool_call_output_item" in kinds, kinds
        streamed = Runner.run_streamed(agent, "And tomorrow?", session=session)
        deltas = 0
        async for event in streamed.stream_events():
            deltas += event.type == "raw_response_event"
        assert streamed.final_output == ANSWER
        assert deltas > 0
        history = await session.get_items()
        assert len(history) >= 8, history  # both turns: asks, calls, outputs, answers
        print(f"{type(model).__name__}: ok")


asyncio.run(main())

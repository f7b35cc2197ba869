"""pydantic-ai: an agent with a tool on the Chat Completions and the Responses models, run and
streamed."""

import asyncio
import os
from collections.abc import Callable

from pydantic_ai import Agent
from pydantic_ai.models.openai import OpenAIChatModel, OpenAIResponsesModel
from pydantic_ai.providers.openai import OpenAIProvider

ANSWER = "Hello from the fake model."
provider = OpenAIProvider(base_url=os.environ["OPENAI_BASE_URL"], api_key=os.environ["OPENAI_API_KEY"])


def _weather(calls: list[str]) -> Callable[[str], str]:
    def weather(city: str) -> str:
        """The weather in a city."""
        calls.append(city)
        return f"Sunny in {city}."

    return weather


async def main() -> None:
    for model in (
        OpenAIChatModel(os.environ["COMPAT_MODEL"], provider=provider),
        OpenAIResponsesModel(os.environ["COMPAT_MODEL"], provider=provider),
    ):
        agent = Agent(model, instructions="Be brief.")
        calls: list[str] = []
        agent.tool_plain(_weather(calls))
        result = await agent.run("Weather?")
        assert result.output == ANSWER, result.output
        assert calls == ["compat"], calls
        async with agent.run_stream("Again?", message_history=result.all_messages()) as streamed:
            text = await streamed.get_output()
        assert text == ANSWER, text
        print(f"{type(model).__name__}: ok")


asyncio.run(main())

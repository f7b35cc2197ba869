// @openai/agents: an agent with a function tool on the Responses and the Chat Completions models,
// run and streamed.
import assert from "node:assert/strict";
import OpenAI from "openai";
import { Agent, OpenAIChatCompletionsModel, OpenAIResponsesModel, run, setTracingDisabled, tool } from "@openai/agents";
import { z } from "zod";

setTracingDisabled(true); // the exporter would post to OpenAI
const MODEL = process.env.COMPAT_MODEL;
const ANSWER = "Hello from the fake model.";
const client = new OpenAI({ maxRetries: 0 });
const calls = [];
const weather = tool({
  name: "weather", description: "The weather in a city.", parameters: z.object({ city: z.string() }),
  execute: async ({ city }) => { calls.push(city); return `Sunny in ${city}.`; },
});
for (const model of [new OpenAIResponsesModel(client, MODEL), new OpenAIChatCompletionsModel(client, MODEL)]) {
  const agent = new Agent({ name: "assistant", instructions: "Be brief.", tools: [weather], model });
  const result = await run(agent, "What is the weather?");
  assert.equal(result.finalOutput, ANSWER);
  const streamed = await run(agent, [...result.history, { role: "user", content: "And tomorrow?" }], { stream: true });
  for await (const _event of streamed) { /* drain */ }
  await streamed.completed;
  assert.equal(streamed.finalOutput, ANSWER);
  console.log(`${model.constructor.name}: ok`);
}
assert.equal(calls.length, 4);

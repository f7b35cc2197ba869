// Vercel AI SDK (ai 6 + @ai-sdk/openai 3), default provider = Responses API with store on: a
// multi-turn conversation with reasoning and a tool loop, where the SDK sends the earlier turns
// back as item_reference inputs.
import assert from "node:assert/strict";
import { createOpenAI } from "@ai-sdk/openai";
import { generateText, stepCountIs, streamText, tool } from "ai";
import { z } from "zod";

const MODEL = process.env.COMPAT_MODEL;
const ANSWER = "Hello from the fake model.";
const sent = [];
const openai = createOpenAI({
  baseURL: process.env.OPENAI_BASE_URL,
  apiKey: process.env.OPENAI_API_KEY,
  fetch: async (url, init) => { if (init?.body) sent.push(JSON.parse(init.body)); return fetch(url, init); },
});
const tools = {
  weather: tool({
    description: "The weather in a city.",
    inputSchema: z.object({ city: z.string() }),
    execute: async ({ city }) => `Sunny in ${city}.`,
  }),
};
const options = { model: openai(MODEL), tools, stopWhen: stepCountIs(5), providerOptions: { openai: { store: true } } };

const messages = [{ role: "user", content: "What is the weather?" }];
const first = await generateText({ ...options, messages });
assert.equal(first.text, ANSWER);
assert.equal(first.steps.length, 2); // the tool call, then the answer
assert.equal(first.steps[0].toolResults[0]?.output, "Sunny in compat.");
// Reasoning comes back as reasoning items (their text is the model's own, not a summary).
assert.ok(first.steps[0].content.some((part) => part.type === "reasoning"), "reasoning is surfaced");
messages.push(...first.response.messages, { role: "user", content: "And tomorrow?" });

const second = streamText({ ...options, messages });
assert.equal(await second.text, ANSWER);
messages.push(...(await second.response).messages, { role: "user", content: "Thanks!" });
const third = await generateText({ ...options, messages });
assert.equal(third.text, ANSWER);

const references = sent.flatMap((body) => (body.input ?? []).filter((item) => item.type === "item_reference"));
assert.ok(references.some((r) => r.id.startsWith("rs_")), "reasoning sent back by reference");
assert.ok(references.some((r) => r.id.startsWith("msg_")), "messages sent back by reference");
console.log(`ok: ${sent.length} requests, ${references.length} item references`);

// The openai npm package: chat completions (plain, streamed, tools), the Responses API (tools,
// a previous_response_id chain, a stream) and conversations.
import assert from "node:assert/strict";
import OpenAI from "openai";

const MODEL = process.env.COMPAT_MODEL;
const ANSWER = "Hello from the fake model.";
const client = new OpenAI({ maxRetries: 0 });
const tools = [{ type: "function", function: { name: "weather", parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] } } }];

const plain = await client.chat.completions.create({ model: MODEL, messages: [{ role: "user", content: "Hi" }] });
assert.equal(plain.choices[0].message.content, ANSWER);
let streamed = "";
for await (const chunk of await client.chat.completions.create({ model: MODEL, messages: [{ role: "user", content: "Hi" }], stream: true })) {
  streamed += chunk.choices[0]?.delta?.content ?? "";
}
assert.equal(streamed, ANSWER);
const called = await client.chat.completions.create({ model: MODEL, messages: [{ role: "user", content: "Weather?" }], tools });
const call = called.choices[0].message.tool_calls[0];
assert.equal(call.function.name, "weather");

const responseTools = [{ type: "function", name: "weather", parameters: tools[0].function.parameters }];
const first = await client.responses.create({ model: MODEL, input: "Weather?", tools: responseTools });
const fc = first.output.find((item) => item.type === "function_call");
assert.ok(fc, JSON.stringify(first.output));
const second = await client.responses.create({
  model: MODEL, previous_response_id: first.id, tools: responseTools,
  input: [{ type: "function_call_output", call_id: fc.call_id, output: "Sunny." }],
});
assert.equal(second.output_text, ANSWER);
const stream = await client.responses.create({ model: MODEL, input: "Hi", stream: true });
let text = "";
for await (const event of stream) if (event.type === "response.output_text.delta") text += event.delta;
assert.equal(text, ANSWER);
assert.equal((await client.responses.retrieve(second.id)).output_text, ANSWER);

const conversation = await client.conversations.create({ items: [{ type: "message", role: "user", content: "Remember me." }] });
const inConversation = await client.responses.create({ model: MODEL, input: "Who am I?", conversation: conversation.id });
assert.equal(inConversation.output_text, ANSWER);
const items = await client.conversations.items.list(conversation.id, { order: "asc" });
assert.equal(items.data.length, 4, JSON.stringify(items.data.map((i) => i.type)));
console.log("ok");

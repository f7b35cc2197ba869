// The MCP TypeScript SDK over Streamable HTTP with the gateway's API key: initialize, tools,
// prompts (and argument completion), resources, logging level.
import assert from "node:assert/strict";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const transport = new StreamableHTTPClientTransport(new URL(process.env.MCP_URL), {
  requestInit: { headers: { Authorization: `Bearer ${process.env.OPENAI_API_KEY}` } },
});
const client = new Client({ name: "compat", version: "1.0.0" });
await client.connect(transport);
const capabilities = client.getServerCapabilities();
assert.ok(capabilities.tools && capabilities.prompts && capabilities.resources && capabilities.logging && capabilities.completions);
const { tools } = await client.listTools();
assert.deepEqual(tools.map((t) => t.name).sort(), ["fetch_webpage", "serper_search"]);
const { prompts } = await client.listPrompts();
assert.ok(prompts.some((p) => p.name === "web_research"));
const prompt = await client.getPrompt({ name: "web_research", arguments: { topic: "MCP" } });
assert.match(prompt.messages[0].content.text, /MCP/);
const completion = await client.complete({ ref: { type: "ref/prompt", name: "web_research" }, argument: { name: "sources", value: "1" } });
assert.deepEqual(completion.completion.values, ["1", "10"]);
await client.listResources();
await client.listResourceTemplates();
await client.setLoggingLevel("info");
await client.ping();
await transport.terminateSession();
await client.close();
console.log("ok");

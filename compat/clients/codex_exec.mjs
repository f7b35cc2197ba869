// The Codex CLI (`codex exec`, default features, wire_api = "responses") with a generated config
// whose only provider is the gateway on 127.0.0.1: it must answer, and call a tool on the way.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";

const work = path.join(process.env.COMPAT_WORK_DIR, "codex");
const home = path.join(work, "home");
const project = path.join(work, "project");
fs.mkdirSync(home, { recursive: true });
fs.mkdirSync(project, { recursive: true });
fs.writeFileSync(path.join(home, "config.toml"), `
model = "${process.env.COMPAT_MODEL}"
model_provider = "gateway"
approval_policy = "never"
sandbox_mode = "read-only"
check_for_update_on_startup = false

[model_providers.gateway]
name = "Jan API Gateway"
base_url = "${process.env.OPENAI_BASE_URL}"
env_key = "OPENAI_API_KEY"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0

[analytics]
enabled = false

[feedback]
enabled = false
`);
const codex = spawnSync("codex", ["exec", "--json", "--skip-git-repo-check", "-C", project, "Say hello."], {
  env: { ...process.env, CODEX_HOME: home, HOME: home, RUST_LOG: "warn" },
  encoding: "utf8",
  timeout: 240_000,
});
const events = codex.stdout.split("\n").filter((line) => line.startsWith("{")).map((line) => JSON.parse(line));
const items = events.filter((e) => e.type === "item.completed").map((e) => e.item);
console.log(items.map((item) => item.type).join(", "));
for (const item of items) if (item.type !== "agent_message") console.log(JSON.stringify(item).slice(0, 600));
if (codex.status !== 0) console.log(codex.stdout.slice(-3000), codex.stderr.slice(-3000));
assert.equal(codex.status, 0);
const answer = items.find((item) => item.type === "agent_message");
assert.equal(answer?.text, "Hello from the fake model.");
const TOOL_ITEMS = ["command_execution", "mcp_tool_call", "file_change", "web_search", "collab_tool_call"];
assert.ok(items.some((item) => TOOL_ITEMS.includes(item.type)), "a tool was called");
console.log("ok");

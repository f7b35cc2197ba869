// The MCP conformance suite's generic server scenarios (the ones that do not need its own test
// tools) against /v1/mcp. The suite sends no credentials, so a small proxy on 127.0.0.1 adds the
// gateway's API key and passes everything else through unchanged, Host and Origin included.
import { spawn } from "node:child_process";
import http from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";

const SCENARIOS = [
  "server-initialize", "ping", "logging-set-level", "completion-complete", "tools-list",
  "resources-list", "prompts-list", "server-sse-multiple-streams", "dns-rebinding-protection",
];
const gateway = new URL(process.env.MCP_URL);
const proxy = http.createServer((request, response) => {
  const upstream = http.request(
    {
      host: gateway.hostname, port: gateway.port, path: request.url, method: request.method,
      headers: { ...request.headers, authorization: `Bearer ${process.env.OPENAI_API_KEY}` },
    },
    (answer) => { response.writeHead(answer.statusCode, answer.headers); answer.pipe(response); },
  );
  upstream.on("error", () => response.destroy());
  request.pipe(upstream);
});
await new Promise((resolve) => proxy.listen(0, "127.0.0.1", resolve));
const url = `http://127.0.0.1:${proxy.address().port}${gateway.pathname}`;
const cli = path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "node_modules", "@modelcontextprotocol", "conformance", "dist", "index.js");
const failed = [];
for (const scenario of SCENARIOS) {
  // Asynchronously: the proxy lives in this process and must keep serving meanwhile.
  const run = await new Promise((resolve) => {
    const child = spawn(process.execPath, [cli, "server", "--url", url, "--scenario", scenario,
      "-o", path.join(process.env.COMPAT_WORK_DIR, "conformance")], { stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (d) => { output += d; });
    child.stderr.on("data", (d) => { output += d; });
    child.on("close", (code) => resolve({ code, output }));
  });
  console.log(`${run.code === 0 ? "pass" : "FAIL"} ${scenario}`);
  if (run.code !== 0) { failed.push(scenario); console.log(run.output.slice(-3000)); }
}
if (failed.length) console.log(`failed: ${failed.join(", ")}`);
else console.log(`ok: ${SCENARIOS.length} scenarios`);
// Exit outright: the proxied SSE streams the suite left open would hold the process.
process.exit(failed.length ? 1 : 0);

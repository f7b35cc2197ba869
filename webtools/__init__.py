"""Web tools shared by the MCP server and the Responses API's server-side web search: a Serper
search and a guarded page fetch (`webtools.tools`). It sits below both callers and knows about
neither; its only gateway dependency is the address policy in `inference.netguard`."""

/**
 * A minimal stdio MCP server (newline-delimited JSON-RPC), as JavaScript source to drop into a
 * workspace and run with the image's node. Its one tool, `env`, answers with the environment the
 * server was started with, so a test sees exactly what reached it.
 */
export const MCP_ENV_SERVER_SOURCE = `
const readline = require("node:readline");
const send = (message) => process.stdout.write(JSON.stringify({ jsonrpc: "2.0", ...message }) + "\\n");
readline.createInterface({ input: process.stdin }).on("line", (line) => {
  let msg;
  try { msg = JSON.parse(line); } catch { return; }
  if (msg.id === undefined) return;
  switch (msg.method) {
    case "initialize":
      send({ id: msg.id, result: { protocolVersion: msg.params.protocolVersion, capabilities: { tools: {} }, serverInfo: { name: "env-server", version: "1.0.0" } } });
      break;
    case "tools/list":
      send({ id: msg.id, result: { tools: [{ name: "env", description: "Returns the server's environment", inputSchema: { type: "object", properties: {} } }] } });
      break;
    case "tools/call":
      send({ id: msg.id, result: { content: [{ type: "text", text: "ENV-JSON:" + JSON.stringify(process.env) }] } });
      break;
    default:
      send({ id: msg.id, error: { code: -32601, message: "unknown method" } });
  }
});
`;

/** turn.run's mcpServers, validated at the edge: names, commands, args and env, each bounded; env values are never echoed back. */
import { checkEnvValue } from "../shared/env-value.js";
import { invalidParams } from "../errors.js";
import { expectObject, expectString, has, requireField, singleLine } from "./param-checks.js";
import type { McpServerSpec } from "../service.js";

export const ENV_NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_]*$/;
export const MCP_SERVER_NAME_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

export const MCP_PARAM_LIMITS = {
  mcpServers: 32,
  mcpCommandLength: 4096,
  mcpArgs: 256,
  mcpArgLength: 8192,
  mcpEnvEntries: 128,
} as const;

export function parseMcpServers(value: unknown): Record<string, McpServerSpec> {
  const servers = expectObject(value, "mcpServers");
  const names = Object.keys(servers);
  if (names.length > MCP_PARAM_LIMITS.mcpServers)
    throw invalidParams("mcpServers", `must have at most ${MCP_PARAM_LIMITS.mcpServers} servers`);
  const out: Record<string, McpServerSpec> = {};
  for (const name of names) {
    if (!MCP_SERVER_NAME_PATTERN.test(name)) {
      throw invalidParams("mcpServers", `server names must match ${MCP_SERVER_NAME_PATTERN.source}`, name);
    }
    const field = `mcpServers.${name}`;
    const server = expectObject(servers[name], field);
    const spec: McpServerSpec = {
      command: singleLine(
        requireField(server, "command", `${field}.command`),
        `${field}.command`,
        MCP_PARAM_LIMITS.mcpCommandLength,
      ),
    };
    if (has(server, "args")) {
      const args = server.args;
      if (!Array.isArray(args)) throw invalidParams(`${field}.args`, "must be an array of strings", args);
      if (args.length > MCP_PARAM_LIMITS.mcpArgs)
        throw invalidParams(`${field}.args`, `must have at most ${MCP_PARAM_LIMITS.mcpArgs} entries`);
      spec.args = args.map((arg, index) => {
        const argField = `${field}.args[${index}]`;
        const text = expectString(arg, argField);
        if (text.includes("\0")) throw invalidParams(argField, "must not contain NUL");
        if (text.length > MCP_PARAM_LIMITS.mcpArgLength)
          throw invalidParams(argField, `must be at most ${MCP_PARAM_LIMITS.mcpArgLength} characters`);
        return text;
      });
    }
    if (has(server, "env")) {
      const env = expectObject(server.env, `${field}.env`);
      const entries = Object.entries(env);
      if (entries.length > MCP_PARAM_LIMITS.mcpEnvEntries)
        throw invalidParams(`${field}.env`, `must have at most ${MCP_PARAM_LIMITS.mcpEnvEntries} entries`);
      const parsed: Record<string, string> = {};
      for (const [key, envValue] of entries) {
        if (!ENV_NAME_PATTERN.test(key))
          throw invalidParams(`${field}.env`, `variable names must match ${ENV_NAME_PATTERN.source}`, key);
        const envField = `${field}.env.${key}`;
        // Values may be secrets: never echo them back.
        if (typeof envValue !== "string") throw invalidParams(envField, "must be a string");
        parsed[key] = checkEnvValue(envField, envValue);
      }
      spec.env = parsed;
    }
    out[name] = spec;
  }
  return out;
}

/**
 * What codex in a workspace works with: the model API (behind the sidecar's model proxy) and its key,
 * the default model, Alive's API and its MCP servers' token, and NODE_PATH.
 */
import { parseAbsolutePath, parseSingleLine, parseUrl } from "../shared/setting-parsers.js";
import { names, secretLine, setting, type AnySetting } from "./setting-spec.js";

export const CODEX_SETTINGS: readonly AnySetting[] = [
  setting({
    key: "openaiBaseUrl",
    env: "OPENAI_BASE_URL",
    flag: "--openai-base-url",
    parse: parseUrl,
    default: null,
    defaultText: "https://api.openai.com/v1",
    description:
      "Model API base URL the sidecar's model proxy forwards to (from the sidecar, not from the workspaces, which have no network), e.g. http://127.0.0.1:8080/v1.",
  }),
  setting({
    key: "codexApiKey",
    env: "CODEX_API_KEY",
    flag: "--codex-api-key",
    parse: secretLine,
    default: null,
    defaultText: "$OPENAI_API_KEY, else none",
    secret: true,
    description:
      "The model API key. It stays in the sidecar: its model proxy adds it to codex's requests, and codex in a workspace only ever holds a per-turn credential. OPENAI_API_KEY is read as a fallback.",
  }),
  setting({
    key: "codexApiKeyFile",
    env: "ALIVE_CODEX_API_KEY_FILE",
    flag: "--codex-api-key-file",
    parse: parseAbsolutePath,
    default: null,
    description:
      "A file holding the key (e.g. a Docker or compose secret), used when CODEX_API_KEY is not set; keeps the key out of process listings and `docker inspect`.",
  }),
  setting({
    key: "defaultModel",
    env: "ALIVE_CODEX_MODEL",
    flag: "--model",
    parse: names(128),
    default: null,
    defaultText: "(codex's default)",
    description: "Model used when turn.run options.model is not given.",
  }),
  setting({
    key: "aliveApiUrl",
    env: "ALIVE_API_URL",
    flag: "--alive-api-url",
    parse: parseUrl,
    default: null,
    description: "Alive's internal API, passed to sessions and MCP servers as ALIVE_API_URL.",
  }),
  setting({
    key: "aliveMcpToken",
    env: "ALIVE_MCP_TOKEN",
    flag: "--alive-mcp-token",
    parse: secretLine,
    default: null,
    secret: true,
    description: "Token for Alive's MCP servers, passed as ALIVE_MCP_TOKEN.",
  }),
  setting({
    key: "nodePath",
    env: "ALIVE_CODEX_NODE_PATH",
    flag: "--node-path",
    parse: (name, raw) => parseSingleLine(name, raw, 4096),
    default: null,
    description: "NODE_PATH inside workspace containers.",
  }),
];

/**
 * The settings of the model proxy: which endpoints and hosted tools it lets through, how large and
 * how many requests, and the organisation and project it sends upstream.
 */
import { ConfigError } from "../shared/setting-parsers.js";
import { integers, setting, type AnySetting } from "./setting-spec.js";

const MODEL_ROUTE = /^([A-Za-z]+)\s+((?:\/[A-Za-z0-9._~-]+)+(?:\/\*)?)$/;
const MODEL_ROUTE_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/** Comma-separated "METHOD /path" pairs relative to the model API's base URL (a trailing /* matches below it). */
function parseModelPaths(name: string, raw: string): Array<{ method: string; path: string }> {
  const entries = raw
    .split(",")
    .map((entry) => entry.trim())
    .filter((entry) => entry !== "");
  return entries.map((entry) => {
    const match = MODEL_ROUTE.exec(entry);
    const method = match?.[1]?.toUpperCase() ?? "";
    const routePath = match?.[2] ?? "";
    if (!MODEL_ROUTE_METHODS.includes(method) || /(^|\/)\.\.?(\/|$)/.test(routePath)) {
      throw new ConfigError(
        name,
        raw,
        `comma-separated "METHOD /path" pairs relative to the model API's base URL, e.g. "GET /models,POST /embeddings" (METHOD one of ${MODEL_ROUTE_METHODS.join(", ")}; a path of letters, digits, . _ ~ -, optionally ending in /*); ${JSON.stringify(entry)} is not one`,
      );
    }
    return { method, path: routePath };
  });
}

const MODEL_HOSTED_TOOLS = ["web_search", "code_interpreter", "file_search"];

/** Comma-separated hosted tool types, each one of MODEL_HOSTED_TOOLS. */
function parseHostedTools(name: string, raw: string): string[] {
  const list = raw
    .split(",")
    .map((entry) => entry.trim())
    .filter((entry) => entry !== "");
  for (const tool of list)
    if (!MODEL_HOSTED_TOOLS.includes(tool))
      throw new ConfigError(
        name,
        raw,
        `a comma-separated list of ${MODEL_HOSTED_TOOLS.join(", ")} (${JSON.stringify(tool)} is not one)`,
      );
  return [...new Set(list)];
}

/** An OpenAI organization or project id: letters, digits, _ and -. */
function parseOpenAiId(name: string, raw: string): string {
  if (!/^[A-Za-z0-9_-]{1,256}$/.test(raw))
    throw new ConfigError(name, raw, "an id of letters, digits, _ and - (e.g. org-abc123 or proj_abc123)");
  return raw;
}

export const MODEL_PROXY_SETTINGS: readonly AnySetting[] = [
  setting({
    key: "modelPaths",
    env: "ALIVE_CODEX_MODEL_PATHS",
    flag: "--model-paths",
    parse: parseModelPaths,
    default: () => [],
    defaultText: "(none: POST /responses and POST /responses/compact only)",
    description:
      "Extra endpoints the model proxy forwards with the real key, as comma-separated \"METHOD /path\" pairs relative to OPENAI_BASE_URL (a trailing /* matches any path below), e.g. \"GET /models\". Everything else is refused with 403. Risk: every process of every workspace can call what is listed with the operator's key (a command can read its turn's credential); never list files, batches, fine-tuning, vector stores or anything that lists, reads or deletes the organisation's data. The body policy (ALIVE_CODEX_MODEL_HOSTED_TOOLS) knows the Responses API's shape only (docs/security.md).",
  }),
  setting({
    key: "modelHostedTools",
    env: "ALIVE_CODEX_MODEL_HOSTED_TOOLS",
    flag: "--model-hosted-tools",
    parse: parseHostedTools,
    default: () => [],
    defaultText: "(none)",
    description:
      'Hosted tools a model request may use when the egress in force is "model" or an allow-list: comma-separated web_search, code_interpreter, file_search. Others are refused with 403, as are input_image/input_file URLs (outside an allow-list) and remote mcp tools; codex is told webSearchMode "disabled" there unless web_search is listed. Under "public" all of them pass. Risk: web_search lets the model API fetch pages for a workspace that may not reach them itself; file_search and code_interpreter reach the organisation\'s stored files and vector stores by id.',
  }),
  setting({
    key: "modelMaxBodyMb",
    env: "ALIVE_CODEX_MODEL_MAX_BODY_MB",
    flag: "--model-max-body-mb",
    parse: integers(1, 1024),
    default: "32",
    description:
      "Largest model request body, in MiB: a larger one is answered 413 without reaching the model API. Codex sends the whole conversation (with inline images) on every request.",
  }),
  setting({
    key: "modelConcurrency",
    env: "ALIVE_CODEX_MODEL_CONCURRENCY",
    flag: "--model-concurrency",
    parse: integers(1, 64),
    default: "2",
    description:
      "Model requests a turn may have at the model API at once (codex needs 1-2); more wait in line (up to 64, then 429). A token budget overshoots by at most this many responses.",
  }),
  setting({
    key: "modelRatePerMinute",
    env: "ALIVE_CODEX_MODEL_RATE",
    flag: "--model-rate",
    parse: integers(0, 1_000_000),
    default: "120",
    description:
      "Model requests a workspace may send a minute (a token bucket: up to this many at once, refilled evenly; 0 = no limit). Past it the model proxy answers 429 rate_limit_exceeded with retry-after, which codex retries, so one tenant cannot use up the organisation's rate limit.",
  }),
  setting({
    key: "openaiOrganization",
    env: "OPENAI_ORGANIZATION",
    flag: "--openai-organization",
    parse: parseOpenAiId,
    default: null,
    description: "OpenAI-Organization header the model proxy sends upstream; a tenant's own is always dropped.",
  }),
  setting({
    key: "openaiProject",
    env: "OPENAI_PROJECT",
    flag: "--openai-project",
    parse: parseOpenAiId,
    default: null,
    description: "OpenAI-Project header the model proxy sends upstream; a tenant's own is always dropped.",
  }),
];

/**
 * What a request body may ask the model API to do on the tenant's behalf.
 *
 * The model API fetches URLs and connects to servers itself: an `input_image` or `input_file` with
 * an http(s) URL, the `web_search` tools, remote `mcp` tools, `code_interpreter` and `file_search`.
 * For a workspace whose egress in force is "model" or an allow-list, that would be a way out around
 * its egress policy, so such a body is refused (hosted tools only unless the operator allows them;
 * under an allow-list a URL whose host the list allows passes). Under "public" they pass: the
 * workspace may reach any public host anyway. `background: true` is refused in every mode: the
 * response would run on without a stream, and its tokens could not be metered.
 *
 * Checking has to be cheap on a 200 KB body. A body whose bytes contain none of the words that
 * could matter (and no `\u` escape, which could spell one) cannot hold anything refused, and is
 * passed as is without parsing. Otherwise it is parsed and checked, and what is forwarded is the
 * parsed body serialised again: duplicate keys (`{"type":"web_search","type":"function"}`) mean
 * one thing to JSON.parse and maybe another upstream, so the upstream gets what was checked.
 */
import { decideHost, type EgressPolicy } from "../policy/egress-policy.js";

/** Hosted tools an operator may allow under a restricted egress policy. */
export const HOSTED_TOOLS = ["web_search", "code_interpreter", "file_search"] as const;
export type HostedTool = (typeof HOSTED_TOOLS)[number];

export type BodyRefusalReason =
  "invalid_body" | "remote_input" | "web_search" | "remote_mcp" | "hosted_tool" | "background";

export type BodyVerdict = { ok: true; body: Buffer } | { ok: false; reason: BodyRefusalReason; message: string };

export interface BodyPolicy {
  /** The workspace's (or the turn's narrower) egress policy in force. */
  egress: EgressPolicy;
  /** Hosted tools allowed under "model" or an allow-list. */
  hostedTools: ReadonlySet<string>;
}

/** Byte sequences without which a body holds nothing to refuse (a `\u` escape could spell any of them). */
const WORDS = [
  "input_image",
  "input_file",
  "web_search",
  '"mcp"',
  "code_interpreter",
  "file_search",
  '"background"',
  "\\u",
].map((word) => Buffer.from(word));
const PUBLIC_WORDS = ['"background"', "\\u"].map((word) => Buffer.from(word));

/** Checks a JSON request body against the policy. */
export function checkRequestBody(body: Buffer, policy: BodyPolicy): BodyVerdict {
  const words = policy.egress === "public" ? PUBLIC_WORDS : WORDS;
  if (!words.some((word) => body.includes(word))) return { ok: true, body };
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString("utf8"));
  } catch (error) {
    return {
      ok: false,
      reason: "invalid_body",
      message: `the request body is not valid JSON (${(error as Error).message})`,
    };
  }
  if (!isRecord(parsed))
    return { ok: false, reason: "invalid_body", message: "the request body must be a JSON object" };
  const refusal = findRefusal(parsed, policy);
  return refusal ?? { ok: true, body: Buffer.from(JSON.stringify(parsed)) };
}

function findRefusal(body: Record<string, unknown>, policy: BodyPolicy): BodyVerdict | null {
  if (body.background !== undefined && body.background !== false && body.background !== null) {
    return refuse(
      "background",
      "background responses are not allowed through the model proxy: they run on without a stream and their tokens cannot be metered",
    );
  }
  if (policy.egress === "public") return null;
  const mode = policy.egress === "model" ? '"model"' : "an allow-list";
  for (const tool of toolsOf(body.tools)) {
    const type = typeof tool.type === "string" ? tool.type : "";
    if (type.startsWith("web_search") && !policy.hostedTools.has("web_search")) {
      return refuse(
        "web_search",
        `the ${type} tool is not allowed: the workspace's egress is ${mode}, and the model API would search the web for it`,
      );
    }
    if (type === "mcp") {
      return refuse(
        "remote_mcp",
        `a remote mcp tool${typeof tool.server_url === "string" ? " with server_url" : ""} is not allowed: the workspace's egress is ${mode}, and the model API would connect to that server for it`,
      );
    }
    if ((type === "code_interpreter" || type === "file_search") && !policy.hostedTools.has(type)) {
      return refuse(
        "hosted_tool",
        `the ${type} tool is not allowed under the workspace's egress ${mode} (the operator can allow it: ALIVE_CODEX_MODEL_HOSTED_TOOLS)`,
      );
    }
  }
  const url = firstRemoteInput(body, policy.egress);
  if (url !== null) {
    return refuse(
      "remote_input",
      `an ${url.type} with a ${url.scheme} URL is not allowed: the workspace's egress is ${mode}, and the model API would fetch it (send it inline as a data: URL)`,
    );
  }
  return null;
}

/** Every tool object, also those nested in a tool's own `tools` (a namespace). */
function* toolsOf(value: unknown): Generator<Record<string, unknown>> {
  if (!Array.isArray(value)) return;
  for (const tool of value) {
    if (!isRecord(tool)) continue;
    yield tool;
    yield* toolsOf(tool.tools);
  }
}

/** The first input_image/input_file anywhere in the body whose URL the model API would fetch and the policy does not allow. */
function firstRemoteInput(root: unknown, egress: EgressPolicy): { type: string; scheme: string } | null {
  const stack: unknown[] = [root];
  while (stack.length > 0) {
    const value = stack.pop();
    if (Array.isArray(value)) {
      for (const item of value) if (typeof item === "object" && item !== null) stack.push(item);
      continue;
    }
    if (!isRecord(value)) continue;
    if (value.type === "input_image" || value.type === "input_file") {
      for (const url of [
        value.image_url,
        value.file_url,
        isRecord(value.image_url) ? value.image_url.url : undefined,
      ]) {
        const scheme = typeof url === "string" ? remoteScheme(url, egress) : null;
        if (scheme !== null) return { type: value.type, scheme };
      }
    }
    for (const child of Object.values(value)) if (typeof child === "object" && child !== null) stack.push(child);
  }
  return null;
}

/** The scheme of a URL the model API would fetch and the policy does not allow; null for inline data or an allowed host. */
function remoteScheme(text: string, egress: EgressPolicy): string | null {
  const trimmed = text.trim().toLowerCase();
  if (trimmed.startsWith("data:")) return null;
  let url: URL;
  try {
    url = new URL(text.trim());
  } catch {
    // Not a URL the API can fetch; it will reject it itself.
    return null;
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return url.protocol.slice(0, -1);
  if (typeof egress === "object" && decideHost(egress, url.hostname).allowed) return null;
  return url.protocol.slice(0, -1);
}

/**
 * The web search mode codex is told for a turn, so an honest turn never sends a tool the proxy
 * refuses: "disabled" under "model" or an allow-list unless the operator allows web_search (codex
 * 0.163 otherwise offers `web_search` with live access by default); what was asked otherwise.
 */
export function codexWebSearchMode<M extends string>(
  egress: EgressPolicy,
  requested: M | undefined,
  hostedTools: ReadonlySet<string>,
): M | "disabled" | undefined {
  if (egress === "public" || hostedTools.has("web_search")) return requested;
  return "disabled";
}

function refuse(reason: BodyRefusalReason, message: string): BodyVerdict {
  return { ok: false, reason, message };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * Which requests the model proxy forwards: (method, path) pairs under the base path, never a
 * prefix. The built-in pairs are what codex sends to a `wire_api = "responses"` provider with
 * WebSockets off (recorded from codex 0.163 against a scripted server): `POST /responses` for every
 * model step, and `POST /responses/compact` for remote compaction (older and newer codex builds).
 * Everything else (files, batches, fine-tuning, vector stores, chat completions, deletions, and
 * `GET /responses`, codex's WebSocket attempt, which this provider never makes) is refused.
 */

export interface ModelRoute {
  /** Upper-case HTTP method, e.g. "POST". */
  method: string;
  /** A path relative to the base path, e.g. "/responses"; one ending in "/*" matches any path below it. */
  path: string;
}

export const DEFAULT_MODEL_ROUTES: readonly ModelRoute[] = [
  { method: "POST", path: "/responses" },
  { method: "POST", path: "/responses/compact" },
];

const METHODS: ReadonlySet<string> = new Set(["GET", "POST", "PUT", "PATCH", "DELETE"]);
const PATH = /^(\/[A-Za-z0-9._~-]+)+(\/\*)?$/;

/** Parses "METHOD /path" (e.g. "GET /models"); the error says what was expected. */
export function parseModelRoute(text: string): ModelRoute {
  const match = /^\s*([A-Za-z]+)\s+(\S+)\s*$/.exec(text);
  const method = match?.[1]?.toUpperCase() ?? "";
  const path = match?.[2] ?? "";
  if (!METHODS.has(method))
    throw new TypeError(
      `expected "METHOD /path" with METHOD one of ${[...METHODS].join(", ")}, got ${JSON.stringify(text)}`,
    );
  if (!PATH.test(path) || /(^|\/)\.\.?(\/|$)/.test(path)) {
    throw new TypeError(
      `expected a path relative to the base URL such as /models or /models/* (letters, digits, . _ ~ -; no dot segments), got ${JSON.stringify(path)}`,
    );
  }
  return { method, path };
}

/** Is `method` on `path` (relative to the base path, already free of dot segments) one of `routes`? */
export function isRouteAllowed(routes: readonly ModelRoute[], method: string, path: string): boolean {
  return routes.some((route) => {
    if (route.method !== method) return false;
    if (!route.path.endsWith("/*")) return route.path === path;
    const prefix = route.path.slice(0, -1);
    return path.startsWith(prefix) && path.length > prefix.length;
  });
}

/** "POST /responses" as the operator writes it. */
export function formatModelRoute(route: ModelRoute): string {
  return `${route.method} ${route.path}`;
}

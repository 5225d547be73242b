/**
 * The secret bindings in force, per workspace: those of its last workspace.ensure that named
 * `secrets`, and those of its running turn (turn.run `secrets`, for that turn only; a turn's binding
 * of a host wins over the workspace's). Kept in this process's memory only: never in a container,
 * its inspect output, a log line, the journal or an answer (summaries carry hosts, headers, env
 * names and counts). A sidecar restart forgets them: the next ensure or turn sets them again.
 *
 * Each binding with an `env` gets a placeholder: a random string the workspace's processes see in
 * that variable. The proxy swaps it for the value where it appears in a request header to the bound
 * host, so a tool that insists on a token works, and the placeholder is worth nothing anywhere else.
 */
import { randomBytes } from "node:crypto";
import type { SecretBinding, SecretBindingSummary } from "../service.js";
import { parseBindingHost } from "../policy/binding-host.js";

export const PLACEHOLDER_PREFIX = "alive-secret-placeholder-";

/** What the proxy applies to a request to a bound host. */
export interface AppliedBinding {
  header: string;
  value: string;
  /** The placeholder to swap for the value in request headers, if the binding has an env. */
  placeholder?: string;
  /** Counts a request the binding touched. */
  touched(): void;
}

interface Held {
  host: string;
  port: number;
  binding: SecretBinding;
  placeholder: string | null;
  scope: "workspace" | "turn";
  requests: number;
}

export class SecretBindings {
  readonly #workspace = new Map<string, Held[]>();
  readonly #turn = new Map<string, Held[]>();

  constructor(private readonly onTouched: () => void = () => undefined) {}

  /** The workspace's own bindings (workspace.ensure `secrets`), replacing those before. */
  setWorkspace(workspaceId: string, bindings: readonly SecretBinding[]): void {
    this.#workspace.set(workspaceId, hold(bindings, "workspace", this.#workspace.get(workspaceId)));
  }

  /** The running turn's bindings (turn.run `secrets`); null when it ends. */
  setTurn(workspaceId: string, bindings: readonly SecretBinding[] | null): void {
    if (bindings === null || bindings.length === 0) this.#turn.delete(workspaceId);
    else this.#turn.set(workspaceId, hold(bindings, "turn"));
  }

  /** The workspace is removed: its bindings go with it. */
  forget(workspaceId: string): void {
    this.#workspace.delete(workspaceId);
    this.#turn.delete(workspaceId);
  }

  /** The binding for a CONNECT to host:port from this workspace, if any (the turn's first). */
  bindingFor(workspaceId: string, host: string, port: number): AppliedBinding | null {
    const wanted = parseBindingHost(host.includes(":") && !host.startsWith("[") ? `[${host}]` : host);
    const name = wanted?.host ?? host.toLowerCase();
    for (const held of [...(this.#turn.get(workspaceId) ?? []), ...(this.#workspace.get(workspaceId) ?? [])]) {
      if (held.host !== name || held.port !== port) continue;
      return {
        header: held.binding.header,
        value: held.binding.value,
        ...(held.placeholder ? { placeholder: held.placeholder } : {}),
        touched: () => {
          held.requests += 1;
          this.onTouched();
        },
      };
    }
    return null;
  }

  /** Whether the workspace has any binding now (its container's CONNECTs may be intercepted). */
  has(workspaceId: string): boolean {
    return (this.#workspace.get(workspaceId)?.length ?? 0) + (this.#turn.get(workspaceId)?.length ?? 0) > 0;
  }

  /** The variables codex's commands get: each binding's env name and placeholder (the turn's win). */
  placeholders(workspaceId: string): Record<string, string> {
    const out: Record<string, string> = {};
    for (const held of [...(this.#workspace.get(workspaceId) ?? []), ...(this.#turn.get(workspaceId) ?? [])])
      if (held.binding.env && held.placeholder) out[held.binding.env] = held.placeholder;
    return out;
  }

  /** What workspace.list shows: hosts, headers, env names and counts, never a value. */
  describe(workspaceId: string): SecretBindingSummary[] {
    return [...(this.#workspace.get(workspaceId) ?? []), ...(this.#turn.get(workspaceId) ?? [])].map((held) => ({
      host: held.binding.host,
      header: held.binding.header,
      ...(held.binding.env ? { env: held.binding.env } : {}),
      scope: held.scope,
      requests: held.requests,
    }));
  }
}

/** Bindings as held; a workspace binding set again with the same host and env keeps its placeholder and count. */
function hold(bindings: readonly SecretBinding[], scope: Held["scope"], before: readonly Held[] = []): Held[] {
  return bindings.map((binding) => {
    const { host, port } = parseBindingHost(binding.host)!;
    const same = before.find((b) => b.host === host && b.port === port && b.binding.env === binding.env);
    return {
      host,
      port,
      binding: { ...binding },
      placeholder: binding.env
        ? (same?.placeholder ?? `${PLACEHOLDER_PREFIX}${randomBytes(16).toString("hex")}`)
        : null,
      scope,
      requests: same?.requests ?? 0,
    };
  });
}

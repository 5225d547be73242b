/** What the model proxy keeps across requests, and what one request carries from its admission to its answer. */
import type http from "node:http";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { LogFields } from "../log.js";
import type { ConcurrencySlots, RateLimiter } from "./limits.js";
import type { ResolvedModelProxyOptions } from "./options.js";

/** What one proxy keeps across requests. */
export interface ProxyState {
  agent: http.Agent;
  slots: ConcurrencySlots;
  rate: RateLimiter;
  /** Workspace and reason pairs already logged. */
  logged: Set<string>;
}

/** One request's context once its credential checked out. */
export interface Exchange<T> {
  options: ResolvedModelProxyOptions<T>;
  state: ProxyState;
  req: IncomingMessage;
  res: ServerResponse;
  ref: T;
  fields: LogFields;
  /** The path relative to the base path, for log lines. */
  path: string;
}

/** Runs a caller's callback; one that throws is logged and must not take the proxy down. */
export function guarded<T>(options: ResolvedModelProxyOptions<T>, fields: LogFields, callback: () => void): void {
  try {
    callback();
  } catch (error) {
    options.logger?.error("model proxy: a callback threw", { ...fields, error });
  }
}

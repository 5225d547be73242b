/**
 * The settings of the sidecar process itself: where it listens and keeps its state, where it serves
 * metrics, which engine it drives, how much it logs and what it labels.
 */
import os from "node:os";
import path from "node:path";
import type { LogLevel } from "../log.js";
import {
  parseAbsolutePath,
  parseDockerHost,
  parseLabels,
  parseListenAddress,
  parseOneOf,
} from "../shared/setting-parsers.js";
import { names, setting, type AnySetting, type Env } from "./setting-spec.js";

function isRoot(): boolean {
  return typeof process.getuid === "function" && process.getuid() === 0;
}

function defaultSocketPath(env: Env): string {
  if (isRoot()) return "/run/alive-codex/sidecar.sock";
  return path.join(env.XDG_RUNTIME_DIR ?? os.tmpdir(), "alive-codex.sock");
}

function defaultStateDir(env: Env): string {
  if (isRoot()) return "/var/lib/alive-codex";
  return path.join(env.XDG_STATE_HOME ?? path.join(os.homedir(), ".local", "state"), "alive-codex");
}

/** Where the RPC server listens and where the sidecar keeps its state. */
export const SOCKET_SETTINGS: readonly AnySetting[] = [
  setting({
    key: "socketPath",
    env: "ALIVE_CODEX_SOCKET",
    flag: "--socket",
    parse: parseAbsolutePath,
    default: defaultSocketPath,
    client: true,
    defaultText: "/run/alive-codex/sidecar.sock as root, else $XDG_RUNTIME_DIR/alive-codex.sock",
    description: "Unix socket the RPC server listens on (mode 0660).",
  }),
  setting({
    key: "socketGroup",
    env: "ALIVE_CODEX_SOCKET_GROUP",
    flag: "--socket-group",
    parse: names(64),
    default: null,
    description: "Group name or gid given to the socket, so Alive's server can connect without root.",
  }),
  setting({
    key: "stateDir",
    env: "ALIVE_CODEX_STATE_DIR",
    flag: "--state-dir",
    parse: parseAbsolutePath,
    default: defaultStateDir,
    defaultText: "/var/lib/alive-codex as root, else $XDG_STATE_HOME/alive-codex",
    description: "Absolute directory for per-workspace HOME and TMPDIR (workspaces/<id>/home, tmp).",
  }),
];

export const METRICS_SETTINGS: readonly AnySetting[] = [
  setting({
    key: "metricsListen",
    env: "ALIVE_CODEX_METRICS_LISTEN",
    flag: "--metrics-listen",
    parse: parseListenAddress,
    default: null,
    defaultText: "(off)",
    description:
      "host:port to serve Prometheus metrics on (GET /metrics), e.g. 127.0.0.1:9464 (port 0: any free port, logged). No authentication: keep it on loopback or a private network.",
  }),
];

/** The engine the sidecar drives, its log level and the labels on what it makes. */
export const ENGINE_SETTINGS: readonly AnySetting[] = [
  setting({
    key: "dockerHost",
    env: "DOCKER_HOST",
    flag: "--docker-host",
    parse: parseDockerHost,
    default: "unix:///var/run/docker.sock",
    description: "Docker Engine endpoint (unix:// socket path, or tcp://host:port).",
  }),
  setting({
    key: "logLevel",
    env: "ALIVE_CODEX_LOG_LEVEL",
    flag: "--log-level",
    parse: (name, raw) => parseOneOf<LogLevel>(name, raw, ["debug", "info", "warn", "error"]),
    default: "info",
    description: "debug, info, warn or error.",
  }),
  setting({
    key: "extraLabels",
    env: "ALIVE_CODEX_EXTRA_LABELS",
    flag: "--extra-labels",
    parse: parseLabels,
    default: () => ({}),
    description:
      "Docker labels added to every container and network the sidecar makes: key=value pairs separated by commas. Keys under dev.alive.codex. are the sidecar's own, except dev.alive.codex.run-id.",
  }),
];

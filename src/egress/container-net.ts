/**
 * The inside end of a workspace's network (the outside end is workspace-endpoints.ts): the
 * loopback ports its forwarders listen on, the sockets they reach, the env that points agent tools
 * at them, and the forwarder loop the container's main process runs.
 */

/** Loopback ports inside every workspace container (each has its own network namespace: no clash). */
export const NET_PORTS = { proxy: 3128, model: 3129, api: 3130 } as const;
export const NET_SOCKETS = { proxy: "proxy.sock", model: "model.sock", api: "api.sock" } as const;
/** Where the sockets are inside the container (the run dir is mounted read-only at /run/alive). */
export const CONTAINER_NET_DIR = "/run/alive/net";

/** Where the model proxy forwards when OPENAI_BASE_URL is not set. */
export const OPENAI_API_BASE_URL = "https://api.openai.com/v1";

/** codex's model base URL inside: the model proxy, through the forwarder. */
export const MODEL_BASE_URL = `http://127.0.0.1:${NET_PORTS.model}/v1`;
const PROXY_URL = `http://127.0.0.1:${NET_PORTS.proxy}`;

/** ALIVE_API_URL as a workspace sees it: the same path on the loopback port Alive's API is forwarded from. */
export function insideApiUrl(aliveApiUrl: string): string {
  const url = new URL(aliveApiUrl);
  return `http://127.0.0.1:${NET_PORTS.api}${url.pathname === "/" ? "" : url.pathname}${url.search}`;
}

/** Proxy variables curl, git, npm and pip honour; loopback (the model and Alive's API) goes direct. */
export function proxyEnv(): Record<string, string> {
  const noProxy = "127.0.0.1,localhost,::1";
  return {
    HTTP_PROXY: PROXY_URL,
    HTTPS_PROXY: PROXY_URL,
    http_proxy: PROXY_URL,
    https_proxy: PROXY_URL,
    NO_PROXY: noProxy,
    no_proxy: noProxy,
  };
}

/** The ports forwarded into a workspace container and the socket each reaches; Alive's API only when the sidecar has one. */
export function forwardedPorts(withApi: boolean): Array<[number, string]> {
  return [
    [NET_PORTS.proxy, NET_SOCKETS.proxy],
    [NET_PORTS.model, NET_SOCKETS.model],
    ...(withApi ? [[NET_PORTS.api, NET_SOCKETS.api] as [number, string]] : []),
  ];
}

/**
 * One forwarder's command line: socat listens on loopback and passes each connection to the socket
 * (forking a child per connection, which shows the same command line).
 */
export function forwarderCommand(port: number, socket: string): string[] {
  return ["socat", `TCP-LISTEN:${port},bind=127.0.0.1,reuseaddr,fork`, `UNIX-CONNECT:${CONTAINER_NET_DIR}/${socket}`];
}

/** What a forwarder's loop runs before it starts socat again. */
export const FORWARDER_RESTART_WAIT = ["sleep", "1"] as const;

/**
 * Shell lines that start one forwarder per port in the background, each in a loop that restarts
 * one that exits (a tenant process of the same uid can kill it; it then cuts off only its own
 * workspace, for a second).
 */
export function forwarderScript(withApi: boolean): string {
  const forward = (port: number, socket: string): string =>
    `(while :; do ${forwarderCommand(port, socket).join(" ")} 2>/dev/null; ${FORWARDER_RESTART_WAIT.join(" ")}; done) &`;
  return forwardedPorts(withApi)
    .map(([port, socket]) => forward(port, socket))
    .join("\n");
}

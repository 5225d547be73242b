/**
 * `secrets` of workspace.ensure and turn.run, validated at the edge: -32602 naming the field for a
 * host that is not a host, a header that is not an HTTP token (or one the proxy owns), a value with
 * CR, LF or NUL, an env name that is not one or is the sidecar's, a duplicate, or too many. Whether
 * the workspace's egress policy allows each host is the service's check (it knows the policy).
 * No error message holds a value.
 */
import { invalidParams } from "../errors.js";
import { parseBindingHost } from "../policy/binding-host.js";
import type { SecretBinding } from "../service.js";
import { expectObject, expectString, has, requireField } from "./param-checks.js";

export const SECRET_LIMITS = { bindings: 32, valueBytes: 8192, headerLength: 256, envLength: 128 } as const;

/** RFC 9110 token characters. */
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** Headers the proxy itself decides (framing, routing, hop-by-hop). */
const PROXY_HEADERS = new Set([
  "host",
  "content-length",
  "transfer-encoding",
  "connection",
  "keep-alive",
  "upgrade",
  "te",
  "trailer",
  "expect",
  "proxy-authorization",
  "proxy-authenticate",
  "proxy-connection",
]);
/** Variables the container's env or codex's own depend on: a placeholder must not shadow them. */
const RESERVED_ENV = new Set([
  "PATH",
  "HOME",
  "TMPDIR",
  "SHELL",
  "USER",
  "LOGNAME",
  "LANG",
  "TERM",
  "PWD",
  "HTTP_PROXY",
  "HTTPS_PROXY",
  "NO_PROXY",
  "http_proxy",
  "https_proxy",
  "no_proxy",
  "SSL_CERT_FILE",
  "NODE_EXTRA_CA_CERTS",
  "GIT_SSL_CAINFO",
  "REQUESTS_CA_BUNDLE",
  "CURL_CA_BUNDLE",
]);

function parseBinding(value: unknown, field: string): SecretBinding {
  const fields = expectObject(value, field);
  for (const key of Object.keys(fields))
    if (!["host", "header", "value", "env"].includes(key))
      throw invalidParams(`${field}.${key}`, "is not a field of a secret binding (host, header, value, env)");
  const host = expectString(requireField(fields, "host", `${field}.host`), `${field}.host`);
  if (parseBindingHost(host) === null)
    throw invalidParams(`${field}.host`, "must be a host name or IP literal, optionally with :port", host);
  const header = expectString(requireField(fields, "header", `${field}.header`), `${field}.header`);
  if (header.length > SECRET_LIMITS.headerLength || !TOKEN.test(header))
    throw invalidParams(`${field}.header`, "must be an HTTP header name (a token)");
  if (PROXY_HEADERS.has(header.toLowerCase()))
    throw invalidParams(`${field}.header`, `is one the proxy sets itself (${header.toLowerCase()})`);
  // The value is never echoed: not in the message, not as the error's value.
  const secret = requireField(fields, "value", `${field}.value`);
  if (typeof secret !== "string" || secret.length === 0)
    throw invalidParams(`${field}.value`, "must be a non-empty string");
  if (Buffer.byteLength(secret) > SECRET_LIMITS.valueBytes)
    throw invalidParams(`${field}.value`, `must be at most ${SECRET_LIMITS.valueBytes} bytes`);
  if (/[\r\n\0]/.test(secret)) throw invalidParams(`${field}.value`, "must not hold CR, LF or NUL");
  const out: SecretBinding = { host, header, value: secret };
  if (has(fields, "env")) {
    const env = expectString(fields.env, `${field}.env`);
    if (env.length > SECRET_LIMITS.envLength || !ENV_NAME.test(env))
      throw invalidParams(`${field}.env`, "must be an environment variable name", env);
    if (RESERVED_ENV.has(env) || /^(ALIVE_|CODEX_)/.test(env))
      throw invalidParams(`${field}.env`, "is a variable the sidecar or codex sets", env);
    out.env = env;
  }
  return out;
}

/** A `secrets` array: at most SECRET_LIMITS.bindings, no host:port or env named twice. */
export function parseSecretBindings(value: unknown, field = "secrets"): SecretBinding[] {
  if (!Array.isArray(value)) throw invalidParams(field, "must be an array of secret bindings");
  if (value.length > SECRET_LIMITS.bindings)
    throw invalidParams(field, `must hold at most ${SECRET_LIMITS.bindings} bindings`);
  const bindings = value.map((entry, i) => parseBinding(entry, `${field}[${i}]`));
  const hosts = new Set<string>();
  const envs = new Set<string>();
  bindings.forEach((binding, i) => {
    const { host, port } = parseBindingHost(binding.host)!;
    const key = `${host}:${port}`;
    if (hosts.has(key)) throw invalidParams(`${field}[${i}].host`, `binds ${key} a second time`, binding.host);
    hosts.add(key);
    if (binding.env !== undefined) {
      if (envs.has(binding.env))
        throw invalidParams(`${field}[${i}].env`, "names a variable a second time", binding.env);
      envs.add(binding.env);
    }
  });
  return bindings;
}

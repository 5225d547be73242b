/**
 * The settings of the egress proxy a workspace reaches out through: its default policy, the
 * destinations it treats as internal or as the host, its name lookups, ports and connection bounds.
 */
import { ConfigError, parseAbsolutePath, parseDuration } from "../shared/setting-parsers.js";
import {
  parseDnsServersSetting,
  parseEgressSetting,
  parseHostAddressesSetting,
  parseInternalSetting,
  parsePortsSetting,
} from "../policy/egress-settings.js";
import { integers, setting, type AnySetting } from "./setting-spec.js";

function parseDnsTimeout(name: string, raw: string): number {
  const value = parseDuration(name, raw);
  if (value < 100 || value > 60_000) throw new ConfigError(name, raw, "a duration from 100ms to 60s");
  return value;
}

/** A duration above 0: what it bounds always has a bound. */
function parsePositiveDuration(name: string, raw: string): number {
  const value = parseDuration(name, raw);
  if (value === 0) throw new ConfigError(name, raw, "a duration above 0, such as 90s, 5m or 1h");
  return value;
}

export const EGRESS_SETTINGS: readonly AnySetting[] = [
  setting({
    key: "defaultEgress",
    env: "ALIVE_CODEX_EGRESS",
    flag: "--egress",
    parse: parseEgressSetting,
    default: "public",
    description:
      'Egress policy of a workspace that names none: "public" (HTTP/HTTPS to any public destination through the sidecar\'s proxy), "model" (the model API only) or JSON {"allow":["example.com","*.example.org"],"deny":[...]}.',
  }),
  setting({
    key: "internalDestinations",
    env: "ALIVE_CODEX_INTERNAL_DESTINATIONS",
    flag: "--internal-destinations",
    parse: parseInternalSetting,
    default: () => [],
    defaultText: "ALIVE_API_URL's origin",
    description:
      "Comma-separated http(s) origins or host:port pairs: the only private destinations the egress proxy ever connects to, in every policy. ALIVE_API_URL's origin is always one.",
  }),
  setting({
    key: "hostAddresses",
    env: "ALIVE_CODEX_HOST_ADDRESSES",
    flag: "--host-addresses",
    parse: parseHostAddressesSetting,
    default: "",
    defaultText: "(none: the host's interfaces only)",
    description:
      "Comma-separated IP addresses and CIDR networks (e.g. 203.0.113.7,198.51.100.0/28) that are the host's too, though its interfaces do not show them: a public address NATed to it, the address compose or Docker publishes ports on. The egress proxy refuses them as host_address, like the host's own interface addresses, so a workspace cannot reach the host's services through them. Networks no wider than /8 (IPv4) or /16 (IPv6).",
  }),
  setting({
    key: "dnsTimeoutMs",
    env: "ALIVE_CODEX_DNS_TIMEOUT",
    flag: "--dns-timeout",
    parse: parseDnsTimeout,
    default: "5s",
    description:
      "Deadline of each name lookup the egress proxy makes for a workspace (100ms to 60s), waiting for a lookup slot included; past it the lookup is cancelled and the request answered 502 dns_failed. Lookups use the sidecar's own DNS client (c-ares), not getaddrinfo, after the hosts file.",
  }),
  setting({
    key: "dnsPerWorkspace",
    env: "ALIVE_CODEX_DNS_PER_WORKSPACE",
    flag: "--dns-per-workspace",
    parse: integers(1, 64),
    default: "4",
    description:
      "Name lookups one workspace may have in flight at once; 4× as many more wait in line, and past that a request is answered 429 dns_busy at once. One workspace asking for names that never answer cannot hold up another's lookups.",
  }),
  setting({
    key: "dnsMax",
    env: "ALIVE_CODEX_DNS_MAX",
    flag: "--dns-max",
    parse: integers(1, 4096),
    default: "64",
    description:
      "Name lookups in flight for all workspaces together; past it lookups wait, and a freed slot goes to the waiting workspaces in turn. At least ALIVE_CODEX_DNS_PER_WORKSPACE. The model API's name has its own resolver and is not counted.",
  }),
  setting({
    key: "dnsServers",
    env: "ALIVE_CODEX_DNS_SERVERS",
    flag: "--dns-servers",
    parse: parseDnsServersSetting,
    default: null,
    defaultText: "(the nameservers of /etc/resolv.conf)",
    description:
      "Comma-separated DNS servers the sidecar asks, each an IP address with an optional port (10.0.0.2, 127.0.0.1:5353, [fd00::53]:53), for the egress proxy and the model API's name. resolv.conf's search list applies either way.",
  }),
  setting({
    key: "upstreamCaFile",
    env: "ALIVE_CODEX_UPSTREAM_CA",
    flag: "--upstream-ca",
    parse: parseAbsolutePath,
    default: null,
    defaultText: "(none: the system roots only)",
    description:
      'A PEM bundle of further certificate authorities the egress proxy trusts when it brokers a credential to a host (workspace.ensure secrets: it opens its own TLS connection to the host), e.g. those of internal destinations with a private CA. Read at start; one that holds no certificate is refused. See docs/security.md, "Brokered credentials".',
  }),
  setting({
    key: "hostsFile",
    env: "ALIVE_CODEX_HOSTS_FILE",
    flag: "--hosts-file",
    parse: parseAbsolutePath,
    default: "/etc/hosts",
    description:
      "The hosts file read before any DNS query (re-read within a second when it changes). localhost and names under .localhost are loopback unless it lists them.",
  }),
  setting({
    key: "egressPorts",
    env: "ALIVE_CODEX_EGRESS_PORTS",
    flag: "--egress-ports",
    parse: parsePortsSetting,
    default: "443,80",
    description:
      "Comma-separated ports the egress proxy connects to, for CONNECT tunnels and http:// requests alike; any other is refused with 403 port_not_allowed (SMTP, SSH and the like would otherwise leave from the host's address). An internal destination (ALIVE_CODEX_INTERNAL_DESTINATIONS) keeps its own port.",
  }),
  setting({
    key: "proxyConnectionsPerWorkspace",
    env: "ALIVE_CODEX_PROXY_CONNECTIONS_PER_WORKSPACE",
    flag: "--proxy-connections-per-workspace",
    parse: integers(1, 100_000),
    default: "256",
    description:
      "Connections a workspace may hold open on each of its sockets (the egress proxy, the model proxy, Alive's API); also its tunnels plus forwarded http:// requests through the egress proxy, and its requests to Alive's API in flight. Past it a new one is answered 429 with x-alive-egress-error: too_many_connections and closed; other workspaces are not affected. workspace.list shows each workspace's counts (network.connections).",
  }),
  setting({
    key: "proxyConnectionsTotal",
    env: "ALIVE_CODEX_PROXY_CONNECTIONS_TOTAL",
    flag: "--proxy-connections-total",
    parse: integers(1, 10_000_000),
    default: "8192",
    description:
      "Connections the sidecar's proxies hold across every workspace: each connection accepted on a workspace's socket and each tunnel or forwarded request upstream counts one (about one open file each). Past it a new one is answered 503 sidecar_at_capacity. Apart from this, new connections, turns and ensures are refused (503 sidecar_overloaded, -32007) while the sidecar's own open files are above 90 % of its limit, which it raises to the hard limit at start-up.",
  }),
  setting({
    key: "tunnelIdleTimeoutMs",
    env: "ALIVE_CODEX_TUNNEL_IDLE_TIMEOUT",
    flag: "--tunnel-idle-timeout",
    parse: parsePositiveDuration,
    default: "5m",
    description:
      "A CONNECT tunnel or forwarded http:// request through the egress proxy is closed (both ends) after this long without a byte either way. Units: ms, s, m, h.",
  }),
  setting({
    key: "tunnelMaxLifetimeMs",
    env: "ALIVE_CODEX_TUNNEL_MAX_LIFETIME",
    flag: "--tunnel-max-lifetime",
    parse: parsePositiveDuration,
    default: "1h",
    description:
      "A CONNECT tunnel or forwarded http:// request through the egress proxy is closed (both ends) once this old, whatever passes. Units: ms, s, m, h.",
  }),
];

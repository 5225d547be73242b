/**
 * Credential brokering for the egress proxies (docs/security.md, "Brokered credentials"): the
 * sidecar's CA (kept in `<stateDir>/broker/`, made at first start, key 0600), the leaf
 * certificates it mints for bound hosts, what upstreams are verified against (the system roots and
 * ALIVE_CODEX_UPSTREAM_CA), and the takeover of a CONNECT to a bound host (broker/intercept.ts).
 * Every other host stays a plain tunnel: its client sees the upstream's own certificate.
 */
import path from "node:path";
import type { Logger } from "../log.js";
import type { Target } from "./destination.js";
import type { TunnelTakeover } from "./proxy-options.js";
import type { AppliedBinding } from "./secret-bindings.js";
import { BrokerCa } from "./broker/broker-ca.js";
import { LeafMinter } from "./broker/leaf-minter.js";
import { interceptTunnel } from "./broker/intercept.js";
import { createUpstreamTrust, trustBundleText, type UpstreamTrust } from "./broker/trust.js";

export class TunnelBroker {
  private constructor(
    private readonly ca: BrokerCa,
    private readonly leaves: LeafMinter,
    private readonly upstreamTrust: UpstreamTrust,
  ) {}

  /** Opens (or makes) the CA under `<stateDir>/broker`; `upstreamCaPem` is ALIVE_CODEX_UPSTREAM_CA's text. */
  static async open(stateDir: string, upstreamCaPem: string | null): Promise<TunnelBroker> {
    const ca = await BrokerCa.open(path.join(stateDir, "broker"));
    return new TunnelBroker(ca, new LeafMinter(ca), createUpstreamTrust(upstreamCaPem ?? undefined));
  }

  /** What a workspace's TLS clients trust: the system roots and the CA (workspace/trust-bundle.ts). */
  get trustBundlePem(): string {
    return trustBundleText(this.ca.certPem);
  }

  /** The takeover of a tunnel to `target` with `binding` applied; its leaf is minted first (cached). */
  async takeover(target: Target, binding: AppliedBinding, log: Logger): Promise<TunnelTakeover> {
    const leaf = await this.leaves.mint(target.host);
    return (client, upstream, head) =>
      void interceptTunnel({
        client,
        upstream,
        head,
        target,
        leaf,
        upstreamTrust: this.upstreamTrust,
        binding: {
          header: binding.header,
          value: binding.value,
          ...(binding.placeholder ? { placeholder: binding.placeholder } : {}),
        },
        onRequest: binding.touched,
        log,
      });
  }
}

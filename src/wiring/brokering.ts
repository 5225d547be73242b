/**
 * What brokers a workspace's credentials (docs/security.md, "Brokered credentials"), wired for the
 * proxies and the turns: the secret bindings in force, Alive's API tokens, the broker that takes
 * over a CONNECT to a bound host (its CA in the state dir), and the trust bundle codex's commands
 * use. No credential is in a container: codex gets placeholders.
 */
import { promises as fs } from "node:fs";
import type { SidecarConfig } from "../config.js";
import { errorMessage } from "../errors.js";
import { ApiTokens } from "../egress/api-tokens.js";
import { SecretBindings } from "../egress/secret-bindings.js";
import { TunnelBroker } from "../egress/tunnel-broker.js";
import type { BrokeredEnv } from "../turns/codex-thread.js";
import { turnSecrets, type TurnSecrets } from "../turns/turn-secrets.js";
import { TrustBundle } from "../workspace/trust-bundle.js";

export interface Brokering {
  secrets: SecretBindings;
  apiTokens: ApiTokens;
  broker: TunnelBroker;
  /** For the turns: ALIVE_MCP_TOKEN holds a placeholder, never the operator's token. */
  turns: { aliveMcpToken: null; brokered: BrokeredEnv; trustBundle: TrustBundle; turnSecrets: TurnSecrets };
}

export async function openBrokering(
  config: Pick<SidecarConfig, "stateDir" | "upstreamCaFile" | "aliveMcpToken" | "internalDestinations" | "egressPorts">,
  onBrokeredRequest: () => void,
): Promise<Brokering> {
  let upstreamCa: string | null = null;
  if (config.upstreamCaFile !== null) {
    try {
      upstreamCa = await fs.readFile(config.upstreamCaFile, "utf8");
    } catch (error) {
      throw new Error(`ALIVE_CODEX_UPSTREAM_CA: cannot read ${config.upstreamCaFile}: ${errorMessage(error)}`, {
        cause: error,
      });
    }
  }
  const broker = await TunnelBroker.open(config.stateDir, upstreamCa);
  const secrets = new SecretBindings(onBrokeredRequest);
  const apiTokens = new ApiTokens(config.aliveMcpToken);
  return {
    secrets,
    apiTokens,
    broker,
    turns: {
      aliveMcpToken: null,
      brokered: {
        apiTokenPlaceholder: (workspaceId) => apiTokens.credential(workspaceId)?.placeholder ?? null,
        secretPlaceholders: (workspaceId) => secrets.placeholders(workspaceId),
      },
      trustBundle: new TrustBundle(broker.trustBundlePem),
      turnSecrets: turnSecrets(secrets, { internal: config.internalDestinations, ports: config.egressPorts }),
    },
  };
}

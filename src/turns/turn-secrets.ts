/**
 * A turn's own secret bindings (turn.run `secrets`): the runner checks them against the egress the
 * turn will have in force before it starts, and they are in force (egress/secret-bindings.ts) while
 * it runs, on top of the workspace's.
 */
import type { SecretBinding } from "../service.js";
import type { EgressPolicy } from "../policy/egress-policy.js";
import type { InternalDestination } from "../policy/internal-destinations.js";
import { checkBindingHosts } from "../policy/binding-host.js";
import type { SecretBindings } from "../egress/secret-bindings.js";

export /** Where a turn's secret bindings go (egress/secret-bindings.ts) and what their hosts must pass. */
interface TurnSecrets {
  /** -32602 naming `secrets[i].host` for a host the turn's egress would refuse. */
  check(bindings: readonly SecretBinding[], policy: EgressPolicy): void;
  set(workspaceId: string, bindings: readonly SecretBinding[] | null): void;
}

/** The turns' side of the bindings in force, with the operator's internal destinations and ports. */
export function turnSecrets(
  store: Pick<SecretBindings, "setTurn">,
  rules: { internal: readonly InternalDestination[]; ports: readonly number[] },
): TurnSecrets {
  return {
    check: (bindings, policy) => checkBindingHosts(bindings, { policy, ...rules }),
    set: (workspaceId, bindings) => store.setTurn(workspaceId, bindings),
  };
}

/**
 * A labelled bridge network with inter-container traffic off. Workspace containers have no network
 * of their own any more (docs/security.md); what needs a bridge is the sidecar's own container
 * under compose and the test runner's stand-ins on a gateway address.
 */
import type { Docker } from "./engine.js";
import { withDocker } from "./engine.js";
import { Labels } from "./labels.js";

/** Creates the bridge (inter-container traffic off) unless it exists; returns its gateway. */
export async function ensureBridgeNetwork(
  docker: Docker,
  name: string,
  extraLabels: Record<string, string> = {},
): Promise<{ id: string; gateway: string | null }> {
  const inspect = async (): Promise<{ id: string; gateway: string | null }> => {
    const info = (await docker.getNetwork(name).inspect()) as {
      Id: string;
      IPAM?: { Config?: Array<{ Gateway?: string }> };
    };
    return { id: info.Id, gateway: info.IPAM?.Config?.find((c) => c.Gateway)?.Gateway ?? null };
  };
  const existing = await withDocker(`inspect network ${name}`, inspect, { ignore: [404] });
  if (existing !== undefined) return existing;
  await withDocker(
    `create network ${name}`,
    () =>
      docker.createNetwork({
        Name: name,
        Driver: "bridge",
        CheckDuplicate: true,
        Labels: { ...extraLabels, [Labels.managed]: "true" },
        Options: { "com.docker.network.bridge.enable_icc": "false" },
      }),
    { ignore: [409] },
  );
  return withDocker(`inspect network ${name}`, inspect);
}

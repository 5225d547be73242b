/** The dedicated bridge for workspace containers. */
import type { Docker } from "../docker/engine.js";
import { withDocker } from "../docker/engine.js";
import { Labels } from "../docker/labels.js";

/** Creates the workspace bridge (inter-container traffic off) unless it exists; returns its gateway. */
export async function ensureWorkspaceNetwork(docker: Docker, name: string, extraLabels: Record<string, string> = {}): Promise<{ id: string; gateway: string | null }> {
  const inspect = async (): Promise<{ id: string; gateway: string | null }> => {
    const info = (await docker.getNetwork(name).inspect()) as { Id: string; IPAM?: { Config?: Array<{ Gateway?: string }> } };
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

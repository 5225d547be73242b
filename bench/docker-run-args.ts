/**
 * The `docker run` argv equivalent to a workspace container's create options (buildWorkspaceSpec),
 * so the CLI baseline starts exactly the container the sidecar would. A create option this
 * translation does not know is an error: a silently dropped option would make the comparison unfair.
 */
import type { ContainerCreateOptions, HostConfig } from "dockerode";

const CONFIG_KEYS = new Set([
  "name",
  "Image",
  "Entrypoint",
  "Cmd",
  "User",
  "Env",
  "WorkingDir",
  "StopTimeout",
  "Labels",
  "HostConfig",
]);
const HOST_CONFIG_KEYS = new Set([
  "Init",
  "Mounts",
  "ReadonlyRootfs",
  "Tmpfs",
  "CapDrop",
  "SecurityOpt",
  "PidsLimit",
  "Memory",
  "MemorySwap",
  "NanoCpus",
  "CpuPeriod",
  "CpuQuota",
  "Ulimits",
  "LogConfig",
  "NetworkMode",
  "IpcMode",
  "RestartPolicy",
  "Runtime",
]);

/** Arguments after `docker run -d`: flags, the image, then the command's arguments. */
export function dockerRunArgs(options: ContainerCreateOptions): string[] {
  const unknown = [
    ...Object.keys(options).filter((key) => !CONFIG_KEYS.has(key)),
    ...Object.keys(options.HostConfig ?? {})
      .filter((key) => !HOST_CONFIG_KEYS.has(key))
      .map((key) => `HostConfig.${key}`),
  ];
  if (unknown.length > 0)
    throw new Error(`dockerRunArgs: no CLI translation for create option(s) ${unknown.join(", ")}`);
  if (options.Image === undefined) throw new Error("dockerRunArgs: the create options have no Image");

  const args: string[] = [];
  const add = (...items: string[]): void => {
    args.push(...items);
  };
  if (options.name !== undefined) add("--name", options.name);
  if (options.User !== undefined) add("--user", options.User);
  if (options.WorkingDir !== undefined) add("--workdir", options.WorkingDir);
  if (options.StopTimeout !== undefined) add("--stop-timeout", String(options.StopTimeout));
  for (const entry of options.Env ?? []) add("--env", entry);
  for (const [key, value] of Object.entries(options.Labels ?? {})) add("--label", `${key}=${value}`);
  const entrypoint =
    options.Entrypoint === undefined
      ? []
      : typeof options.Entrypoint === "string"
        ? [options.Entrypoint]
        : options.Entrypoint;
  if (entrypoint.length > 1)
    throw new Error("dockerRunArgs: an entrypoint with arguments has no single --entrypoint equivalent");
  if (entrypoint[0] !== undefined) add("--entrypoint", entrypoint[0]);
  args.push(...hostConfigArgs(options.HostConfig ?? {}));
  add(options.Image);
  const cmd = options.Cmd === undefined ? [] : typeof options.Cmd === "string" ? [options.Cmd] : options.Cmd;
  add(...cmd);
  return args;
}

function hostConfigArgs(host: HostConfig): string[] {
  const args: string[] = [];
  if (host.Init) args.push("--init");
  if (host.ReadonlyRootfs) args.push("--read-only");
  for (const cap of host.CapDrop ?? []) args.push("--cap-drop", cap);
  for (const opt of host.SecurityOpt ?? []) args.push("--security-opt", opt);
  if (host.PidsLimit !== undefined && host.PidsLimit !== null) args.push("--pids-limit", String(host.PidsLimit));
  if (host.Memory !== undefined) args.push("--memory", `${host.Memory}b`);
  if (host.MemorySwap !== undefined) args.push("--memory-swap", `${host.MemorySwap}b`);
  if (host.NanoCpus !== undefined) args.push("--cpus", String(host.NanoCpus / 1e9));
  if (host.CpuPeriod !== undefined) args.push("--cpu-period", String(host.CpuPeriod));
  if (host.CpuQuota !== undefined) args.push("--cpu-quota", String(host.CpuQuota));
  for (const limit of host.Ulimits ?? []) args.push("--ulimit", `${limit.Name}=${limit.Soft}:${limit.Hard}`);
  if (host.LogConfig?.Type !== undefined) args.push("--log-driver", host.LogConfig.Type);
  for (const [key, value] of Object.entries(host.LogConfig?.Config ?? {}))
    args.push("--log-opt", `${key}=${String(value)}`);
  if (host.NetworkMode !== undefined) args.push("--network", host.NetworkMode);
  if (host.IpcMode !== undefined) args.push("--ipc", host.IpcMode);
  if (host.RestartPolicy?.Name !== undefined) args.push("--restart", host.RestartPolicy.Name);
  if (host.Runtime !== undefined) args.push("--runtime", host.Runtime);
  for (const mount of host.Mounts ?? []) {
    if (mount.Type !== "bind") throw new Error(`dockerRunArgs: mount type ${mount.Type} is not translated`);
    for (const part of [mount.Source, mount.Target]) {
      if (/[,"]/.test(part)) throw new Error(`dockerRunArgs: mount path ${part} needs CSV quoting`);
    }
    args.push("--mount", `type=bind,source=${mount.Source},target=${mount.Target}${mount.ReadOnly ? ",readonly" : ""}`);
  }
  for (const [target, opts] of Object.entries(host.Tmpfs ?? {}))
    args.push("--tmpfs", opts === "" ? target : `${target}:${opts}`);
  return args;
}

/** The settings both containers must share, from `docker inspect`, with per-workspace values masked. */
export interface ContainerShape {
  user: string;
  entrypoint: unknown;
  cmd: unknown;
  envNames: string[];
  labelKeys: string[];
  stopTimeout: unknown;
  host: Record<string, unknown>;
  mounts: string[];
}

/** The shape of an inspected container, for checking that the CLI made the same kind of container. */
export function containerShape(info: {
  Config: Record<string, unknown>;
  HostConfig: Record<string, unknown>;
}): ContainerShape {
  const config = info.Config as {
    User?: string;
    Entrypoint?: unknown;
    Cmd?: unknown;
    Env?: string[];
    Labels?: Record<string, string>;
    StopTimeout?: unknown;
  };
  const host = info.HostConfig as Record<string, unknown> & {
    Mounts?: Array<{ Type?: string; Target?: string; ReadOnly?: boolean }>;
  };
  const pick = [
    "Init",
    "ReadonlyRootfs",
    "CapDrop",
    "SecurityOpt",
    "PidsLimit",
    "Memory",
    "MemorySwap",
    "NanoCpus",
    "CpuPeriod",
    "CpuQuota",
    "Ulimits",
    "LogConfig",
    "NetworkMode",
    "IpcMode",
    "RestartPolicy",
    "Runtime",
    "Tmpfs",
    "Privileged",
    "CapAdd",
  ];
  return {
    user: config.User ?? "",
    entrypoint: config.Entrypoint ?? null,
    cmd: config.Cmd ?? null,
    envNames: (config.Env ?? []).map((entry) => entry.split("=", 1)[0] ?? "").sort(),
    labelKeys: Object.keys(config.Labels ?? {}).sort(),
    stopTimeout: config.StopTimeout ?? null,
    host: Object.fromEntries(pick.map((key) => [key, host[key] ?? null])),
    // The first mount is the workspace itself, whose path differs per workspace.
    mounts: (host.Mounts ?? []).map(
      (m, i) => `${m.Type}:${i === 0 ? "<workspace>" : m.Target}:${m.ReadOnly ? "ro" : "rw"}`,
    ),
  };
}

/** Names of the fields where two shapes differ (empty: the same container settings). */
export function shapeDifferences(a: ContainerShape, b: ContainerShape): string[] {
  const differences: string[] = [];
  for (const key of Object.keys(a) as Array<keyof ContainerShape>) {
    if (key === "host") {
      for (const hostKey of Object.keys(a.host)) {
        if (JSON.stringify(a.host[hostKey]) !== JSON.stringify(b.host[hostKey]))
          differences.push(`HostConfig.${hostKey}`);
      }
    } else if (JSON.stringify(a[key]) !== JSON.stringify(b[key])) {
      differences.push(key);
    }
  }
  return differences;
}

/** sidecar.health's answer: the versions, the engine, the image, the counts and the disk enforcement. */

/** How the sidecar bounds each workspace's disk: "image" (a loop-mounted filesystem image per workspace) or "none". */
export interface DiskHealth {
  /** The enforcement in force. */
  enforcement: "image" | "none";
  /** Workspace disks attached (mounted) now. */
  attached: number;
  /** The operator's ALIVE_CODEX_DISK: with "auto", `enforcement` is what start-up chose for this host. */
  requested?: "auto" | "image" | "off";
  /** With "auto" settled on "none": what the host lacks for disk limits, each naming how to get it. */
  missing?: string[];
}

/** The codex CLI the workspaces run (sidecar.health's `codex`; docs/image.md, "Codex version"). */
export interface CodexHealth {
  /** As found in the runtime image (its dev.alive.codex.codex-version label, else its /opt/codex/codex-package.json); null until the image is present and read. */
  version: string | null;
  /** ALIVE_CODEX_CODEX_VERSION, else the SDK's when the sidecar builds the image; null when ALIVE_CODEX_IMAGE names the image and no version is set. */
  requested: string | null;
  /** The @openai/codex version @openai/codex-sdk was released with (the default). */
  sdk: string;
  /** Whether the sidecar's core turn tests ran against `version` (else `requested`). */
  tested: boolean;
  /** Flags the sidecar adds to every `codex exec` for this version. */
  flags: string[];
}

export interface HealthResult {
  version: string;
  /** The codex version the workspaces run: `codex.version` when found, else `codex.requested`, else the SDK's. */
  codexVersion: string;
  /** Extension: the codex CLI in detail. */
  codex?: CodexHealth;
  docker: { reachable: boolean; serverVersion?: string };
  image: { ref: string; present: boolean };
  workspaces: { running: number; total: number };
  turns: { running: number; detached: number };
  disk?: DiskHealth;
}

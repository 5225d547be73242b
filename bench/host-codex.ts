/**
 * The host baseline: the same codex build, driven by @openai/codex-sdk directly on the host, with the
 * codex configuration the sidecar passes (buildCodexConfig), a temp HOME/CODEX_HOME and work dir.
 */
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { join } from "node:path";
import { Codex, type Thread } from "@openai/codex-sdk";
import { buildCodexConfig } from "../src/codex/config-overrides.js";
import { BENCH_API_KEY, BENCH_MODEL } from "./harness.js";

export interface HostCodex {
  /** A new thread in the host sandbox, with the thread options the sidecar uses. */
  startThread(): Thread;
  /** The HOME codex runs with (CODEX_HOME is its .codex). */
  home: string;
  dispose(): Promise<void>;
}

export async function createHostCodex(parentDir: string, baseUrl: string): Promise<HostCodex> {
  const root = await mkdtemp(join(parentDir, "host-codex-"));
  const home = join(root, "home");
  const work = join(root, "work");
  await mkdir(join(home, ".codex"), { recursive: true });
  await mkdir(work);
  const codex = new Codex({
    env: {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      HOME: home,
      CODEX_HOME: join(home, ".codex"),
      CODEX_API_KEY: BENCH_API_KEY,
    },
    config: buildCodexConfig({ modelBaseUrl: baseUrl, sessionEnvNames: [] }),
  });
  return {
    home,
    startThread: () =>
      codex.startThread({
        model: BENCH_MODEL,
        sandboxMode: "danger-full-access",
        approvalPolicy: "never",
        skipGitRepoCheck: true,
        workingDirectory: work,
      }),
    dispose: () => rm(root, { recursive: true, force: true }),
  };
}

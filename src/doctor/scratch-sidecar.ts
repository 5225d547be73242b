/**
 * What makes doctor's own sidecar a scratch one: the operator's settings with doctor's own dirs and
 * no secrets, a scripted model on loopback (its script here), and a workspace dir under doctor's
 * temporary root.
 */
import { randomBytes } from "node:crypto";
import { promises as fs } from "node:fs";
import path from "node:path";
import type { SidecarConfig } from "../config.js";
import type { WorkspaceParams } from "../service.js";
import { CHECK_OUTPUT, type TurnPlan } from "./turn-checks.js";
import type { ScriptedReply, ScriptedRequest } from "./scripted-model.js";

const TURN_PROMPT = "doctor: run the check command";
const CANCEL_PROMPT = "doctor: run the long command";
/** A model from codex's bundled catalog: an unknown one adds an error item to every turn. */
const DOCTOR_MODEL = "gpt-5.5";
/** The scripted model's turns: its prompts, and its answer carries the command's output. */
export const SCRIPTED_TURNS: TurnPlan = {
  checkPrompt: TURN_PROMPT,
  cancelPrompt: CANCEL_PROMPT,
  model: DOCTOR_MODEL,
  timeoutMs: 90_000,
  finalMustCarryOutput: true,
};

/** The scripted model: one command per prompt, then a message carrying its output. */
export function doctorScript(request: ScriptedRequest): ScriptedReply {
  const output = request.commandOutputs.at(-1);
  if (request.prompt.includes(CANCEL_PROMPT))
    return output === undefined
      ? { kind: "command", cmd: "sleep 1000" }
      : { kind: "message", text: "the long command ended" };
  if (output === undefined) return { kind: "command", cmd: `echo ${CHECK_OUTPUT}` };
  return {
    kind: "message",
    text: `the command printed: ${output.includes(CHECK_OUTPUT) ? CHECK_OUTPUT : output.slice(-200)}`,
  };
}

/** The operator's settings with doctor's own dirs, no secrets and nothing served. */
export function doctorConfig(operator: SidecarConfig, root: string, stateDir: string): SidecarConfig {
  return {
    ...operator,
    socketPath: path.join(root, "sidecar.sock"),
    stateDir,
    workspaceRoots: [path.join(root, "workspaces")],
    // The scripted model needs no key: the operator's never leaves for it.
    codexApiKey: null,
    codexApiKeyFile: null,
    aliveMcpToken: null,
    aliveApiUrl: null,
    metricsListen: null,
    idleTimeoutMs: 0,
    defaultModel: DOCTOR_MODEL,
  };
}

/** A workspace dir owned by the top of the configured ranges (the least likely to be a real account). */
export async function makeScratchSidecarWorkspace(config: SidecarConfig, root: string): Promise<WorkspaceParams> {
  const workspaceId = `doctor-${randomBytes(4).toString("hex")}`;
  const dir = path.join(root, "workspaces", workspaceId);
  await fs.mkdir(dir, { recursive: true, mode: 0o755 });
  const uid = config.uidRange.max;
  const gid = config.gidRange.max;
  await fs.chown(dir, uid, gid);
  return { workspaceId, userId: "alive-codex-doctor", uid, gid, workspacePath: dir };
}

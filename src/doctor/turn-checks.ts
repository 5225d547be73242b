/**
 * doctor's turn checks, through the sidecar like any client: a turn whose command runs in the
 * container and whose output comes back, and a turn cancelled mid-command that leaves no process.
 */
import { randomBytes } from "node:crypto";
import type { EnginePort } from "../docker/engine-port.js";
import type { RunTurnParams, TurnResult, WorkspaceParams } from "../service.js";
import { CheckFailure, type DoctorService } from "./check-runner.js";
import { turnProcesses } from "./container-probes.js";

export const CHECK_OUTPUT = "doctor-ok";
const CANCEL_DEADLINE_MS = 10_000;

/** How doctor's turns are asked for: the prompts, the model (absent: the sidecar's default), and what the answer must show. */
export interface TurnPlan {
  checkPrompt: string;
  cancelPrompt: string;
  model?: string;
  timeoutMs: number;
  /** The scripted model echoes the output back; a real one may word its answer as it likes. */
  finalMustCarryOutput: boolean;
}

function runTurn(
  service: DoctorService,
  params: RunTurnParams,
  onEvent: (type: string, item?: { type: string }) => void = () => undefined,
): Promise<TurnResult> {
  return service.runTurn(params, {
    onEvent: (_turnId, _seq, event) => {
      if (event !== null) onEvent(event.type, "item" in event ? event.item : undefined);
    },
  });
}

function turnOptions(plan: TurnPlan): NonNullable<RunTurnParams["options"]> {
  return { ...(plan.model === undefined ? {} : { model: plan.model }), timeoutMs: plan.timeoutMs };
}

/** A turn whose model runs `echo doctor-ok` in the container: the command ran there and its output came back. */
export async function checkTurn(service: DoctorService, workspace: WorkspaceParams, plan: TurnPlan): Promise<string> {
  const result = await runTurn(service, {
    workspaceId: workspace.workspaceId,
    input: plan.checkPrompt,
    options: turnOptions(plan),
  });
  if (result.status !== "completed")
    throw new CheckFailure(`the turn ${result.status}: ${result.error?.message ?? "no reason given"}`);
  const command =
    result.items.find((item) => item.type === "command_execution" && item.aggregated_output.includes(CHECK_OUTPUT)) ??
    result.items.find((item) => item.type === "command_execution");
  if (command?.type !== "command_execution") throw new CheckFailure("the turn completed without running the command");
  if (command.exit_code !== 0 || !command.aggregated_output.includes(CHECK_OUTPUT)) {
    throw new CheckFailure(
      `\`${command.command}\` exited ${command.exit_code ?? "?"} with ${JSON.stringify(command.aggregated_output.slice(0, 200))}`,
    );
  }
  if (plan.finalMustCarryOutput && !result.finalResponse.includes(CHECK_OUTPUT))
    throw new CheckFailure(
      `the command's output did not reach the model: final message ${JSON.stringify(result.finalResponse.slice(0, 200))}`,
    );
  return `echo ${CHECK_OUTPUT} ran in the container and its output came back (${result.resources.wallMs} ms, ${result.tokens.input + result.tokens.output} tokens)`;
}

/** turn.cancel while the turn's model has `sleep 1000` running: the turn ends cancelled and no process of it is left. */
export async function checkCancel(
  service: DoctorService,
  engine: Pick<EnginePort, "exec">,
  workspace: WorkspaceParams,
  containerId: string,
  user: string,
  plan: TurnPlan,
): Promise<string> {
  const turnId = `doctor-cancel-${randomBytes(4).toString("hex")}`;
  let started = false;
  const turn = runTurn(
    service,
    { workspaceId: workspace.workspaceId, turnId, input: plan.cancelPrompt, options: turnOptions(plan) },
    (type, item) => {
      if (type === "item.started" && item?.type === "command_execution") started = true;
    },
  );
  let ended: TurnResult | null = null;
  void turn.then(
    (result) => (ended = result),
    () => undefined,
  );
  const deadline = Date.now() + 60_000;
  while (!(started && (await turnProcesses(engine, containerId, user)).some((p) => /sleep 1000/.test(p)))) {
    const over = ended as TurnResult | null;
    if (over !== null)
      throw new CheckFailure(
        `the turn ended ${over.status} before its command ran \`sleep 1000\`${over.error ? `: ${over.error.message}` : ""}`,
      );
    if (Date.now() > deadline) {
      await service.cancelTurn({ turnId }).catch(() => undefined);
      await turn.catch(() => undefined);
      throw new CheckFailure("the long command did not start within 60 s");
    }
    await sleep(100);
  }
  const cancelledAt = Date.now();
  await service.cancelTurn({ turnId });
  const result = await turn;
  if (result.status !== "cancelled") throw new CheckFailure(`the cancelled turn ended ${result.status}`);
  let left = await turnProcesses(engine, containerId, user);
  while (left.length > 0 && Date.now() - cancelledAt < CANCEL_DEADLINE_MS) {
    await sleep(100);
    left = await turnProcesses(engine, containerId, user);
  }
  if (left.length > 0)
    throw new CheckFailure(
      `${left.length} process(es) of the cancelled turn still run ${CANCEL_DEADLINE_MS / 1000} s after cancel: ${left.join(", ").slice(0, 300)}`,
    );
  return `turn.cancel during \`sleep 1000\`: no turn process left after ${Date.now() - cancelledAt} ms`;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

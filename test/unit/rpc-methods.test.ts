import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { METHODS, METHOD_TABLE, Method, type MethodParams, type MethodResult } from "../../src/rpc/methods.js";
import type { HealthResult, TurnResult } from "../../src/service.js";

// Compile-time: the client's types come from the descriptors.
const healthResult: MethodResult<"sidecar.health"> = {} as HealthResult;
const turnResult: MethodResult<"turn.run"> = {} as TurnResult;
const cancelParams: MethodParams<"turn.cancel"> = { turnId: "t-1" };
void [healthResult, turnResult, cancelParams];

describe("the method table", () => {
  it("answers exactly the protocol's methods, by their wire names", () => {
    assert.deepEqual([...METHOD_TABLE.keys()].sort(), [
      "sidecar.health",
      "turn.attach",
      "turn.cancel",
      "turn.get",
      "turn.list",
      "turn.run",
      "workspace.ensure",
      "workspace.list",
      "workspace.logs",
      "workspace.remove",
    ]);
    assert.deepEqual(Method, {
      health: "sidecar.health",
      ensureWorkspace: "workspace.ensure",
      listWorkspaces: "workspace.list",
      removeWorkspace: "workspace.remove",
      workspaceLogs: "workspace.logs",
      runTurn: "turn.run",
      cancelTurn: "turn.cancel",
      attachTurn: "turn.attach",
      getTurn: "turn.get",
      listTurns: "turn.list",
    });
  });

  it("cancels only turn.run when its client stops sending", () => {
    assert.deepEqual(
      [...METHOD_TABLE.values()].filter((m) => m.cancelOnEof).map((m) => m.name),
      [METHODS.runTurn.name],
    );
  });
});

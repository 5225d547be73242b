/**
 * When a turn narrows its workspace's egress, and so closes what was open before codex starts
 * (src/turns/turn-egress.ts). The close and the sweep against a real container are in
 * test/integration/egress.test.ts ("narrowing a turn's egress closes what earlier turns left open").
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import type { EnginePort } from "../../src/docker/engine-port.js";
import {
  EgressNarrowingError,
  closeBeforeNarrowedTurn,
  narrowsEgress,
  turnEgress,
} from "../../src/turns/turn-egress.js";
import { createLogger } from "../../src/log.js";
import type { WorkspaceRecord } from "../../src/workspace/record.js";

describe("a turn's egress", () => {
  test("workspace-write without network access narrows to the model API; everything else keeps the workspace's", () => {
    assert.equal(turnEgress({ sandboxMode: "workspace-write" }), "model");
    assert.equal(turnEgress({ sandboxMode: "workspace-write", networkAccessEnabled: false }), "model");
    assert.equal(turnEgress({ sandboxMode: "workspace-write", networkAccessEnabled: true }), null);
    assert.equal(turnEgress({ sandboxMode: "danger-full-access" }), null);
    assert.equal(turnEgress({ sandboxMode: "danger-full-access", networkAccessEnabled: false }), null);
    assert.equal(turnEgress({}), null, "the default sandbox is danger-full-access");
    assert.equal(turnEgress(undefined), null);
  });

  test("what was open is closed only when the turn takes away something the workspace's own policy allows", () => {
    assert.equal(narrowsEgress("public", "model"), true);
    assert.equal(narrowsEgress({ allow: ["example.com"], deny: [] }, "model"), true);
    assert.equal(
      narrowsEgress("model", "model"),
      false,
      "network none or egress model: nothing beyond the model API was open",
    );
    assert.equal(narrowsEgress("public", null), false);
    assert.equal(narrowsEgress({ allow: ["example.com"], deny: [] }, null), false);
  });

  test("tunnels that cannot be closed fail the turn before anything runs in the container", async () => {
    const lines: string[] = [];
    const log = createLogger({ level: "debug", write: (line) => lines.push(line) });
    const record = {
      params: { workspaceId: "ws-1", userId: "u", uid: 10001, gid: 10001, workspacePath: "/w" },
      containerId: "c".repeat(64),
    } as WorkspaceRecord;
    const asked: string[] = [];
    const options = {
      // Never reached: the sweep runs only after the tunnels are closed.
      engine: {} as EnginePort,
      onEgressNarrowed: (workspaceId: string): number => {
        asked.push(workspaceId);
        throw new Error("the endpoints are gone");
      },
    };
    await assert.rejects(
      closeBeforeNarrowedTurn(options, record, log, new AbortController().signal),
      (error: unknown) => {
        assert.ok(error instanceof EgressNarrowingError);
        assert.match(error.message, /could not be closed.*the endpoints are gone/);
        return true;
      },
    );
    assert.deepEqual(asked, ["ws-1"]);
    assert.ok(
      lines.some((line) => /"level":"error".*could not close the workspace's egress tunnels/.test(line)),
      lines.join("\n"),
    );
  });
});

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import type { EnginePort } from "../../src/docker/engine-port.js";
import { ErrorCode, SidecarError } from "../../src/errors.js";
import { createLogger } from "../../src/log.js";
import type { WorkspaceParams } from "../../src/service.js";
import { WorkspaceManager } from "../../src/workspace/manager.js";
import { checkUidHolder, findUidConflict, type UidHold } from "../../src/workspace/uid-holders.js";
import { unitManagerOptions } from "../support/fake-workspaces.js";
import { waitFor } from "../support/wait.js";

const hold = (workspaceId: string, userId: string, uid: number): UidHold => ({ workspaceId, userId, uid });

/** Asserts a -32602 naming uid, the uid received and the workspace that holds it. */
function isUidConflict(uid: number, heldBy: string): (error: unknown) => boolean {
  return (error) => {
    assert.ok(error instanceof SidecarError, String(error));
    assert.equal(error.code, ErrorCode.invalidParams);
    assert.equal(error.data?.field, "uid");
    assert.equal(error.data?.received, String(uid));
    assert.equal(error.data?.heldBy, heldBy);
    assert.match(error.message, /one userId at a time/);
    return true;
  };
}

describe("one uid serves one user", () => {
  const holds = [hold("a1", "alice", 10001), hold("b1", "bob", 10002)];

  test("another user's workspace on the uid conflicts; the same user's, a free uid or the workspace itself do not", () => {
    assert.equal(
      findUidConflict(hold("a2", "alice", 10001), holds),
      undefined,
      "one user, several workspaces, one uid",
    );
    assert.equal(findUidConflict(hold("c1", "carol", 10003), holds), undefined, "a free uid");
    assert.equal(
      findUidConflict(hold("a1", "carol", 10001), holds),
      undefined,
      "the workspace itself, ensured for another user: its container is replaced",
    );
    assert.deepEqual(findUidConflict(hold("c1", "carol", 10001), holds), holds[0]);
    assert.deepEqual(
      findUidConflict(hold("a1", "alice", 10002), holds),
      holds[1],
      "a workspace moving to a uid another user holds",
    );
  });

  test("a conflict is -32602 naming uid and the workspace that holds it", () => {
    assert.throws(() => checkUidHolder(hold("c1", "carol", 10002), holds), isUidConflict(10002, "b1"));
    checkUidHolder(hold("b2", "bob", 10002), holds);
  });
});

describe("the manager holds a uid from the ensure's call on", () => {
  let stateDir: string;
  before(async () => {
    stateDir = await fs.mkdtemp(path.join(os.tmpdir(), "alive-uid-holders-"));
  });
  after(async () => {
    await fs.rm(stateDir, { recursive: true, force: true });
  });

  test(
    "a concurrent ensure of another user on the same uid is refused before anything is made; the claim ends with the ensure",
    { timeout: 10_000 },
    async () => {
      const log = createLogger({ level: "error", write: () => undefined });
      // Every ensure stops at the image, before the engine: the first waits there until released.
      const noEngine = new Error("this test has no engine: the ensure got past the uid check");
      let release!: () => void;
      const gate = new Promise<never>((_resolve, reject) => (release = () => reject(noEngine)));
      gate.catch(() => undefined);
      let imageCalls = 0;
      const manager = new WorkspaceManager(
        await unitManagerOptions(stateDir, log, {
          // Never reached but to close: every ensure here stops at the image.
          engine: {
            closeExecs: () => 0,
            closeAllExecs: () => 0,
            settleExecs: async () => undefined,
          } as unknown as EnginePort,
          image: {
            ensure: () => {
              imageCalls += 1;
              return gate;
            },
          },
          runtimes: { resolve: async () => "runc" },
        }),
      );
      const params = (workspaceId: string, userId: string, uid: number): WorkspaceParams => ({
        workspaceId,
        userId,
        uid,
        gid: 10000,
        workspacePath: path.join(stateDir, workspaceId),
      });
      try {
        const alice = manager.ensure(params("a1", "alice", 10001));
        alice.catch(() => undefined);
        await assert.rejects(manager.ensure(params("b1", "bob", 10001)), isUidConflict(10001, "a1"));
        const aliceAgain = manager.ensure(params("a2", "alice", 10001));
        aliceAgain.catch(() => undefined);
        await waitFor(() => imageCalls === 2, {
          timeoutMs: 2000,
          intervalMs: 1,
          what: "alice's second ensure to reach the image",
        });
        assert.equal(imageCalls, 2, "alice's second workspace shares her uid; bob's ensure made nothing");

        release();
        await assert.rejects(alice, noEngine);
        await assert.rejects(aliceAgain, noEngine);
        // Neither of alice's ensures made a workspace: the uid is free again, and bob's ensure goes on to the image.
        await assert.rejects(manager.ensure(params("b1", "bob", 10001)), noEngine);
        assert.equal(imageCalls, 3);
      } finally {
        await manager.close();
      }
    },
  );
});

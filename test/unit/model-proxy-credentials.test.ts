/** Per-turn model credentials: issue, resolve, revoke. */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { CREDENTIAL_PREFIX, TurnCredentials } from "../../src/model-proxy/credentials.js";

interface Ref {
  workspaceId: string;
  turnId: string;
}

describe("TurnCredentials", () => {
  test("issues distinct random tokens that resolve to their ref", () => {
    const credentials = new TurnCredentials<Ref>();
    const a = credentials.issue({ workspaceId: "w1", turnId: "t1" });
    const b = credentials.issue({ workspaceId: "w1", turnId: "t2" });
    assert.notEqual(a, b);
    for (const token of [a, b]) assert.match(token, new RegExp(`^${CREDENTIAL_PREFIX}[A-Za-z0-9_-]{43}$`));
    assert.deepEqual(credentials.resolve(a), { workspaceId: "w1", turnId: "t1" });
    assert.deepEqual(credentials.resolve(b), { workspaceId: "w1", turnId: "t2" });
    assert.equal(credentials.size, 2);
  });

  test("an unknown, malformed or almost-right token resolves to null", () => {
    const credentials = new TurnCredentials<Ref>();
    const token = credentials.issue({ workspaceId: "w1", turnId: "t1" });
    const lastChar = token.at(-1) === "A" ? "B" : "A";
    for (const guess of [
      "",
      "sk-real-key",
      CREDENTIAL_PREFIX,
      `${token}x`,
      token.slice(0, -1),
      `${token.slice(0, -1)}${lastChar}`,
      token.toUpperCase(),
    ]) {
      assert.equal(credentials.resolve(guess), null, guess);
    }
  });

  test("a revoked token stops resolving at once; revoking twice is harmless", () => {
    const credentials = new TurnCredentials<Ref>();
    const token = credentials.issue({ workspaceId: "w1", turnId: "t1" });
    const other = credentials.issue({ workspaceId: "w1", turnId: "t2" });
    assert.equal(credentials.revoke(token), true);
    assert.equal(credentials.resolve(token), null);
    assert.equal(credentials.revoke(token), false);
    assert.equal(credentials.revoke("not-a-token"), false);
    assert.deepEqual(credentials.resolve(other), { workspaceId: "w1", turnId: "t2" });
  });

  test("revokeWhere revokes every credential of a workspace and leaves the others", () => {
    const credentials = new TurnCredentials<Ref>();
    const w1a = credentials.issue({ workspaceId: "w1", turnId: "t1" });
    const w1b = credentials.issue({ workspaceId: "w1", turnId: "t2" });
    const w2 = credentials.issue({ workspaceId: "w2", turnId: "t3" });
    assert.equal(
      credentials.revokeWhere((ref) => ref.workspaceId === "w1"),
      2,
    );
    assert.equal(credentials.resolve(w1a), null);
    assert.equal(credentials.resolve(w1b), null);
    assert.deepEqual(credentials.resolve(w2), { workspaceId: "w2", turnId: "t3" });
    assert.equal(credentials.size, 1);
  });
});

import assert from "node:assert/strict";
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { NET_SOCKETS } from "../../src/egress/container-net.js";
import { WorkspaceEndpoints, type TurnRef } from "../../src/egress/workspace-endpoints.js";
import { createLogger } from "../../src/log.js";
import { TurnCredentials } from "../../src/model-proxy/credentials.js";

const UID = 10001;
const GID = 10001;

describe("a workspace's network sockets", () => {
  let root: string;
  let endpoints: WorkspaceEndpoints;
  const credentials = new TurnCredentials<TurnRef>();

  before(async () => {
    root = await fs.mkdtemp(path.join(os.tmpdir(), "alive-codex-endpoints-"));
    endpoints = new WorkspaceEndpoints({
      log: createLogger({ level: "error", write: () => undefined }),
      modelUpstream: "http://127.0.0.1:9/v1",
      apiKey: "sk-never-used",
      aliveApiUrl: "http://127.0.0.1:9/api",
      internal: [],
      credentials,
    });
  });
  after(async () => {
    await endpoints.closeAll();
    await fs.rm(root, { recursive: true, force: true });
  });

  test("belong to the workspace's uid with mode 0600, one per endpoint", async () => {
    const dir = path.join(root, "a");
    await endpoints.ensure({ workspaceId: "a", dir, uid: UID, gid: GID, policy: () => "public" });
    for (const name of [NET_SOCKETS.proxy, NET_SOCKETS.model, NET_SOCKETS.api]) {
      const stat = await fs.stat(path.join(dir, name));
      assert.ok(stat.isSocket(), `${name} is a socket`);
      assert.equal(stat.uid, UID);
      assert.equal(stat.mode & 0o777, 0o600);
    }
  });

  test("closed and served again at once (a replaced container), the new sockets stay: the old close never unlinks them", async () => {
    const dir = path.join(root, "b");
    const net = { workspaceId: "b", dir, uid: UID, gid: GID, policy: () => "public" as const };
    await endpoints.ensure(net);
    const credential = credentials.issue({ workspaceId: "b", turnId: "t1" });
    const closed = endpoints.close("b");
    const reopened = endpoints.ensure(net);
    await Promise.all([closed, reopened]);
    for (const name of [NET_SOCKETS.proxy, NET_SOCKETS.model])
      assert.ok((await fs.stat(path.join(dir, name))).isSocket(), `${name} is served again`);
    assert.equal(credentials.resolve(credential), null, "the workspace's credentials were revoked with its sockets");
  });
});

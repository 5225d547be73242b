import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { once } from "node:events";
import { PassThrough } from "node:stream";
import type Docker from "dockerode";
import { promises as fs } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { createDockerClient } from "../../src/docker/engine.js";
import { ExecStreams } from "../../src/docker/exec-streams.js";
import { waitFor } from "../support/wait.js";

describe("ExecStreams: the exec connections a Docker client holds", () => {
  test("a container's connections close with it; after shutdown, a connection that opens late is closed at once", async () => {
    const registry = ExecStreams.of({} as Docker);
    const early = new PassThrough();
    const other = new PassThrough();
    registry.add("c1", early);
    registry.add("c2", other);
    assert.equal(registry.count(), 2);
    assert.equal(registry.destroyContainer("c1"), 1);
    assert.equal(early.destroyed, true);
    assert.equal(other.destroyed, false);
    await once(early, "close");
    assert.equal(registry.count(), 1, "a closed connection is forgotten");
    assert.equal(registry.destroyAll(), 1);
    assert.equal(other.destroyed, true);
    // An exec whose start was in flight at shutdown (an adoption's measurement, a launcher) must not live on.
    const late = new PassThrough();
    registry.add("c1", late);
    assert.equal(late.destroyed, true);
  });

  test("shutdown waits for exec starts in flight (bounded): their connection is the client's until they settle", async () => {
    const registry = ExecStreams.of({} as Docker);
    await registry.settled(10_000); // none in flight: at once
    const first = registry.begin();
    const second = registry.begin();
    let settled = false;
    const waiting = registry.settled(10_000).then(() => (settled = true));
    first();
    first(); // once only
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(settled, false, "one start is still in flight");
    second();
    await waiting;
    assert.equal(settled, true);
    registry.begin();
    const started = Date.now();
    await registry.settled(50);
    assert.ok(Date.now() - started < 5000, "a start that never settles holds a shutdown only so long");
  });

  test("an exec start still in flight is closed with its container, and at shutdown (the client's sockets are tracked)", async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), "exec-streams-"));
    const socketPath = path.join(dir, "engine.sock");
    // An engine that takes the start and never answers it: the socket stays the client's.
    const held: net.Socket[] = [];
    const engine = net.createServer((socket) => held.push(socket));
    await new Promise<void>((resolve) => engine.listen(socketPath, resolve));
    try {
      const docker = createDockerClient(`unix://${socketPath}`);
      const registry = ExecStreams.of(docker);
      const execId = "a".repeat(64);
      const done = registry.expect("c1", execId);
      const start = docker.getExec(execId).start({ hijack: true, stdin: false });
      start.catch(() => undefined);
      await waitFor(() => held.length === 1, { timeoutMs: 5000, what: "the start to reach the engine" });
      assert.equal(registry.destroyContainer("c2"), 0, "another container's close leaves it");
      assert.equal(registry.destroyContainer("c1"), 1, "its container's close closes it");
      await assert.rejects(start);
      done();
      const second = docker.getExec("b".repeat(64)).start({ hijack: true, stdin: false });
      second.catch(() => undefined);
      await waitFor(() => held.length === 2, { timeoutMs: 5000, what: "a second start" });
      assert.equal(registry.destroyAll(), 1, "shutdown closes every start in flight");
      await assert.rejects(second);
    } finally {
      for (const socket of held) socket.destroy();
      await new Promise((resolve) => engine.close(resolve));
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});

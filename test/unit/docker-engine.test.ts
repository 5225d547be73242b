/**
 * DockerEngine's own translation, over a stub of dockerode's client: the engine's event lines
 * become ContainerEvents, and the statuses a pause or a stop expects become answers. What the
 * engine sends and does is tested against the real one (test/integration/).
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { PassThrough } from "node:stream";
import type Docker from "dockerode";
import { DockerEngine } from "../../src/docker/docker-engine.js";
import type { ContainerEvent } from "../../src/docker/engine-port.js";
import { ErrorCode, SidecarError } from "../../src/errors.js";
import { withTimeout } from "../support/wait.js";

const statusError = (statusCode: number): Error => Object.assign(new Error(`status ${statusCode}`), { statusCode });

describe("DockerEngine", () => {
  test("events: lines split across chunks, blank and broken lines skipped, time in ms; the signal closes the stream", async () => {
    const stream = new PassThrough();
    let asked: unknown;
    const docker = { getEvents: async (options: unknown) => ((asked = options), stream) } as unknown as Docker;
    const stop = new AbortController();
    const events = await new DockerEngine(docker).events({ "dev.alive.codex.managed": "true" }, stop.signal);
    assert.deepEqual(asked, { filters: { type: ["container"], label: ["dev.alive.codex.managed=true"] } });
    const seen: ContainerEvent[] = [];
    const done = (async () => {
      for await (const event of events) seen.push(event);
    })().catch(() => undefined);
    const start = JSON.stringify({
      Action: "start",
      id: "c1",
      timeNano: 1_700_000_000_123_000_000,
      Actor: { ID: "c1", Attributes: { "dev.alive.codex.workspace-id": "ws-1", name: "alive-codex-ws-1" } },
    });
    stream.write(`${start.slice(0, 20)}`);
    stream.write(`${start.slice(20)}\n\nnot json\n`);
    stream.write(`${JSON.stringify({ Action: "die", Actor: { ID: "c2" } })}\n`);
    await new Promise((resolve) => setImmediate(resolve));
    stop.abort();
    await withTimeout(done, 2000, "the iteration to end on abort");
    assert.ok(stream.destroyed, "the connection is closed");
    assert.deepEqual(seen, [
      {
        action: "start",
        containerId: "c1",
        at: 1_700_000_000_123,
        attributes: { "dev.alive.codex.workspace-id": "ws-1", name: "alive-codex-ws-1" },
      },
      { action: "die", containerId: "c2", at: undefined, attributes: {} },
    ]);
  });

  test("pause and stop: the statuses they expect are answers, anything else a SidecarError", async () => {
    const failing = (status: number) =>
      ({
        getContainer: () => ({
          pause: async () => Promise.reject(statusError(status)),
          stop: async () => Promise.reject(statusError(status)),
        }),
      }) as unknown as Docker;
    assert.equal(await new DockerEngine(failing(404)).pause("c"), "missing");
    assert.equal(await new DockerEngine(failing(409)).pause("c"), "conflict");
    assert.equal(await new DockerEngine(failing(304)).stop("c", 1), "not-running");
    assert.equal(await new DockerEngine(failing(404)).stop("c", 1), "missing");
    await assert.rejects(
      new DockerEngine(failing(500)).pause("c"),
      (error: unknown) =>
        error instanceof SidecarError && error.code === ErrorCode.internal && error.data?.dockerStatus === 500,
    );
    const fine = {
      getContainer: () => ({ pause: async () => undefined, stop: async () => undefined }),
    } as unknown as Docker;
    assert.equal(await new DockerEngine(fine).pause("c"), "paused");
    assert.equal(await new DockerEngine(fine).stop("c", 1), "stopped");
  });

  test("inspect and create: a missing container is null, a name taken is null", async () => {
    const docker = {
      getContainer: () => ({ inspect: async () => Promise.reject(statusError(404)) }),
      createContainer: async () => Promise.reject(statusError(409)),
    } as unknown as Docker;
    const engine = new DockerEngine(docker);
    assert.equal(await engine.inspect("gone"), null);
    assert.equal(await engine.create({ name: "taken", Image: "x" }), null);
  });
});

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { once } from "node:events";
import { PassThrough } from "node:stream";
import type Docker from "dockerode";
import { ExecStreams } from "../../src/docker/exec-streams.js";

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
});

/** The per-workspace and whole-sidecar bound on lookups in flight, and who gets a freed slot. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { LookupSlots, type SlotAnswer, type SlotRelease } from "../../src/egress/lookup-slots.js";

const never = new AbortController().signal;

function released(answer: SlotAnswer): SlotRelease {
  assert.ok(answer.ok, `a slot, got ${JSON.stringify(answer)}`);
  return answer.release;
}

/** Records the order in which pending acquisitions get their slot. */
function track(order: string[], name: string, pending: Promise<SlotAnswer>): Promise<SlotRelease> {
  return pending.then((answer) => {
    order.push(name);
    return released(answer);
  });
}

describe("LookupSlots", () => {
  test("a key gets perKey slots at once; then its line; past the line, busy at once", async () => {
    const slots = new LookupSlots({ perKey: 2, queuePerKey: 1, total: 10 });
    const a1 = released(await slots.acquire("a", never));
    released(await slots.acquire("a", never));
    const waiting = slots.acquire("a", never);
    assert.equal(slots.waiting("a"), 1);
    assert.deepEqual(await slots.acquire("a", never), { ok: false, reason: "busy" });
    // Another key is not affected by a's bound.
    released(await slots.acquire("b", never));
    a1();
    a1(); // a second release is a no-op
    released(await waiting);
    assert.equal(slots.inFlight("a"), 2);
    assert.equal(slots.inFlight(), 3);
  });

  test("an aborted wait leaves the line and takes nothing", async () => {
    const slots = new LookupSlots({ perKey: 1, queuePerKey: 2, total: 10 });
    const held = released(await slots.acquire("a", never));
    const controller = new AbortController();
    const waiting = slots.acquire("a", controller.signal);
    controller.abort();
    assert.deepEqual(await waiting, { ok: false, reason: "aborted" });
    assert.equal(slots.waiting("a"), 0);
    held();
    assert.equal(slots.inFlight(), 0);
    assert.deepEqual(await slots.acquire("a", controller.signal), { ok: false, reason: "aborted" });
  });

  test("past the total, freed slots go to the waiting keys in turn, not first come first served", async () => {
    const slots = new LookupSlots({ perKey: 2, queuePerKey: 4, total: 3 });
    const [a1, a2] = [released(await slots.acquire("a", never)), released(await slots.acquire("a", never))];
    const b1 = released(await slots.acquire("b", never));
    const order: string[] = [];
    // a asks twice more before b and c ask once each; all wait for the total.
    const a3 = track(order, "a3", slots.acquire("a", never));
    const a4 = track(order, "a4", slots.acquire("a", never));
    const b2 = track(order, "b2", slots.acquire("b", never));
    const c1 = track(order, "c1", slots.acquire("c", never));
    a1();
    const a3Release = await a3;
    b1();
    const b2Release = await b2;
    a2();
    const c1Release = await c1;
    a3Release();
    await a4;
    assert.deepEqual(order, ["a3", "b2", "c1", "a4"]);
    b2Release();
    c1Release();
    assert.equal(slots.inFlight(), 1);
  });

  test("options are checked", () => {
    assert.throws(() => new LookupSlots({ perKey: 0, queuePerKey: 1, total: 1 }), /perKey: got 0/);
    assert.throws(() => new LookupSlots({ perKey: 1, queuePerKey: -1, total: 1 }), /queuePerKey: got -1/);
  });
});

/** The exec bridge with real processes: the script the SDK spawns, FIFOs, argv, stdin, exit code. */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { execa } from "execa";
import { ExecBridge, installBridgeScript, parseBridgeRequest } from "../../src/codex/bridge.js";

describe("exec bridge", () => {
  test("parses argv (spaces, newlines, empty args) and stdin", () => {
    const data = Buffer.concat([Buffer.from("3\0a b\0\0line1\nline2\0"), Buffer.from("the prompt\n")]);
    assert.deepEqual(parseBridgeRequest(data), {
      argv: ["a b", "", "line1\nline2"],
      stdin: Buffer.from("the prompt\n"),
    });
    assert.throws(() => parseBridgeRequest(Buffer.from("2\0only-one\0")), /truncated/);
    assert.throws(() => parseBridgeRequest(Buffer.from("x\0")), /argument count/);
  });

  test("the script hands over argv and stdin, relays output and exits with the given code", async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), "bridge-test-"));
    try {
      const script = await installBridgeScript(path.join(dir, "bin"));
      const bridge = await ExecBridge.create(path.join(dir, "turn-1"));
      const child = execa(script, ["exec", "--json", "with space", ""], {
        env: { PATH: "/usr/bin:/bin", ...bridge.env },
        extendEnv: false,
        input: "prompt text",
        reject: false,
      });
      // If the script cannot run, fail with what it said instead of waiting forever for its request.
      const request = await Promise.race([
        bridge.received(),
        child.then((result) => {
          throw new Error(
            `the bridge script ended before handing over its request: ${result.exitCode} ${result.stderr} ${result.message ?? ""}`,
          );
        }),
      ]);
      assert.deepEqual(request.argv, ["exec", "--json", "with space", ""]);
      assert.equal(request.stdin.toString(), "prompt text");
      bridge.stdout.write('{"type":"thread.started"}\n');
      bridge.stderr.write("a codex warning\n");
      await bridge.finish(3);
      const result = await child;
      assert.equal(result.exitCode, 3);
      assert.equal(result.stdout, '{"type":"thread.started"}');
      assert.equal(result.stderr, "a codex warning");
      await bridge.dispose();
      await assert.rejects(fs.stat(bridge.dir));
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  test("a script killed before it hands anything over leaves nothing waiting", async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), "bridge-test-"));
    try {
      const bridge = await ExecBridge.create(path.join(dir, "turn-2"));
      const received = bridge.received();
      await bridge.dispose();
      await assert.rejects(received, /closed before/);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});

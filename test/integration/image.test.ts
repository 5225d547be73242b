/**
 * The runtime image against the real engine: the tools are there and run as an unprivileged uid
 * on a read-only root fs, tini is PID 1, codex is the version the npm package ships, and the
 * failure paths give -32005. Uses ALIVE_CODEX_TEST_IMAGE when scripts/test.mjs ensured it,
 * else builds it (about 30 s to a few minutes).
 */
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { codexVersion } from "../../src/codex-package.js";
import type { Docker } from "../../src/docker/engine.js";
import { createDockerClient } from "../../src/docker/engine.js";
import { LOCAL_BASE_IMAGE, isImagePresent } from "../../src/docker/base-image.js";
import { RuntimeImage, runtimeImageRef } from "../../src/docker/images.js";
import { Labels } from "../../src/docker/labels.js";
import { ErrorCode, SidecarError } from "../../src/errors.js";
import { silentLogger } from "../../src/log.js";
import { waitFor } from "../support/wait.js";

const RUN_ID = process.env.ALIVE_CODEX_TEST_RUN_ID ?? "local";
const BASE_IMAGE = process.env.ALIVE_CODEX_BASE_IMAGE ?? LOCAL_BASE_IMAGE;
const RUN_DEADLINE_MS = 60_000;
/** The codex the test image carries: ALIVE_CODEX_TEST_CODEX_VERSION's (scripts/test.mjs built it so), else the SDK's. */
const EXPECTED_CODEX = process.env.ALIVE_CODEX_TEST_CODEX_VERSION || codexVersion();

const docker: Docker = createDockerClient(process.env.DOCKER_HOST ?? "unix:///var/run/docker.sock");
const containerIds: string[] = [];
let imageRef = "";

interface RunResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** Splits the engine's multiplexed log frames (no TTY) into stdout and stderr. */
function demux(buffer: Buffer): { stdout: string; stderr: string } {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  let offset = 0;
  while (offset + 8 <= buffer.length) {
    const kind = buffer[offset];
    const size = buffer.readUInt32BE(offset + 4);
    const frame = buffer.subarray(offset + 8, offset + 8 + size);
    (kind === 2 ? err : out).push(frame);
    offset += 8 + size;
  }
  return { stdout: Buffer.concat(out).toString("utf8"), stderr: Buffer.concat(err).toString("utf8") };
}

/** Runs `cmd` in the image as uid/gid 10001, read-only, no network, no capabilities; waits with a deadline. */
async function runInImage(cmd: string[]): Promise<RunResult> {
  const container = await docker.createContainer({
    Image: imageRef,
    Cmd: cmd,
    User: "10001:10001",
    Labels: { [Labels.runId]: RUN_ID },
    HostConfig: {
      ReadonlyRootfs: true,
      NetworkMode: "none",
      CapDrop: ["ALL"],
      SecurityOpt: ["no-new-privileges"],
      Tmpfs: { "/tmp": "rw,nosuid,nodev,size=16m" },
    },
  });
  containerIds.push(container.id);
  try {
    await container.start();
    const status = (await container.wait({ abortSignal: AbortSignal.timeout(RUN_DEADLINE_MS) })) as {
      StatusCode: number;
    };
    const logs = (await container.logs({ stdout: true, stderr: true, follow: false })) as unknown as Buffer;
    return { exitCode: status.StatusCode, ...demux(logs) };
  } finally {
    await container.remove({ force: true }).catch(() => {});
  }
}

function assertImageUnavailable(error: unknown, reason?: RegExp): true {
  assert.ok(error instanceof SidecarError, `expected a SidecarError, got ${String(error)}`);
  assert.equal(error.code, ErrorCode.imageUnavailable);
  if (reason) assert.match(error.message, reason);
  return true;
}

const runtime = new RuntimeImage({
  docker,
  baseImage: BASE_IMAGE,
  explicitRef: null,
  codexVersion: process.env.ALIVE_CODEX_TEST_CODEX_VERSION || null,
  log: silentLogger,
});

before(async () => {
  imageRef = process.env.ALIVE_CODEX_TEST_IMAGE ?? (await runtime.ensure()).ref;
});

after(async () => {
  for (const id of containerIds)
    await docker
      .getContainer(id)
      .remove({ force: true })
      .catch(() => {});
});

describe("runtime image contents", () => {
  test("codex --version prints the version of codex-package.json", async () => {
    const result = await runInImage(["codex", "--version"]);
    assert.equal(result.exitCode, 0, result.stderr);
    assert.equal(result.stdout.trim(), `codex-cli ${EXPECTED_CODEX}`);
  });

  const tools: Array<[string, string[], RegExp]> = [
    ["rg", ["rg", "--version"], /^ripgrep \d+\./],
    ["git", ["git", "--version"], /^git version \d+\./],
    ["node", ["node", "--version"], /^v\d+\.\d+\.\d+/],
    ["bash", ["bash", "--version"], /^GNU bash, version 5\./],
    ["ps (procps)", ["ps", "--version"], /procps/],
    ["codex's own rg", ["/opt/codex/codex-path/rg", "--version"], /^ripgrep \d+\./],
    ["bwrap", ["/opt/codex/codex-resources/bwrap", "--version"], /^bubblewrap/],
  ];
  for (const [name, cmd, expected] of tools) {
    test(`${name} runs as uid 10001 on a read-only root fs`, async () => {
      const result = await runInImage(cmd);
      assert.equal(result.exitCode, 0, result.stderr);
      assert.match(result.stdout, expected);
    });
  }

  test("tini is PID 1, the user is 10001, /run/alive and /home exist, the CA bundle is there", async () => {
    const script = [
      "cat /proc/1/comm",
      "id -u",
      "stat -c '%a %U' /run/alive",
      'test -z "$(ls -A /run/alive)" && echo empty',
      "test -d /home && echo home",
      "test -s /etc/ssl/certs/ca-certificates.crt && echo ca",
      "test -x /opt/codex/bin/codex-code-mode-host && echo code-mode-host",
      "test ! -e /opt/codex/codex-resources/voice && echo no-voice",
    ].join("; ");
    const result = await runInImage(["bash", "-c", script]);
    assert.equal(result.exitCode, 0, result.stderr);
    assert.deepEqual(result.stdout.trim().split("\n"), [
      "tini",
      "10001",
      "755 root",
      "empty",
      "home",
      "ca",
      "code-mode-host",
      "no-voice",
    ]);
  });

  test("the image config: tini entrypoint, no CMD, no variable but PATH, labelled with the codex version", async () => {
    const info = await docker.getImage(imageRef).inspect();
    assert.deepEqual(info.Config.Entrypoint, ["/usr/bin/tini", "--"]);
    assert.ok(
      info.Config.Cmd === null || info.Config.Cmd === undefined || info.Config.Cmd.length === 0,
      `CMD ${JSON.stringify(info.Config.Cmd)}`,
    );
    const names = (info.Config.Env ?? []).map((entry) => entry.split("=", 1)[0]);
    assert.deepEqual(names, ["PATH"]);
    assert.equal(info.Config.Labels?.["dev.alive.codex.codex-version"], EXPECTED_CODEX);
  });
});

describe("RuntimeImage", () => {
  test("ensure() reuses the image it finds; concurrent calls share one result", async () => {
    const [a, b] = await Promise.all([runtime.ensure(), runtime.ensure()]);
    assert.deepEqual(a, b);
    assert.equal(a.built, false);
    assert.equal(a.ref, await runtime.ref());
    assert.equal(await isImagePresent(docker, a.ref), true);
  });

  test("an explicit reference that is missing gives -32005 and is never built", async () => {
    const ref = `alive-codex-runtime:missing-${RUN_ID.toLowerCase().replace(/[^a-z0-9_.-]/g, "-")}`;
    const explicit = new RuntimeImage({ docker, baseImage: BASE_IMAGE, explicitRef: ref, log: silentLogger });
    assert.equal(await explicit.ref(), ref);
    await assert.rejects(explicit.ensure(), (error) => assertImageUnavailable(error, /ALIVE_CODEX_IMAGE/));
    assert.equal(await isImagePresent(docker, ref), false);
  });

  test("an explicit reference that is present is used as it is", async () => {
    const explicit = new RuntimeImage({ docker, baseImage: BASE_IMAGE, explicitRef: imageRef, log: silentLogger });
    assert.deepEqual(await explicit.ensure(), { ref: imageRef, built: false });
  });

  test("a missing base image gives -32005 naming make-base-image.mjs", async () => {
    const options = { docker, baseImage: "alive-codex-base:missing-for-test", explicitRef: null, log: silentLogger };
    await assert.rejects(runtimeImageRef(options), (error) => assertImageUnavailable(error, /make-base-image\.mjs/));
  });

  test("an aborted signal ends ensure() with an AbortError", async () => {
    await assert.rejects(runtime.ensure(AbortSignal.abort()), { name: "AbortError" });
  });

  test("a failing build step gives -32005 with the step's output, and leaves no image", async () => {
    const contextDir = await mkdtemp(path.join(os.tmpdir(), "alive-codex-image-test-"));
    try {
      await writeFile(
        path.join(contextDir, "Dockerfile"),
        `ARG BASE_IMAGE\nFROM \${BASE_IMAGE}\nRUN echo "failing step ${RUN_ID}" >&2; exit 3\n`,
      );
      const lines: string[] = [];
      const broken = new RuntimeImage({
        docker,
        baseImage: BASE_IMAGE,
        explicitRef: null,
        log: silentLogger,
        contextDir,
        onProgress: (line) => lines.push(line),
      });
      const ref = await broken.ref();
      let caught: unknown;
      await broken.ensure().catch((error: unknown) => {
        caught = error;
      });
      assertImageUnavailable(caught, /failed/);
      const data = (caught as SidecarError).data;
      assert.equal(data?.reason, "build failed");
      assert.ok(
        (data?.outputTail as string[]).some((line) => line.includes(`failing step ${RUN_ID}`)),
        JSON.stringify(data?.outputTail),
      );
      assert.ok(
        lines.some((line) => line.includes(`failing step ${RUN_ID}`)),
        "onProgress saw the step's output",
      );
      assert.equal(await isImagePresent(docker, ref), false);
    } finally {
      await rm(contextDir, { recursive: true, force: true });
    }
  });

  test("aborting the only waiter cancels the build and its build container goes away", async () => {
    const contextDir = await mkdtemp(path.join(os.tmpdir(), "alive-codex-image-test-"));
    const marker = `waiting step ${RUN_ID}`;
    try {
      // A step that never ends on its own: only the cancellation can stop it.
      await writeFile(
        path.join(contextDir, "Dockerfile"),
        `ARG BASE_IMAGE\nFROM \${BASE_IMAGE}\nRUN echo "${marker}" && tail -f /dev/null\n`,
      );
      const controller = new AbortController();
      const stuck = new RuntimeImage({
        docker,
        baseImage: BASE_IMAGE,
        explicitRef: null,
        log: silentLogger,
        contextDir,
        onProgress: (line) => {
          if (line.includes(marker) && !line.includes("RUN")) controller.abort();
        },
      });
      const ref = await stuck.ref();
      await assert.rejects(stuck.ensure(controller.signal), { name: "AbortError" });
      const buildContainers = async (): Promise<number> =>
        (await docker.listContainers({ all: true })).filter((c) => c.Command.includes(marker)).length;
      await waitFor(async () => (await buildContainers()) === 0, {
        timeoutMs: 60_000,
        what: "the cancelled build's container to be removed",
      });
      assert.equal(await isImagePresent(docker, ref), false);
    } finally {
      await rm(contextDir, { recursive: true, force: true });
    }
  });
});

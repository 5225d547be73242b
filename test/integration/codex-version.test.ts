/**
 * The codex the workspaces run, against the real engine and the real codex binary: what
 * sidecar.health reports is what the image carries, every turn's codex gets the version's hardening
 * flags, and a config.toml the tenant writes into CODEX_HOME does not reach a turn. Runs in both
 * passes (the SDK's codex, and `node scripts/test.mjs codex-newer`); an image given as is without the
 * label, and one carrying a codex the SDK cannot drive, are read from the image and refused.
 */
import { after, before, beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import type { ThreadEvent } from "@openai/codex-sdk";
import tar from "tar-fs";
import { sdkCodexVersion } from "../../src/codex-package.js";
import { codexFlagsFor } from "../../src/codex-versions.js";
import { loadConfig } from "../../src/config.js";
import { createDockerClient } from "../../src/docker/engine.js";
import { followStream } from "../../src/docker/build-stream.js";
import { CODEX_VERSION_LABEL, readImageCodex } from "../../src/docker/image-codex.js";
import { Labels } from "../../src/docker/labels.js";
import { reapLabelled } from "../../src/docker/reaper.js";
import { createLogger } from "../../src/log.js";
import type { TurnHooks } from "../../src/service.js";
import { startSidecar } from "../../src/sidecar.js";
import { workspacePaths } from "../../src/workspace/paths.js";
import type { ResponsesStub } from "../support/responses-stub.js";
import {
  TEST_CODEX_VERSION,
  TEST_GID,
  TEST_RUN_ID,
  TEST_UID,
  execIn,
  startGatewayStub,
  startTestSidecar,
  testImage,
  uniqueId,
  type TestSidecar,
} from "../support/sidecar.js";

const EXPECTED = TEST_CODEX_VERSION ?? sdkCodexVersion();

/** The output of the turn's one command (the stub scripts it), and the turn's status. */
async function commandOutput(
  t: TestSidecar,
  workspaceId: string,
  input: string,
): Promise<{ status: string; output: string }> {
  const items: ThreadEvent[] = [];
  const hooks: TurnHooks = {
    onEvent: (_turnId, _seq, event) =>
      void (event.type.startsWith("sidecar.") ? undefined : items.push(event as ThreadEvent)),
  };
  const result = await t.sidecar.service.runTurn({ workspaceId, input }, hooks);
  const done = items.find(
    (e): e is Extract<ThreadEvent, { type: "item.completed" }> =>
      e.type === "item.completed" && e.item.type === "command_execution",
  );
  return {
    status: result.status,
    output:
      done?.item.type === "command_execution"
        ? done.item.aggregated_output
        : `(no command ran: ${JSON.stringify(result.error ?? result.finalResponse)})`,
  };
}

/** Builds `FROM base` plus `lines` (a Dockerfile tail) as `tag`, labelled with the run id; returns the tag. */
async function buildDerived(tag: string, base: string, lines: string[]): Promise<string> {
  const docker = createDockerClient("unix:///var/run/docker.sock");
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "alive-codex-version-image-"));
  try {
    await fs.writeFile(
      path.join(dir, "Dockerfile"),
      [`FROM ${base}`, ...lines, `LABEL ${Labels.runId}=${TEST_RUN_ID}`, ""].join("\n"),
    );
    const stream = await docker.buildImage(tar.pack(dir) as unknown as NodeJS.ReadableStream, {
      t: tag,
      forcerm: true,
    });
    await followStream(docker, stream, () => undefined);
    return tag;
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

describe("the codex version the workspaces run", () => {
  let stub: ResponsesStub;
  let t: TestSidecar;
  before(async () => {
    stub = await startGatewayStub();
    t = await startTestSidecar({ stub });
  });
  after(async () => {
    await t?.cleanup();
    await stub?.close();
  });
  beforeEach(() => stub.reset());

  test("health reports the version found in the image, the one asked for, the SDK's, tested, and the flags; codex --version agrees", async () => {
    const health = await t.sidecar.service.health();
    assert.deepEqual(health.codex, {
      version: EXPECTED,
      requested: TEST_CODEX_VERSION,
      sdk: sdkCodexVersion(),
      tested: true,
      flags: codexFlagsFor(EXPECTED),
    });
    assert.equal(health.codexVersion, EXPECTED);
    const ws = await t.workspace(uniqueId("codex-version"));
    const { containerId } = await t.sidecar.service.ensureWorkspace(ws);
    const printed = await execIn(
      t.docker,
      containerId,
      ["/bin/sh", "-c", "HOME=/tmp CODEX_HOME=/tmp/codex-version-check codex --version"],
      `${TEST_UID}:${TEST_GID}`,
    );
    assert.equal(printed.stdout.trim(), `codex-cli ${EXPECTED}`, printed.stderr);
  });

  test("every turn's codex exec gets the version's flags right after exec, ahead of the SDK's arguments", async () => {
    const ws = await t.workspace(uniqueId("codex-flags"));
    await t.sidecar.service.ensureWorkspace(ws);
    stub.script(
      { kind: "command", cmd: "ps -eww -o args | grep -e '^codex exec'" },
      { kind: "message", text: "listed" },
    );
    const { status, output } = await commandOutput(t, ws.workspaceId, "show codex's arguments");
    assert.equal(status, "completed", output);
    assert.match(output, new RegExp(`^codex exec ${codexFlagsFor(EXPECTED).join(" ")} --experimental-json `, "m"));
  });

  test("a config.toml the tenant writes into CODEX_HOME does not reach the next turn (--ignore-user-config)", async () => {
    const ws = await t.workspace(uniqueId("codex-config"));
    await t.sidecar.service.ensureWorkspace(ws);
    // As a command of an earlier turn could: the workspace user writes it where codex would load it from.
    const codexHome = path.join(workspacePaths(t.stateDir, ws.workspaceId).root, "home", ".codex");
    await fs.mkdir(codexHome, { recursive: true });
    await fs.writeFile(
      path.join(codexHome, "config.toml"),
      '[shell_environment_policy]\nset = { ALIVE_CONFIG_PROBE = "loaded-from-config-toml" }\n',
    );
    await fs.chown(path.join(codexHome, "config.toml"), TEST_UID, TEST_GID);
    stub.script(
      { kind: "command", cmd: 'echo "probe=${ALIVE_CONFIG_PROBE:-absent}"' },
      { kind: "message", text: "probed" },
    );
    const { status, output } = await commandOutput(t, ws.workspaceId, "probe the environment");
    assert.equal(status, "completed", output);
    assert.match(output, /probe=absent/);
  });
});

describe("an image given as is (ALIVE_CODEX_IMAGE): its codex read from the image, and checked at start-up", () => {
  const docker = createDockerClient("unix:///var/run/docker.sock");
  const unlabelled = `alive-codex-runtime:unlabelled-${TEST_RUN_ID.toLowerCase().replace(/[^a-z0-9_.-]/g, "-")}`;
  const tooOld = `alive-codex-runtime:too-old-${TEST_RUN_ID.toLowerCase().replace(/[^a-z0-9_.-]/g, "-")}`;
  const roots: string[] = [];
  /** The state dirs whose label the containers that read an image carry (each removed after its read). */
  const readerStateDir = "/nonexistent/codex-version-test";
  before(async () => {
    // The test image without its version label: only /opt/codex/codex-package.json says what it carries.
    await buildDerived(unlabelled, testImage(), [`LABEL ${CODEX_VERSION_LABEL}=""`]);
    // One whose codex-package.json says 0.150.0 (the binary stays: only the version is read).
    await buildDerived(tooOld, unlabelled, [
      `RUN sed -i 's/"version": *"[^"]*"/"version": "0.150.0"/' /opt/codex/codex-package.json`,
    ]);
  });
  after(async () => {
    // A backstop for the reading containers: only this file's state dirs, never the run's other files'.
    for (const stateDir of [readerStateDir, ...roots.map((root) => path.join(root, "state"))]) {
      await reapLabelled(docker, [`${Labels.stateDir}=${stateDir}`], { deadlineMs: 30_000 }).catch(() => undefined);
    }
    for (const ref of [tooOld, unlabelled])
      await docker
        .getImage(ref)
        .remove({ force: true })
        .catch(() => undefined);
    for (const root of roots) await fs.rm(root, { recursive: true, force: true });
  });

  test("without the label, the version is read out of a container created (never started) from the image, which is removed", async () => {
    const labels = { [Labels.runId]: TEST_RUN_ID, [Labels.stateDir]: readerStateDir };
    assert.deepEqual(await readImageCodex(docker, unlabelled, { labels }), { version: EXPECTED, source: "file" });
    assert.deepEqual(await readImageCodex(docker, testImage(), { labels }), { version: EXPECTED, source: "label" });
    const left = await docker.listContainers({
      all: true,
      filters: { label: [`${Labels.stateDir}=${readerStateDir}`] },
    });
    assert.deepEqual(
      left.map((c) => c.Id),
      [],
      "the reading container is removed",
    );
  });

  test("a codex the SDK cannot drive is refused at start-up, naming the version; so is another version than the one set", async () => {
    const root = await fs.mkdtemp(path.join(os.tmpdir(), "alive-codex-version-"));
    roots.push(root);
    await fs.mkdir(path.join(root, "workspaces"));
    const base = {
      "--socket": path.join(root, "s.sock"),
      "--state-dir": path.join(root, "state"),
      "--workspace-roots": path.join(root, "workspaces"),
      "--uid-range": "10000-60000",
      "--gid-range": "10000-60000",
      "--disk": "off",
      "--extra-labels": `${Labels.runId}=${TEST_RUN_ID}`,
    };
    const log = createLogger({ level: "error", write: () => undefined });
    await assert.rejects(
      startSidecar(loadConfig({ ...base, "--image": tooOld }, {}), log),
      /The runtime image alive-codex-runtime:too-old-\S+ carries codex 0\.150\.0, which this sidecar cannot drive: codex 0\.150\.0 is older than/,
    );
    const other = EXPECTED === "0.171.0" ? "0.163.0" : "0.171.0";
    await assert.rejects(
      startSidecar(loadConfig({ ...base, "--image": unlabelled, "--codex-version": other }, {}), log),
      new RegExp(
        `ALIVE_CODEX_CODEX_VERSION is ${other.replace(/\./g, "\\.")}, but the runtime image \\S+ \\(ALIVE_CODEX_IMAGE\\) carries codex ${EXPECTED.replace(/\./g, "\\.")}`,
      ),
    );
  });
});

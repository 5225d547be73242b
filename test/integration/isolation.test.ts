/**
 * The isolation report (docs/security.md "Isolation report"): measured from the running container
 * on ensure, cached per container, measured again when the container is replaced, and a container
 * whose measurement differs from its spec refused and removed.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { ErrorCode, SidecarError } from "../../src/errors.js";
import type { IsolationReport } from "../../src/service.js";
import { workspacePaths } from "../../src/workspace/paths.js";
import { hostPidsLimit } from "../../src/workspace/runtimes.js";
import { buildWorkspaceSpec } from "../../src/workspace/spec.js";
import { CONTAINER_HOME, CONTAINER_TMPDIR } from "../../src/workspace/container-env.js";
import { TEST_GID, TEST_UID, execIn, startTestSidecar, type TestSidecar } from "../support/sidecar.js";
import { waitFor } from "../support/wait.js";

const ZERO = /^0+$/;

/** What a process exec'd in the container (not the sidecar's probe) reads of its own status. */
async function statusInside(t: TestSidecar, containerId: string): Promise<Record<string, string>> {
  const { stdout } = await execIn(t.docker, containerId, ["/bin/cat", "/proc/self/status"], `${TEST_UID}:${TEST_GID}`);
  return Object.fromEntries(
    stdout
      .split("\n")
      .filter((l) => l.includes(":"))
      .map((l) => [l.slice(0, l.indexOf(":")), l.slice(l.indexOf(":") + 1).trim()]),
  );
}

describe("the isolation report", () => {
  let t: TestSidecar;
  before(async () => {
    t = await startTestSidecar();
  });
  after(async () => {
    await t?.cleanup();
  });

  for (const runtime of ["runc", "runsc"] as const)
    test(`${runtime}: ensure measures the container from inside; workspace.list carries the same report, and an exec inside agrees`, async () => {
      const gvisor = runtime === "runsc";
      const ws = await t.workspace(undefined, { runtime });
      const ensured = await t.sidecar.service.ensureWorkspace(ws);
      const r = ensured.isolation as IsolationReport;
      assert.ok(r, "the ensure result carries isolation");
      assert.equal(r.containerId, ensured.containerId);
      assert.equal(r.runtime, runtime);
      assert.deepEqual(r.user, { uid: TEST_UID, gid: TEST_GID, groups: [TEST_GID] });
      for (const [name, value] of Object.entries(r.capabilities))
        assert.match(value, gvisor && name === "ambient" ? /^unsupported$/ : ZERO, `capabilities.${name}`);
      assert.equal(r.noNewPrivs, true);
      assert.equal(r.seccomp, gvisor ? "gvisor-sentry" : "filter");
      assert.equal(r.readOnlyRoot, true);
      const mount = (p: string): { path: string; readOnly: boolean } | undefined => r.mounts.find((m) => m.path === p);
      assert.deepEqual(mount("/"), { path: "/", readOnly: true });
      assert.deepEqual(mount(ws.workspacePath), { path: ws.workspacePath, readOnly: false });
      assert.deepEqual(mount(CONTAINER_HOME), { path: CONTAINER_HOME, readOnly: false });
      assert.deepEqual(mount(CONTAINER_TMPDIR), { path: CONTAINER_TMPDIR, readOnly: false });
      assert.deepEqual(mount("/run/alive"), { path: "/run/alive", readOnly: true });
      assert.deepEqual(
        mount("/etc/hosts"),
        { path: "/etc/hosts", readOnly: true },
        "the engine's /etc files are read-only under a read-only root",
      );
      const d = t.config.defaultResources;
      // gVisor shows no cgroup files inside: the limits then come from the engine.
      assert.deepEqual(r.limits, {
        pids: hostPidsLimit(runtime, d.pids),
        memoryBytes: d.memoryMb * 1024 * 1024,
        cpus: d.cpus,
        source: gvisor ? "inspect" : "cgroup",
      });
      assert.deepEqual(r.network, { interfaces: ["lo"], defaultRoute: false });
      assert.deepEqual(r.egress, { policy: { mode: "public" }, enforcedBy: "sidecar-proxy" });
      assert.equal(r.modelKey, "proxy");
      assert.equal(r.hostReachable, false);
      assert.match(
        r.hostProbe,
        gvisor ? /No route to host|Network is unreachable/ : /Network is unreachable/,
        r.hostProbe,
      );
      assert.ok(r.measuredMs > 0 && r.measuredMs < 5_000, `measured in ${r.measuredMs} ms`);
      console.log(`${runtime}: isolation measured in ${r.measuredMs} ms`);

      const listed = (await t.sidecar.service.listWorkspaces()).workspaces.find(
        (w) => w.workspaceId === ws.workspaceId,
      );
      assert.deepEqual(listed?.isolation, r, "workspace.list shows what the ensure measured");

      const status = await statusInside(t, ensured.containerId);
      assert.equal(status.CapEff, r.capabilities.effective);
      assert.equal(status.CapBnd, r.capabilities.bounding);
      // What the report says of gVisor is what /proc/self/status shows there: no NoNewPrivs line, Seccomp 0.
      assert.equal(status.NoNewPrivs, gvisor ? undefined : "1");
      assert.equal(status.Seccomp, gvisor ? "0" : "2");
    });

  test("a warm ensure answers from the cache; a replaced container is measured again; the egress shown is the one in force", async () => {
    const ws = await t.workspace();
    const first = await t.sidecar.service.ensureWorkspace(ws);
    const again = await t.sidecar.service.ensureWorkspace(ws);
    assert.equal(again.created, false);
    assert.equal(again.isolation?.measuredAt, first.isolation?.measuredAt, "the same measurement, not a new one");

    const replaced = await t.sidecar.service.ensureWorkspace({
      ...ws,
      resources: { pids: 300, memoryMb: 768 },
      egress: { allow: ["example.com"], deny: [] },
    });
    assert.notEqual(replaced.containerId, first.containerId);
    assert.equal(replaced.isolation?.containerId, replaced.containerId);
    assert.notEqual(replaced.isolation?.measuredAt, first.isolation?.measuredAt);
    assert.equal(replaced.isolation?.limits.pids, 300);
    assert.equal(replaced.isolation?.limits.memoryBytes, 768 * 1024 * 1024);
    assert.deepEqual(replaced.isolation?.egress.policy, { mode: "list", allow: ["example.com"], deny: [] });
  });

  test("a container that does not hold what its spec asks is refused (-32006, naming each difference) and removed", async () => {
    const ws = await t.workspace();
    const made = await t.sidecar.service.ensureWorkspace(ws);
    const info = await t.docker.getContainer(made.containerId).inspect();
    await t.sidecar.service.removeWorkspace({ workspaceId: ws.workspaceId });
    // The same name, labels and spec hash, but a writable root, no no-new-privileges and a capability:
    // the sidecar adopts a container by its hash, so only the measurement can tell.
    const spec = buildWorkspaceSpec(
      ws,
      workspacePaths(t.stateDir, ws.workspaceId),
      await t.sidecar.workspaces.specContext(ws.runtime),
    );
    assert.equal(spec.options.Image, info.Config.Image);
    const host = spec.options.HostConfig ?? {};
    const tampered = await t.docker.createContainer({
      ...spec.options,
      HostConfig: { ...host, ReadonlyRootfs: false, SecurityOpt: [], CapAdd: ["CHOWN"] },
    });
    await assert.rejects(t.sidecar.service.ensureWorkspace(ws), (error: SidecarError) => {
      assert.equal(error.code, ErrorCode.notAllowed);
      const differences = (error.data?.differences ?? []) as string[];
      assert.ok(differences.includes("the root filesystem is writable"), differences.join("; "));
      assert.ok(differences.includes("no_new_privs is off"), differences.join("; "));
      assert.ok(
        differences.some((d) => /^capabilities bounding is "0+1"/.test(d)),
        differences.join("; "),
      );
      assert.match(error.message, /isolation differs/);
      return true;
    });
    await waitFor(
      async () => (await t.docker.listContainers({ all: true, filters: { id: [tampered.id] } })).length === 0,
      { what: "the refused container to be removed" },
    );
    assert.equal(
      (await t.sidecar.service.listWorkspaces()).workspaces.some((w) => w.workspaceId === ws.workspaceId),
      false,
      "nothing left of the refused workspace",
    );
  });
});

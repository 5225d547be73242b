import { afterEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import {
  ContainerCgroup,
  locateCgroupFiles,
  parseByteCount,
  parseCpuStatUsage,
  parseCpuacctUsage,
} from "../../src/docker/cgroup-stats.js";

const ID = "f983b7169c27cbd1ab8da912972f52caf026f78091ee8b2774e65c3482704f83";
const roots: string[] = [];

async function tree(files: Record<string, string>): Promise<string> {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), "cgroup-test-"));
  roots.push(root);
  for (const [relative, text] of Object.entries(files)) {
    await fs.mkdir(path.dirname(path.join(root, relative)), { recursive: true });
    await fs.writeFile(path.join(root, relative), text);
  }
  return root;
}

describe("cgroup files", () => {
  afterEach(async () => {
    await Promise.all(roots.splice(0).map((root) => fs.rm(root, { recursive: true, force: true })));
  });

  test("parses cpuacct.usage, cpu.stat and byte counts", () => {
    assert.equal(parseCpuacctUsage("835717407508\n"), 835717407508);
    assert.equal(parseCpuacctUsage("garbage"), null);
    assert.equal(parseCpuStatUsage("usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\n"), 1_500_000_000);
    assert.equal(parseCpuStatUsage("user_usec 1\n"), null);
    assert.equal(parseByteCount("1364463616\n"), 1364463616);
    assert.equal(parseByteCount("max\n"), null);
  });

  test("cgroup v1 under the cgroupfs driver: cpuacct and memory hierarchies; the peak resets by writing 0", async () => {
    const root = await tree({
      [`cpuacct/docker/${ID}/cpuacct.usage`]: "2000000000\n",
      [`memory/docker/${ID}/memory.usage_in_bytes`]: "1000\n",
      [`memory/docker/${ID}/memory.max_usage_in_bytes`]: "9000\n",
    });
    const cgroup = await ContainerCgroup.locate(ID, root);
    assert.ok(cgroup);
    assert.equal(cgroup.files.version, 1);
    assert.equal(await cgroup.cpuNs(), 2_000_000_000);
    assert.equal(await cgroup.memoryNow(), 1000);
    assert.equal(await cgroup.peakMemory(), 9000);
    assert.equal(await cgroup.resetPeak(), true);
    assert.equal(
      (await fs.readFile(path.join(root, `memory/docker/${ID}/memory.max_usage_in_bytes`), "utf8")).trim(),
      "0",
    );
  });

  test("cgroup v1 with a combined cpu,cpuacct hierarchy under the systemd driver", async () => {
    const scope = `system.slice/docker-${ID}.scope`;
    const root = await tree({
      [`cpu,cpuacct/${scope}/cpuacct.usage`]: "5\n",
      [`memory/${scope}/memory.usage_in_bytes`]: "7\n",
      [`memory/${scope}/memory.max_usage_in_bytes`]: "8\n",
    });
    const files = await locateCgroupFiles(ID, root);
    assert.equal(files?.cpu, path.join(root, "cpu,cpuacct", scope, "cpuacct.usage"));
  });

  test("cgroup v2: cpu.stat and memory.peak, which is not reset", async () => {
    const root = await tree({
      "cgroup.controllers": "cpu memory pids\n",
      [`system.slice/docker-${ID}.scope/cpu.stat`]: "usage_usec 250000\n",
      [`system.slice/docker-${ID}.scope/memory.current`]: "4096\n",
      [`system.slice/docker-${ID}.scope/memory.peak`]: "8192\n",
    });
    const cgroup = await ContainerCgroup.locate(ID, root);
    assert.equal(cgroup?.files.version, 2);
    assert.equal(await cgroup?.cpuNs(), 250_000_000);
    assert.equal(await cgroup?.peakMemory(), 8192);
    assert.equal(await cgroup?.resetPeak(), false);
  });

  test("no cgroup for the container: null; a cgroup that vanished reads null", async () => {
    const root = await tree({ [`cpuacct/docker/other/cpuacct.usage`]: "1\n" });
    assert.equal(await ContainerCgroup.locate(ID, root), null);
    const live = await tree({
      [`cpuacct/docker/${ID}/cpuacct.usage`]: "1\n",
      [`memory/docker/${ID}/memory.usage_in_bytes`]: "1\n",
    });
    const cgroup = await ContainerCgroup.locate(ID, live);
    await fs.rm(path.join(live, "cpuacct"), { recursive: true });
    assert.equal(await cgroup?.cpuNs(), null);
  });
});

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { describeLeftovers, loopDevicesUnder, mountsUnder } from "../../bench/leftovers.js";

const ROOT = "/tmp/alive-codex-bench-AbC123";

describe("bench: what of a run is left on the host", () => {
  test("/proc/mounts: the mounts under the run's root, escaped paths read back, nothing outside it", () => {
    const procMounts = [
      "/dev/vda / ext4 rw,relatime 0 0",
      `/dev/loop3 ${ROOT}/restart-state/workspaces/bench-restart-1 ext4 rw,nosuid,nodev,relatime,discard 0 0`,
      `/dev/loop4 ${ROOT}/state/workspaces/with\\040space ext4 rw 0 0`,
      `/dev/loop5 ${ROOT}-other/state/workspaces/x ext4 rw 0 0`,
      "tmpfs /tmp tmpfs rw 0 0",
      "",
    ].join("\n");
    assert.deepEqual(mountsUnder(ROOT, procMounts), [
      `${ROOT}/restart-state/workspaces/bench-restart-1`,
      `${ROOT}/state/workspaces/with space`,
    ]);
    assert.deepEqual(mountsUnder(ROOT, "/dev/vda / ext4 rw 0 0\n"), []);
  });

  test("losetup -a: loop devices backed by a file under the root, deleted files included", () => {
    const list = [
      `/dev/loop0: [64768]:1835 (${ROOT}/restart-state/disks/bench-restart-1.img (deleted))`,
      `/dev/loop1: [64768]:1840 (${ROOT}/state/disks/bench-warm-2.img)`,
      "/dev/loop2: [64768]:12 (/var/lib/snapd/snaps/core_1.snap)",
      `/dev/loop7: [64768]:13 (${ROOT}-other/disks/a.img)`,
      "",
    ].join("\n");
    assert.deepEqual(loopDevicesUnder(ROOT, list), ["/dev/loop0", "/dev/loop1"]);
    assert.deepEqual(loopDevicesUnder(ROOT, ""), []);
  });

  test("the summary line: nothing left, left and released, or left for good", () => {
    const none = { mounts: [], loopDevices: [] };
    assert.equal(
      describeLeftovers("bench-1", none, none),
      "cleanup: nothing of run bench-1 is left (losetup -a and /proc/mounts show none of its workspace disks)",
    );
    const left = { mounts: [`${ROOT}/w`], loopDevices: ["/dev/loop0"] };
    assert.equal(
      describeLeftovers("bench-1", left, none),
      `cleanup: LEFT by run bench-1 after its sections removed their workspaces: mount ${ROOT}/w, loop device /dev/loop0 (released by the bench's backstop)`,
    );
    assert.match(
      describeLeftovers("bench-1", left, { mounts: [], loopDevices: ["/dev/loop0"] }),
      /\(the backstop could not release loop device \/dev\/loop0\)$/,
    );
  });
});

/** Workspace disks, the pure parts: the mount table, the limits a workspace gets, usage from statfs, the settings, the auto decision and params. */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { ConfigError, loadConfig } from "../../src/config.js";
import { ErrorCode, SidecarError } from "../../src/errors.js";
import { parseEnsureWorkspaceParams } from "../../src/rpc/params.js";
import { createLogger } from "../../src/log.js";
import {
  decideDiskEnforcement,
  describeDiskHealth,
  parseDiskLimits,
  type DiskCapabilities,
} from "../../src/shared/disk-settings.js";
import { DEFAULT_DISK } from "../../src/shared/limits.js";
import { probeDiskCapabilities } from "../../src/workspace/disk-capabilities.js";
import { WorkspaceDisks, diskImagePath } from "../../src/workspace/disk-image.js";
import { resolveDiskLimits, usageFromStatfs } from "../../src/workspace/disk-limits.js";
import { parseMountInfo } from "../../src/workspace/mountinfo.js";

describe("the mount table (mountinfo)", () => {
  test("finds mount point, type and source past a varying number of optional fields", () => {
    const text = [
      "26 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard",
      "45 26 7:0 / /var/lib/alive-codex/workspaces/ws-1 rw,nosuid,nodev,relatime - ext4 /dev/loop0 rw,discard",
      "46 26 7:1 / /srv/state rw,relatime shared:7 master:3 propagate_from:2 - xfs /dev/loop1 rw,prjquota",
      "",
      "garbage line",
    ].join("\n");
    assert.deepEqual(parseMountInfo(text), [
      { mountPoint: "/", fsType: "ext4", source: "/dev/vda" },
      { mountPoint: "/var/lib/alive-codex/workspaces/ws-1", fsType: "ext4", source: "/dev/loop0" },
      { mountPoint: "/srv/state", fsType: "xfs", source: "/dev/loop1" },
    ]);
  });

  test("unescapes the kernel's octal escapes in paths (a space, a tab, a backslash)", () => {
    const [entry] = parseMountInfo("50 26 7:2 / /srv/a\\040b\\011c\\134d rw - ext4 /dev/loop2 rw");
    assert.equal(entry?.mountPoint, "/srv/a b\tc\\d");
  });
});

describe("the disk a workspace gets", () => {
  const defaults = { diskMb: 10_240, diskInodes: 262_144 };
  const max = { diskMb: 20_480, diskInodes: 1_000_000 };

  test("the request, else the operator's default; a small disk's default inodes are capped at one per 16 KiB", () => {
    assert.deepEqual(resolveDiskLimits({}, defaults, max), defaults);
    assert.deepEqual(resolveDiskLimits({ resources: { diskMb: 2048, diskInodes: 5000 } }, defaults, max), {
      diskMb: 2048,
      diskInodes: 5000,
    });
    assert.deepEqual(resolveDiskLimits({ resources: { diskMb: 64 } }, defaults, max), { diskMb: 64, diskInodes: 4096 });
  });

  test("above the operator's ceiling: -32006 naming the field; more inodes than a quarter of the disk holds: -32602", () => {
    const refuses = (resources: { diskMb?: number; diskInodes?: number }, code: number, field: string): void => {
      assert.throws(
        () => resolveDiskLimits({ resources }, defaults, max),
        (error: unknown) => {
          assert.ok(error instanceof SidecarError);
          assert.equal(error.code, code);
          assert.equal(error.data?.field, field);
          return true;
        },
      );
    };
    refuses({ diskMb: 20_481 }, ErrorCode.notAllowed, "resources.diskMb");
    refuses({ diskInodes: 1_000_001 }, ErrorCode.notAllowed, "resources.diskInodes");
    refuses({ diskMb: 64, diskInodes: 65_536 + 1 }, ErrorCode.invalidParams, "resources.diskInodes");
    assert.deepEqual(resolveDiskLimits({ resources: { diskMb: 64, diskInodes: 65_536 } }, defaults, max), {
      diskMb: 64,
      diskInodes: 65_536,
    });
  });

  test("images live in the state dir's disks/, one per workspace", () => {
    assert.equal(diskImagePath("/var/lib/alive-codex", "ws-1"), "/var/lib/alive-codex/disks/ws-1.img");
  });
});

describe("a disk's usage from statfs", () => {
  test("the limit is what the tenant can reach: used plus available, root's reserve left out", () => {
    const usage = usageFromStatfs({
      bsize: 4096,
      blocks: 16_000,
      bfree: 6_000,
      bavail: 5_000,
      files: 4096,
      ffree: 4000,
    });
    assert.deepEqual(usage, { limitBytes: 15_000 * 4096, usedBytes: 10_000 * 4096, limitInodes: 4096, usedInodes: 96 });
  });
});

describe("disk settings", () => {
  test("auto by default, with the default and ceiling stated; off and image by name", () => {
    const config = loadConfig({}, {});
    assert.equal(config.diskEnforcement, "auto");
    assert.equal(loadConfig({ "--disk": "off" }, {}).diskEnforcement, "off");
    assert.equal(loadConfig({}, { ALIVE_CODEX_DISK: "auto" }).diskEnforcement, "auto");
    assert.deepEqual(config.defaultDisk, DEFAULT_DISK);
    assert.ok(config.maxDisk.diskMb >= config.defaultDisk.diskMb);
  });

  test("image enforcement, a default and a ceiling from flags or variables", () => {
    const config = loadConfig(
      { "--disk": "image" },
      { ALIVE_CODEX_DISK_DEFAULT: "diskMb=512", ALIVE_CODEX_DISK_MAX: "diskMb=4096,diskInodes=500000" },
    );
    assert.equal(config.diskEnforcement, "image");
    assert.deepEqual(config.defaultDisk, { diskMb: 512, diskInodes: DEFAULT_DISK.diskInodes });
    assert.deepEqual(config.maxDisk, { diskMb: 4096, diskInodes: 500_000 });
  });

  test("bad values name the setting; a default above the ceiling names both", () => {
    const refuses = (fn: () => unknown, setting: string, expected?: RegExp): void => {
      assert.throws(fn, (error: unknown) => {
        assert.ok(error instanceof ConfigError, String(error));
        assert.equal(error.setting, setting);
        if (expected) assert.match(error.message, expected);
        return true;
      });
    };
    refuses(() => loadConfig({}, { ALIVE_CODEX_DISK: "xfs" }), "ALIVE_CODEX_DISK");
    refuses(() => parseDiskLimits("--disk-default", "diskMb=10", DEFAULT_DISK), "--disk-default diskMb");
    refuses(() => parseDiskLimits("--disk-default", "sizeMb=100", DEFAULT_DISK), "--disk-default");
    refuses(
      () => loadConfig({ "--disk-default": "diskMb=8192", "--disk-max": "diskMb=4096" }, {}),
      "--disk-default",
      /diskMb \(here 8192\) at most --disk-max diskMb=4096/,
    );
  });
});

describe("resources.diskMb and resources.diskInodes in workspace.ensure", () => {
  let dir: string;
  let root: string;
  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), "alive-disk-params-"));
    root = path.join(dir, "root");
    await fs.mkdir(path.join(root, "w"), { recursive: true });
  });
  after(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });
  const params = (resources: Record<string, unknown>): Record<string, unknown> => ({
    workspaceId: "ws-1",
    userId: "u",
    uid: 10001,
    gid: 1000,
    workspacePath: path.join(root, "w"),
    resources,
  });
  const policy = (): Parameters<typeof parseEnsureWorkspaceParams>[1] => ({
    uidRange: { min: 10000, max: 65533 },
    gidRange: { min: 1000, max: 65533 },
    allowRoot: false,
    workspaceRoots: [root],
  });

  test("whole numbers within range are kept", async () => {
    const parsed = await parseEnsureWorkspaceParams(params({ diskMb: 128, diskInodes: 4096, memoryMb: 256 }), policy());
    assert.deepEqual(parsed.resources, { memoryMb: 256, diskMb: 128, diskInodes: 4096 });
  });

  test("anything else is -32602 naming the field", async () => {
    for (const [resources, field] of [
      [{ diskMb: 63 }, "resources.diskMb"],
      [{ diskMb: 1.5 }, "resources.diskMb"],
      [{ diskMb: "100" }, "resources.diskMb"],
      [{ diskInodes: 10 }, "resources.diskInodes"],
    ] as const) {
      await assert.rejects(parseEnsureWorkspaceParams(params(resources), policy()), (error: unknown) => {
        assert.ok(error instanceof SidecarError);
        assert.equal(error.code, ErrorCode.invalidParams);
        assert.equal(error.data?.field, field, JSON.stringify(resources));
        return true;
      });
    }
  });
});

describe("ALIVE_CODEX_DISK=auto: the decision over the probed capabilities", () => {
  const CAPABLE: DiskCapabilities = {
    root: true,
    capSysAdmin: true,
    missingTools: [],
    loopControl: "ok",
    stateDirPropagation: null,
  };
  /** The compose test's host: root in a default container (no CAP_SYS_ADMIN, no loop devices), e2fsprogs absent. */
  const CONTAINER: DiskCapabilities = {
    root: true,
    capSysAdmin: false,
    missingTools: ["mkfs.ext4", "e2fsck", "resize2fs"],
    loopControl: "missing",
    stateDirPropagation: "rprivate",
  };

  test("a capable host: auto and image both enforce; off stays off without probing", () => {
    assert.deepEqual(decideDiskEnforcement("auto", CAPABLE), { enforcement: "image", requested: "auto", missing: [] });
    assert.deepEqual(decideDiskEnforcement("image", CAPABLE), {
      enforcement: "image",
      requested: "image",
      missing: [],
    });
    assert.deepEqual(decideDiskEnforcement("off", null), { enforcement: "off", requested: "off", missing: [] });
    assert.deepEqual(decideDiskEnforcement("off", CAPABLE), { enforcement: "off", requested: "off", missing: [] });
    // In a container whose state dir is bound rshared (docs/security.md), as on the host.
    assert.equal(decideDiskEnforcement("auto", { ...CAPABLE, stateDirPropagation: "rshared" }).enforcement, "image");
    assert.equal(decideDiskEnforcement("auto", { ...CAPABLE, stateDirPropagation: "shared" }).enforcement, "image");
  });

  test("each missing capability alone makes auto fall back to off, naming it and how to get it", () => {
    const cases: Array<[Partial<DiskCapabilities>, RegExp]> = [
      [{ root: false, capSysAdmin: false }, /not root \(run it as root/],
      [{ capSysAdmin: false }, /lacks CAP_SYS_ADMIN \(in a container: cap_add SYS_ADMIN/],
      [{ missingTools: ["mkfs.ext4"] }, /^mkfs\.ext4 is not installed \(install e2fsprogs\)$/],
      [{ missingTools: ["losetup"] }, /^losetup is not installed \(install util-linux\)$/],
      [{ loopControl: "missing" }, /\/dev\/loop-control is missing \(load the loop module: modprobe loop/],
      [{ loopControl: "denied" }, /\/dev\/loop-control cannot be opened \(in a container: a device cgroup rule/],
      // A privileged sidecar container whose state dir is bound as the engine does by default: its mounts would not reach the engine.
      [
        { stateDirPropagation: "rprivate" },
        /state dir is bind-mounted into the sidecar's container with propagation rprivate: a disk mounted there would not reach the engine \(bind-mount it with bind-propagation=rshared/,
      ],
      [{ stateDirPropagation: "" }, /propagation unset/],
      // Docker's default AppArmor profile denies mount(2) even to a container with CAP_SYS_ADMIN.
      [
        { appArmor: "docker-default (enforce)" },
        /^the sidecar runs under the AppArmor profile docker-default \(enforce\), which denies mount\(2\) \(in a container: security_opt apparmor=unconfined/,
      ],
    ];
    for (const [change, expected] of cases) {
      const decision = decideDiskEnforcement("auto", { ...CAPABLE, ...change });
      assert.equal(decision.enforcement, "off", JSON.stringify(change));
      assert.equal(decision.requested, "auto");
      assert.equal(decision.missing.length, 1, decision.missing.join("; "));
      assert.match(decision.missing[0] ?? "", expected);
    }
  });

  test("AppArmor: unconfined, a profile in complain mode or none at all is no obstacle", () => {
    for (const appArmor of ["unconfined", "docker-default (complain)", null, undefined]) {
      assert.equal(decideDiskEnforcement("auto", { ...CAPABLE, appArmor }).enforcement, "image", String(appArmor));
    }
  });

  test("in a default container: off, with every gap named once (tools grouped by package)", () => {
    const decision = decideDiskEnforcement("auto", CONTAINER);
    assert.equal(decision.enforcement, "off");
    assert.deepEqual(decision.missing, [
      "the sidecar lacks CAP_SYS_ADMIN (in a container: cap_add SYS_ADMIN; docs/security.md, Disk)",
      "mkfs.ext4, e2fsck, resize2fs are not installed (install e2fsprogs)",
      "/dev/loop-control is missing (load the loop module: modprobe loop; in a container: pass the loop devices in, docs/security.md, Disk)",
      "the state dir is bind-mounted into the sidecar's container with propagation rprivate: a disk mounted there would not reach the engine (bind-mount it with bind-propagation=rshared, docs/security.md, Disk)",
    ]);
  });

  test("image on a host that cannot: refused, naming what is missing and the way out", () => {
    assert.throws(
      () => decideDiskEnforcement("image", CONTAINER),
      /ALIVE_CODEX_DISK=image: this host cannot make workspace disks: the sidecar lacks CAP_SYS_ADMIN.*e2fsprogs.*loop-control.*set ALIVE_CODEX_DISK=auto .* or off/,
    );
  });

  test("health's disk entry, as health and doctor show it", () => {
    assert.equal(
      describeDiskHealth({ enforcement: "image", attached: 2, requested: "auto" }),
      "limited (loop-mounted image per workspace, 2 attached; chosen automatically: ALIVE_CODEX_DISK=auto)",
    );
    assert.equal(
      describeDiskHealth({ enforcement: "image", attached: 0, requested: "image" }),
      "limited (loop-mounted image per workspace, 0 attached)",
    );
    assert.equal(
      describeDiskHealth({ enforcement: "none", attached: 0, requested: "off" }),
      "NOT LIMITED (ALIVE_CODEX_DISK=off)",
    );
    assert.equal(
      describeDiskHealth({ enforcement: "none", attached: 0, requested: "auto", missing: ["a", "b"] }),
      "NOT LIMITED (ALIVE_CODEX_DISK=auto: this host cannot enforce disk limits: a; b)",
    );
    // An older sidecar's entry, without requested.
    assert.equal(describeDiskHealth({ enforcement: "none", attached: 0 }), "NOT LIMITED (ALIVE_CODEX_DISK=off)");
  });

  test("WorkspaceDisks.open with auto on a host that cannot: one warning naming what is missing, health says why, nothing made", async () => {
    const lines: Array<{ level: string; line: string }> = [];
    const log = createLogger({ level: "debug", write: (line, level) => lines.push({ level, line }) });
    const stateDir = path.join(os.tmpdir(), `alive-disk-auto-${process.pid}-never-made`);
    const disks = await WorkspaceDisks.open({
      stateDir,
      log,
      enforcement: "auto",
      capabilities: CONTAINER,
      defaults: DEFAULT_DISK,
      max: DEFAULT_DISK,
    });
    assert.equal(disks.enforced, false);
    assert.equal(disks.resolve({ resources: { diskMb: 64 } }), null);
    assert.deepEqual(disks.health(), {
      enforcement: "none",
      attached: 0,
      requested: "auto",
      missing: decideDiskEnforcement("auto", CONTAINER).missing,
    });
    const warnings = lines.filter((l) => l.level === "warn");
    assert.equal(warnings.length, 1, JSON.stringify(lines));
    assert.match(
      warnings[0]?.line ?? "",
      /workspace disks are not limited.*ALIVE_CODEX_DISK=auto: this host cannot enforce them: the sidecar lacks CAP_SYS_ADMIN.*install e2fsprogs.*loop-control is missing/,
    );
    await assert.rejects(fs.stat(stateDir), "nothing is made on a host that cannot");
    await assert.rejects(
      WorkspaceDisks.open({
        stateDir,
        log,
        enforcement: "image",
        capabilities: CONTAINER,
        defaults: DEFAULT_DISK,
        max: DEFAULT_DISK,
      }),
      /ALIVE_CODEX_DISK=image: this host cannot make workspace disks/,
    );
  });

  test("auto on a host that cannot, over a state dir whose workspaces have disks: refused, naming the disks and the way out", async () => {
    const stateDir = await fs.mkdtemp(path.join(os.tmpdir(), "alive-disk-auto-kept-"));
    try {
      await fs.mkdir(path.join(stateDir, "disks"));
      await fs.writeFile(path.join(stateDir, "disks", "ws-1.img"), "");
      const log = createLogger({ level: "error", write: () => undefined });
      await assert.rejects(
        WorkspaceDisks.open({
          stateDir,
          log,
          enforcement: "auto",
          capabilities: CONTAINER,
          defaults: DEFAULT_DISK,
          max: DEFAULT_DISK,
        }),
        /ALIVE_CODEX_DISK=auto: 1 workspace disk\(s\) in .*disks were made while disk limits were in force, but this host cannot enforce them now: the sidecar lacks CAP_SYS_ADMIN.*set ALIVE_CODEX_DISK=off/,
      );
      // off is the operator's explicit choice: it starts.
      assert.equal(
        (await WorkspaceDisks.open({ stateDir, log, enforcement: "off", defaults: DEFAULT_DISK, max: DEFAULT_DISK }))
          .enforced,
        false,
      );
    } finally {
      await fs.rm(stateDir, { recursive: true, force: true });
    }
  });

  test("the probe reads this process's real capabilities (whatever they are here) in the shape the decision takes", async () => {
    const caps = await probeDiskCapabilities();
    assert.equal(caps.root, process.getuid?.() === 0);
    assert.equal(caps.stateDirPropagation, null);
    assert.equal((await probeDiskCapabilities("rprivate")).stateDirPropagation, "rprivate");
    assert.ok(["ok", "missing", "denied"].includes(caps.loopControl));
    assert.ok(
      caps.appArmor === null || (typeof caps.appArmor === "string" && caps.appArmor !== ""),
      String(caps.appArmor),
    );
    assert.ok(
      caps.missingTools.every((tool) =>
        ["mkfs.ext4", "e2fsck", "resize2fs", "mount", "umount", "losetup"].includes(tool),
      ),
    );
    if (!caps.root) assert.equal(decideDiskEnforcement("auto", caps).enforcement, "off");
  });
});

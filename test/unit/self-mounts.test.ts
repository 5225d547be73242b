import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ErrorCode } from "../../src/errors.js";
import { containerIdFromCgroup, containerIdFromMountinfo } from "../../src/docker/self-container.js";
import {
  describeMountMismatch,
  findMountMismatches,
  stateDirPropagation,
  selfMountError,
  type ContainerMount,
} from "../../src/docker/self-mount-rule.js";

const ID = "1828c8d4c6a8e86e30baa390a697022eef43fdd2c9eb0d163ad9ff73e7658df3";
const OTHER = "d0590fd10e6c296b1c70681273f64549cfd733852f125c6219aa855700f3540f";
const paths = { stateDir: "/var/lib/alive-codex", workspaceRoots: ["/srv/alive/workspaces", "/data/projects"] };

const bind = (source: string, destination: string, rw = true): ContainerMount => ({
  Type: "bind",
  Source: source,
  Destination: destination,
  RW: rw,
});
const socket = bind("/var/run/docker.sock", "/var/run/docker.sock");

describe("findMountMismatches", () => {
  test("identity bind mounts of each path pass", () => {
    const mounts = [
      socket,
      bind("/var/lib/alive-codex", "/var/lib/alive-codex"),
      bind("/srv/alive/workspaces", "/srv/alive/workspaces"),
      bind("/data/projects", "/data/projects", false),
    ];
    assert.deepEqual(findMountMismatches(mounts, paths), []);
  });

  test("an identity mount of a parent directory covers the paths below it; trailing slashes do not matter", () => {
    const mounts = [bind("/var/lib/", "/var/lib"), bind("/srv/alive", "/srv/alive/"), bind("/data", "/data")];
    assert.deepEqual(
      findMountMismatches(mounts, { stateDir: "/var/lib/alive-codex/", workspaceRoots: paths.workspaceRoots }),
      [],
    );
  });

  test("a path that nothing covers is not mounted", () => {
    const mounts = [
      socket,
      bind("/var/lib/alive-codex", "/var/lib/alive-codex"),
      bind("/data/projects", "/data/projects"),
    ];
    assert.deepEqual(findMountMismatches(mounts, paths), [
      { setting: "workspaceRoots", path: "/srv/alive/workspaces", reason: "not-mounted" },
    ]);
  });

  test("a bind mount from another host path is a mismatch that names the host path of the setting", () => {
    const mounted = bind("/home/ops/alive-state", "/var/lib");
    const mismatches = findMountMismatches([mounted, bind("/srv", "/srv"), bind("/data", "/data")], paths);
    assert.deepEqual(mismatches, [
      {
        setting: "stateDir",
        path: "/var/lib/alive-codex",
        reason: "different-source",
        mount: mounted,
        hostPath: "/home/ops/alive-state/alive-codex",
      },
    ]);
  });

  test("the deepest covering mount decides: an identity parent does not hide a mismatched child", () => {
    const child = bind("/elsewhere/state", "/var/lib/alive-codex");
    const mismatches = findMountMismatches([bind("/", "/"), child], paths);
    assert.equal(mismatches.length, 1);
    assert.equal(mismatches[0]?.reason, "different-source");
    assert.equal(mismatches[0]?.hostPath, "/elsewhere/state");
  });

  test("a mount point below a path that breaks identity is reported with the path it sits in", () => {
    const nested = bind("/mnt/other", "/srv/alive/workspaces/ws-1");
    const volume: ContainerMount = {
      Type: "volume",
      Source: "/var/lib/docker/volumes/x/_data",
      Destination: "/data/projects/cache",
      RW: true,
    };
    const mismatches = findMountMismatches(
      [bind("/", "/"), nested, volume, bind("/srv/alive/workspaces/ws-2", "/srv/alive/workspaces/ws-2")],
      paths,
    );
    assert.deepEqual(
      mismatches.map((m) => [m.setting, m.path, m.reason, m.within]),
      [
        ["workspaceRoots", "/srv/alive/workspaces/ws-1", "different-source", "/srv/alive/workspaces"],
        ["workspaceRoots", "/data/projects/cache", "not-a-bind-mount", "/data/projects"],
      ],
    );
  });

  test("a named volume is not the host directory of the same path", () => {
    const volume: ContainerMount = {
      Type: "volume",
      Source: "/var/lib/docker/volumes/state/_data",
      Destination: "/var/lib/alive-codex",
      RW: true,
    };
    const [mismatch] = findMountMismatches([volume, bind("/srv", "/srv"), bind("/data", "/data")], paths);
    assert.equal(mismatch?.reason, "not-a-bind-mount");
  });

  test("the state dir must be writable; a read-only workspace root is fine", () => {
    const mismatches = findMountMismatches(
      [
        bind("/var/lib/alive-codex", "/var/lib/alive-codex", false),
        bind("/srv", "/srv", false),
        bind("/data", "/data", false),
      ],
      paths,
    );
    assert.deepEqual(
      mismatches.map((m) => [m.setting, m.reason]),
      [["stateDir", "read-only"]],
    );
  });

  test("each problem is reported once, even when a workspace root holds the state dir", () => {
    const mismatches = findMountMismatches([bind("/x", "/srv/alive/workspaces/ws/inner")], {
      stateDir: "/srv/alive/state",
      workspaceRoots: ["/srv/alive/workspaces", "/srv/alive/workspaces"],
    });
    assert.deepEqual(
      mismatches.map((m) => [m.setting, m.path, m.reason]),
      [
        ["stateDir", "/srv/alive/state", "not-mounted"],
        ["workspaceRoots", "/srv/alive/workspaces", "not-mounted"],
        ["workspaceRoots", "/srv/alive/workspaces/ws/inner", "different-source"],
      ],
    );
  });
});

describe("the mismatch message", () => {
  test("names the path, the setting, what is mounted there and the fix, on one line", () => {
    const mounted = bind("/home/ops/state", "/var/lib/alive-codex");
    const error = selfMountError(
      ID,
      findMountMismatches([mounted, bind("/srv", "/srv"), bind("/data", "/data")], paths),
    );
    assert.equal(error.code, ErrorCode.notAllowed);
    assert.doesNotMatch(error.message, /\n/);
    assert.match(error.message, /container 1828c8d4c6a8\b/);
    assert.match(error.message, /ALIVE_CODEX_STATE_DIR/);
    assert.match(error.message, /\/var\/lib\/alive-codex is host path \/home\/ops\/state/);
    assert.match(error.message, /"\/home\/ops\/state:\/home\/ops\/state"/);
    assert.match(error.message, /"\/var\/lib\/alive-codex:\/var\/lib\/alive-codex"/);
    assert.match(error.message, /same absolute path/);
    assert.equal(error.data?.field, "stateDir");
  });

  test("says what to do when a path is not mounted at all", () => {
    const text = describeMountMismatch({ setting: "workspaceRoots", path: "/srv/ws", reason: "not-mounted" });
    assert.match(text, /ALIVE_CODEX_WORKSPACE_ROOTS/);
    assert.match(text, /\/srv\/ws is not mounted into the sidecar's container/);
    assert.match(text, /"\/srv\/ws:\/srv\/ws"/);
  });
});

describe("finding the sidecar's container id", () => {
  test("from the engine's bind mounts of /etc/hostname, /etc/hosts and /etc/resolv.conf", () => {
    const mountinfo = [
      `1222 1180 0:120 / / rw,relatime master:9 - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/AB:/x`,
      `1239 1222 254:0 /var/lib/docker/containers/${ID}/resolv.conf /etc/resolv.conf rw,relatime - ext4 /dev/vda rw`,
      `1240 1222 254:0 /var/lib/docker/containers/${ID}/hostname /etc/hostname rw,relatime - ext4 /dev/vda rw`,
    ].join("\n");
    assert.equal(containerIdFromMountinfo(mountinfo), ID);
    // A separate /var/lib/docker file system shows the root relative to it; Podman keeps userdata/ there.
    assert.equal(containerIdFromMountinfo(`51 40 8:3 /containers/${ID}/hosts /etc/hosts rw - ext4 /dev/sda3 rw`), ID);
    assert.equal(
      containerIdFromMountinfo(
        `51 40 8:3 /storage/overlay-containers/${ID}/userdata/hostname /etc/hostname rw - xfs /dev/sda3 rw`,
      ),
      ID,
    );
  });

  test("not from other containers' directories in a host's mountinfo", () => {
    const host = [
      `42 27 254:0 /var/lib/docker /var/lib/docker rw,relatime shared:1 - ext4 /dev/vda rw`,
      `300 42 0:80 / /var/lib/docker/containers/${OTHER}/mounts/shm rw - tmpfs shm rw,size=65536k`,
      `155 27 0:4 net:[4026532261] /run/docker/netns/c842ea5f4205 rw - nsfs nsfs rw`,
    ].join("\n");
    assert.equal(containerIdFromMountinfo(host), null);
    assert.equal(containerIdFromMountinfo(""), null);
  });

  test("from /proc/self/cgroup when the cgroup path shows it", () => {
    assert.equal(containerIdFromCgroup(`12:memory:/docker/${ID}\n0::/docker/${ID}\n`), ID);
    assert.equal(containerIdFromCgroup(`0::/system.slice/docker-${ID}.scope\n`), ID);
    assert.equal(containerIdFromCgroup(`0::/machine.slice/libpod-${ID}.scope/container\n`), ID);
    assert.equal(containerIdFromCgroup("0::/\n"), null);
    assert.equal(containerIdFromCgroup("4:memory:/process_api/900edadbf5c78ae4d5b35898ccd622e8\n0::/\n"), null);
    assert.equal(containerIdFromCgroup(`0::/user.slice/${ID}\n`), null);
  });
});

describe("stateDirPropagation (workspace disks in a container reach the engine only through a shared bind)", () => {
  test("the propagation of the deepest mount holding the state dir; empty when none names one or none covers it", () => {
    const mounts = [
      { Type: "bind", Source: "/", Destination: "/", Propagation: "rprivate" },
      { Type: "bind", Source: "/var/lib/alive-codex", Destination: "/var/lib/alive-codex", Propagation: "rshared" },
      { Type: "bind", Source: "/srv", Destination: "/srv" },
    ];
    assert.equal(stateDirPropagation(mounts, "/var/lib/alive-codex/"), "rshared");
    assert.equal(stateDirPropagation(mounts, "/var/lib/alive-codex/state"), "rshared");
    assert.equal(stateDirPropagation(mounts, "/var/lib/other"), "rprivate");
    assert.equal(stateDirPropagation(mounts, "/srv/state"), "");
    assert.equal(stateDirPropagation([], "/var/lib/alive-codex"), "");
  });
});

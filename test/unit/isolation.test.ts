import { describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  isolationDifferences,
  parseCgroupLimits,
  parseIsolation,
  parseMounts,
  type InspectFacts,
  type IsolationExpectation,
} from "../../src/workspace/isolation.js";
import { expectationFromSpec } from "../../src/workspace/isolation-probe.js";
import { renderIsolationTable, ISOLATION_HEADER } from "../../src/cli/isolation-table.js";
import { sampleIsolation } from "../support/fake-service.js";
import type { WorkspaceSummary } from "../../src/service.js";

const MOUNTINFO_RUNC = [
  "77 53 0:39 / / ro,relatime master:2 - overlay overlay rw,lowerdir=/x",
  "78 77 0:42 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw",
  "81 77 0:45 / /sys ro,nosuid,nodev,noexec,relatime - sysfs sysfs ro",
  "93 79 0:47 / /dev/shm rw,nosuid,nodev,noexec,relatime - tmpfs shm rw,size=65536k",
  "94 77 254:0 /srv/ws /srv/ws rw,relatime - ext4 /dev/vda rw",
  "95 77 254:0 /state/home /home/alive rw,relatime - ext4 /dev/vda rw",
  "96 77 254:0 /state/run /run/alive ro,relatime - ext4 /dev/vda rw",
  "97 77 0:50 / /var/tmp rw,nosuid,nodev - tmpfs tmpfs rw,size=65536k",
  "98 77 254:0 /x/hosts /etc/hosts ro,relatime - ext4 /dev/vda rw",
];

function output(
  status: string[],
  extra: { setpriv?: string[]; cgroup?: string[]; connect?: string[]; mountinfo?: string[]; net?: string[] } = {},
): string {
  return [
    "@@status",
    ...status,
    "@@setpriv",
    ...(extra.setpriv ?? []),
    "@@mountinfo",
    ...(extra.mountinfo ?? MOUNTINFO_RUNC),
    "@@cgroup",
    ...(extra.cgroup ?? [
      "/sys/fs/cgroup/pids/pids.max 512",
      "/sys/fs/cgroup/memory/memory.limit_in_bytes 2147483648",
      "/sys/fs/cgroup/cpu/cpu.cfs_quota_us 1000000",
      "/sys/fs/cgroup/cpu/cpu.cfs_period_us 1000000",
    ]),
    "@@route",
    "Iface\tDestination\tGateway \tFlags",
    "@@net",
    "Inter-|   Receive",
    " face |bytes",
    ...(extra.net ?? ["    lo:       0       0    0"]),
    "@@connect",
    ...(extra.connect ?? ["192.0.2.2 Network is unreachable"]),
    "@@end",
  ].join("\n");
}

const RUNC_STATUS = [
  "Uid:\t10001\t10001\t10001\t10001",
  "Gid:\t10001\t10001\t10001\t10001",
  "Groups:\t10001 ",
  "CapPrm:\t0000000000000000",
  "CapEff:\t0000000000000000",
  "CapBnd:\t0000000000000000",
  "CapAmb:\t0000000000000000",
  "NoNewPrivs:\t1",
  "Seccomp:\t2",
];
const GVISOR_STATUS = [
  "Uid:\t10001\t10001\t10001\t10001",
  "Gid:\t10001\t10001\t10001\t10001",
  "Groups:\t 10001 ",
  "CapPrm:\t0000000000000000",
  "CapEff:\t0000000000000000",
  "CapBnd:\t0000000000000000",
  "Seccomp:\t0",
];
const facts = (runtime: string): InspectFacts => ({
  containerId: "c1",
  runtime,
  readOnlyRootfs: true,
  pids: 512,
  memoryBytes: 2147483648,
  cpus: 1,
});
const expected: IsolationExpectation = {
  runtime: "runc",
  uid: 10001,
  gid: 10001,
  mounts: [
    { path: "/srv/ws", readOnly: false },
    { path: "/home/alive", readOnly: false },
    { path: "/run/alive", readOnly: true },
    { path: "/var/tmp", readOnly: false },
  ],
  pids: 512,
  memoryBytes: 2147483648,
  cpus: 1,
};

describe("isolation report parsing", () => {
  test("a runc container as the sidecar makes it matches its spec", () => {
    const r = parseIsolation(facts("runc"), output(RUNC_STATUS), 12.34, new Date(0));
    assert.deepEqual(r.user, { uid: 10001, gid: 10001, groups: [10001] });
    assert.equal(r.noNewPrivs, true);
    assert.equal(r.seccomp, "filter");
    assert.equal(r.readOnlyRoot, true);
    assert.deepEqual(r.limits, { pids: 512, memoryBytes: 2147483648, cpus: 1, source: "cgroup" });
    assert.deepEqual(r.network, { interfaces: ["lo"], defaultRoute: false });
    assert.equal(r.hostReachable, false);
    assert.equal(r.measuredMs, 12.3);
    assert.ok(
      !r.mounts.some((m) => m.path.startsWith("/proc") || m.path.startsWith("/dev") || m.path.startsWith("/sys")),
    );
    assert.deepEqual(isolationDifferences(r, expected), []);
  });

  test("gVisor's Seccomp 0 and missing NoNewPrivs line read as the Sentry and setpriv's answer, not as broken", () => {
    const r = parseIsolation(
      facts("runsc"),
      output(GVISOR_STATUS, { setpriv: ["uid: 10001", "no_new_privs: 1"], cgroup: [] }),
      1,
      new Date(0),
    );
    assert.equal(r.seccomp, "gvisor-sentry");
    assert.equal(r.noNewPrivs, true);
    assert.equal(r.capabilities.ambient, "unsupported");
    assert.equal(r.limits.source, "inspect");
    assert.deepEqual(isolationDifferences(r, { ...expected, runtime: "runsc" }), []);
    // The same Seccomp 0 under runc is no filter at all.
    const runc = parseIsolation(facts("runc"), output(GVISOR_STATUS, { setpriv: ["no_new_privs: 0"] }), 1, new Date(0));
    assert.equal(runc.seccomp, "disabled");
    assert.deepEqual(
      isolationDifferences(runc, expected).filter((d) => /seccomp|no_new_privs|ambient/.test(d)),
      [
        'capabilities ambient is "unsupported" (asked none)',
        "no_new_privs is off",
        "seccomp is disabled (asked filter)",
      ],
    );
  });

  test("each difference is named: root, capability, groups, limits, a writable mount not asked for, a route, a reachable host", () => {
    const status = RUNC_STATUS.map((l) =>
      l.startsWith("CapBnd") ? "CapBnd:\t00000000a80425fb" : l.startsWith("Groups") ? "Groups:\t10001 999" : l,
    );
    const mountinfo = [
      ...MOUNTINFO_RUNC.map((l) => l.replace(" / / ro,", " / / rw,").replace("/run/alive ro,", "/run/alive rw,")),
      "99 77 254:0 /var/run/docker.sock /var/run/docker.sock rw,relatime - ext4 /dev/vda rw",
    ];
    const r = parseIsolation(
      facts("runc"),
      output(status, {
        mountinfo,
        cgroup: ["/sys/fs/cgroup/pids/pids.max max"],
        connect: ["192.0.2.2 connected", "172.17.0.1 Connection refused"],
        net: ["    lo: 0", "  eth0: 0"],
      }),
      1,
      new Date(0),
    );
    const d = isolationDifferences(r, expected);
    assert.ok(d.includes("the root filesystem is writable"), d.join("; "));
    assert.ok(d.includes('capabilities bounding is "00000000a80425fb" (asked none)'), d.join("; "));
    assert.ok(d.includes("supplementary groups 999 (asked only 10001)"), d.join("; "));
    assert.ok(d.includes("mount /run/alive is writable (asked read-only)"), d.join("; "));
    assert.ok(d.includes("mount /var/run/docker.sock is writable and was not asked for"), d.join("; "));
    assert.ok(d.includes("network interfaces eth0 (asked only lo)"), d.join("; "));
    assert.ok(
      d.some((x) => x.startsWith("the host is reachable: 192.0.2.2 connected; 172.17.0.1 Connection refused")),
      d.join("; "),
    );
    assert.ok(
      d.some((x) => x.startsWith("pids limit is")),
      d.join("; "),
    );
  });

  test("a probe that did not finish is an error naming what is missing", () => {
    assert.throws(() => parseIsolation(facts("runc"), "@@status\nUid:\t1", 1, new Date(0)), /no @@end/);
    assert.throws(() => parseIsolation(facts("runc"), "nothing", 1, new Date(0)), /no @@status section/);
  });

  test("cgroup v1 and v2 limits; unlimited reads as null", () => {
    assert.deepEqual(
      parseCgroupLimits([
        "/sys/fs/cgroup/pids.max 100",
        "/sys/fs/cgroup/memory.max max",
        "/sys/fs/cgroup/cpu.max 150000 100000",
      ]),
      { pids: 100, memoryBytes: null, cpus: 1.5 },
    );
    assert.deepEqual(
      parseCgroupLimits([
        "/sys/fs/cgroup/pids/pids.max max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes 9223372036854771712",
        "/sys/fs/cgroup/cpu/cpu.cfs_quota_us -1",
        "/sys/fs/cgroup/cpu/cpu.cfs_period_us 100000",
      ]),
      { pids: null, memoryBytes: null, cpus: null },
    );
    assert.equal(parseCgroupLimits([]), null);
  });

  test("mountinfo under gVisor (two spaces before the separator) parses alike", () => {
    assert.deepEqual(
      parseMounts([
        "8 8 0:8 / / ro  - 9p none ro,trans=fd",
        "17 8 0:16 / /tmp rw  - tmpfs none rw",
        "11 8 0:10 / /proc rw,noexec  - proc none rw",
      ]),
      [
        { path: "/", readOnly: true },
        { path: "/tmp", readOnly: false },
      ],
    );
  });

  test("the expectation is read off the spec's create options", () => {
    const e = expectationFromSpec({
      User: "10001:10002",
      HostConfig: {
        Runtime: "runsc",
        Mounts: [
          { Type: "bind", Source: "/a", Target: "/a" },
          { Type: "bind", Source: "/r", Target: "/run/alive", ReadOnly: true },
        ],
        Tmpfs: { "/var/tmp": "rw,size=64m" },
        PidsLimit: 64,
        Memory: 1024,
        CpuQuota: 500000,
        CpuPeriod: 1000000,
      },
    });
    assert.deepEqual(e, {
      runtime: "runsc",
      uid: 10001,
      gid: 10002,
      mounts: [
        { path: "/a", readOnly: false },
        { path: "/run/alive", readOnly: true },
        { path: "/var/tmp", readOnly: false },
      ],
      pids: 64,
      memoryBytes: 1024,
      cpus: 0.5,
    });
  });
});

describe("ps --isolation table", () => {
  test("one row per workspace; an unmeasured one shows dashes", () => {
    const base = {
      userId: "u",
      containerName: "n",
      state: "running",
      createdAt: "",
      lastActiveAt: "",
      activeTurnId: null,
      egress: { mode: "public" },
      network: { mode: "none", via: "sidecar", egressRefusals: 0 },
      runtime: "runc",
    } as const;
    const rows: WorkspaceSummary[] = [
      { ...base, workspaceId: "ws-1", containerId: "c1", isolation: sampleIsolation("c1") },
      { ...base, workspaceId: "ws-2", containerId: "c2", isolation: null },
    ];
    const [header, one, two] = renderIsolationTable(rows).split("\n");
    assert.equal(header?.split(/ {3,}/).join(","), ISOLATION_HEADER.join(","));
    assert.deepEqual(one?.split(/ {3,}/), [
      "ws-1",
      "runc",
      "10001:10001",
      "none",
      "yes",
      "filter",
      "ro",
      "/home/alive",
      "512",
      "2048MiB",
      "1",
      "public via sidecar-proxy",
      "proxy",
      "unreachable",
    ]);
    assert.match(two ?? "", /^ws-2( +-)+$/);
  });
});

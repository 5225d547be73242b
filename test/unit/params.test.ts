import assert from "node:assert/strict";
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { ErrorCode, SidecarError } from "../../src/errors.js";
import {
  parseCancelTurnParams,
  parseEnsureWorkspaceParams,
  parseRemoveWorkspaceParams,
  parseRunTurnParams,
  parseWorkspaceLogsParams,
} from "../../src/rpc/params.js";
import type { WorkspacePolicy } from "../../src/policy/workspace-policy.js";

let dir: string;
let root: string;
let workspace: string;
let outside: string;
let policy: WorkspacePolicy;

before(async () => {
  dir = await fs.realpath(await fs.mkdtemp(path.join(os.tmpdir(), "alive-params-")));
  root = path.join(dir, "root");
  workspace = path.join(root, "ws");
  outside = path.join(dir, "outside");
  await fs.mkdir(workspace, { recursive: true });
  await fs.mkdir(outside);
  await fs.writeFile(path.join(root, "file.txt"), "not a dir");
  await fs.symlink(outside, path.join(root, "escape"));
  await fs.symlink(workspace, path.join(root, "alias"));
  // The defaults' ranges (src/config.ts): uids from 10000, above the host's login users.
  policy = {
    uidRange: { min: 10000, max: 65533 },
    gidRange: { min: 1000, max: 65533 },
    allowRoot: false,
    workspaceRoots: [root],
  };
});

after(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

const ensure = (over: Record<string, unknown> = {}): Record<string, unknown> => ({
  workspaceId: "ws-1",
  userId: "user-1",
  uid: 10001,
  gid: 1001,
  workspacePath: workspace,
  ...over,
});

const turn = (over: Record<string, unknown> = {}): Record<string, unknown> => ({
  workspaceId: "ws-1",
  input: "hello",
  ...over,
});

/** Asserts that `run` fails with a SidecarError of `code` naming `field`. */
async function refuses(run: () => unknown, code: number, field: string): Promise<SidecarError> {
  let caught: unknown;
  try {
    await run();
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof SidecarError, `expected a SidecarError for ${field}, got ${String(caught)}`);
  assert.equal(caught.code, code, `code for ${field}: ${caught.message}`);
  assert.equal(caught.data?.field, field, caught.message);
  assert.equal(typeof caught.data?.reason, "string");
  return caught;
}

const invalid = (run: () => unknown, field: string): Promise<SidecarError> =>
  refuses(run, ErrorCode.invalidParams, field);
const notAllowed = (run: () => unknown, field: string): Promise<SidecarError> =>
  refuses(run, ErrorCode.notAllowed, field);

describe("workspace.ensure params", () => {
  it("accepts valid params, resolves the path and drops unknown fields", async () => {
    const parsed = await parseEnsureWorkspaceParams(
      ensure({
        git: { name: "Ada", email: "ada@example.com" },
        network: "none",
        resources: { memoryMb: 512, cpus: 0.5, pids: 64 },
        surprise: 1,
      }),
      policy,
    );
    assert.deepEqual(parsed, {
      workspaceId: "ws-1",
      userId: "user-1",
      uid: 10001,
      gid: 1001,
      workspacePath: workspace,
      git: { name: "Ada", email: "ada@example.com" },
      network: "none",
      resources: { memoryMb: 512, cpus: 0.5, pids: 64 },
    });
  });

  it("treats null optional fields as absent", async () => {
    const parsed = await parseEnsureWorkspaceParams(ensure({ git: null, network: null, resources: null }), policy);
    assert.equal("git" in parsed || "network" in parsed || "resources" in parsed, false);
  });

  it("resolves a symlink that stays inside the roots", async () => {
    const parsed = await parseEnsureWorkspaceParams(ensure({ workspacePath: path.join(root, "alias") }), policy);
    assert.equal(parsed.workspacePath, workspace);
  });

  it("refuses params that are not an object", async () => {
    await invalid(() => parseEnsureWorkspaceParams([1], policy), "params");
    await invalid(() => parseEnsureWorkspaceParams("x", policy), "params");
  });

  it("checks workspaceId", async () => {
    for (const workspaceId of [undefined, 7, "", "a/b", "..", "a..b", "-x", ".x", "x".repeat(64)]) {
      await invalid(() => parseEnsureWorkspaceParams(ensure({ workspaceId }), policy), "workspaceId");
    }
    await parseEnsureWorkspaceParams(ensure({ workspaceId: `A${"x".repeat(62)}` }), policy);
  });

  it("checks userId: a single-line string of at most 128 characters", async () => {
    for (const userId of [undefined, 42, "", "a\nb", "a\rb", "a\0b", "u".repeat(129)]) {
      await invalid(() => parseEnsureWorkspaceParams(ensure({ userId }), policy), "userId");
    }
    await parseEnsureWorkspaceParams(ensure({ userId: "u".repeat(128) }), policy);
  });

  it("checks uid and gid: integers (-32602) inside the policy (-32006)", async () => {
    for (const key of ["uid", "gid"] as const) {
      for (const value of [undefined, "1000", 1000.5, true])
        await invalid(() => parseEnsureWorkspaceParams(ensure({ [key]: value }), policy), key);
      for (const value of [0, 999, 65534, -1])
        await notAllowed(() => parseEnsureWorkspaceParams(ensure({ [key]: value }), policy), key);
    }
    // A typical login user's uid is outside the default range.
    for (const uid of [1000, 9999]) await notAllowed(() => parseEnsureWorkspaceParams(ensure({ uid }), policy), "uid");
    assert.equal((await parseEnsureWorkspaceParams(ensure({ uid: 10000 }), policy)).uid, 10000);
    const rootPolicy = {
      ...policy,
      allowRoot: true,
      uidRange: { min: 0, max: 65533 },
      gidRange: { min: 0, max: 65533 },
    };
    const parsed = await parseEnsureWorkspaceParams(ensure({ uid: 0, gid: 0 }), rootPolicy);
    assert.equal(parsed.uid, 0);
  });

  it("checks workspacePath: absolute, existing, a directory, inside a root even through symlinks", async () => {
    for (const workspacePath of [
      undefined,
      5,
      "relative/dir",
      `${workspace}\0x`,
      path.join(root, "missing"),
      path.join(root, "file.txt"),
    ]) {
      await invalid(() => parseEnsureWorkspaceParams(ensure({ workspacePath }), policy), "workspacePath");
    }
    for (const workspacePath of [outside, path.join(root, "escape"), root, path.join(root, "..", "outside")]) {
      await notAllowed(() => parseEnsureWorkspaceParams(ensure({ workspacePath }), policy), "workspacePath");
    }
  });

  it("checks git, network and resources", async () => {
    await invalid(() => parseEnsureWorkspaceParams(ensure({ git: "Ada" }), policy), "git");
    await invalid(() => parseEnsureWorkspaceParams(ensure({ git: { name: "A\nB" } }), policy), "git.name");
    await invalid(() => parseEnsureWorkspaceParams(ensure({ git: { name: "n".repeat(257) } }), policy), "git.name");
    await invalid(() => parseEnsureWorkspaceParams(ensure({ git: { email: 5 } }), policy), "git.email");
    await invalid(() => parseEnsureWorkspaceParams(ensure({ network: "host" }), policy), "network");
    await invalid(() => parseEnsureWorkspaceParams(ensure({ resources: [] }), policy), "resources");
    for (const memoryMb of [63, 1_048_577, 1.5, "512"]) {
      const error = await invalid(
        () => parseEnsureWorkspaceParams(ensure({ resources: { memoryMb } }), policy),
        "resources.memoryMb",
      );
      assert.match(error.message, /resources\.memoryMb: must be an integer from 64 to 1048576/);
    }
    for (const cpus of [0.001, 1025, "1", Number.NaN])
      await invalid(() => parseEnsureWorkspaceParams(ensure({ resources: { cpus } }), policy), "resources.cpus");
    for (const pids of [15, 1_000_001, 20.5])
      await invalid(() => parseEnsureWorkspaceParams(ensure({ resources: { pids } }), policy), "resources.pids");
    const edges = await parseEnsureWorkspaceParams(
      ensure({ resources: { memoryMb: 64, cpus: 0.01, pids: 1_000_000 } }),
      policy,
    );
    assert.deepEqual(edges.resources, { memoryMb: 64, cpus: 0.01, pids: 1_000_000 });
  });

  it("says what it received for a type error", async () => {
    const error = await invalid(() => parseEnsureWorkspaceParams(ensure({ network: "host" }), policy), "network");
    assert.equal(error.data?.received, '"host"');
  });
});

describe("workspace.remove, workspace.logs and turn.cancel params", () => {
  it("parses workspace.remove, purgeHome false by default", () => {
    assert.deepEqual(parseRemoveWorkspaceParams({ workspaceId: "ws-1" }), { workspaceId: "ws-1", purgeHome: false });
    assert.deepEqual(parseRemoveWorkspaceParams({ workspaceId: "ws-1", purgeHome: true }), {
      workspaceId: "ws-1",
      purgeHome: true,
    });
  });

  it("refuses bad workspace.remove params", async () => {
    await invalid(() => parseRemoveWorkspaceParams({ workspaceId: "ws-1", purgeHome: "yes" }), "purgeHome");
    await invalid(() => parseRemoveWorkspaceParams({}), "workspaceId");
    await invalid(() => parseRemoveWorkspaceParams(undefined), "workspaceId");
  });

  it("parses workspace.logs with an optional tail", async () => {
    assert.deepEqual(parseWorkspaceLogsParams({ workspaceId: "ws-1" }), { workspaceId: "ws-1" });
    assert.deepEqual(parseWorkspaceLogsParams({ workspaceId: "ws-1", tail: 0 }), { workspaceId: "ws-1", tail: 0 });
    for (const tail of [-1, 1.5, "5", 100_001])
      await invalid(() => parseWorkspaceLogsParams({ workspaceId: "ws-1", tail }), "tail");
  });

  it("checks turn.cancel's turnId", async () => {
    assert.deepEqual(parseCancelTurnParams({ turnId: "turn-1.a_b" }), { turnId: "turn-1.a_b" });
    for (const turnId of [undefined, 3, "", "-x", "a b", "a/b", "t".repeat(129)])
      await invalid(() => parseCancelTurnParams({ turnId }), "turnId");
  });
});

describe("turn.run params", () => {
  it("accepts a minimal turn and a full one", async () => {
    assert.deepEqual(await parseRunTurnParams(turn(), policy), { workspaceId: "ws-1", input: "hello" });
    const full = await parseRunTurnParams(
      turn({
        turnId: "t-1",
        threadId: "0199A213-81C0-7800-8AA1-BBAB2A035A53",
        input: [
          { type: "text", text: "look", extra: 1 },
          { type: "local_image", path: "/srv/ws/shot.png" },
        ],
        options: {
          model: "gpt-5-codex",
          modelReasoningEffort: "high",
          sandboxMode: "workspace-write",
          approvalPolicy: "never",
          networkAccessEnabled: false,
          additionalDirectories: ["/srv/shared"],
          webSearchMode: "cached",
          outputSchema: { type: "object" },
          timeoutMs: 60_000,
          unknown: "ignored",
        },
        mcpServers: {
          "alive-tools": { command: "node", args: ["server.js", "--stdio"], env: { TOKEN_FILE: "/run/t", _X: "" } },
        },
      }),
      policy,
    );
    assert.deepEqual(full, {
      workspaceId: "ws-1",
      turnId: "t-1",
      threadId: "0199A213-81C0-7800-8AA1-BBAB2A035A53",
      input: [
        { type: "text", text: "look" },
        { type: "local_image", path: "/srv/ws/shot.png" },
      ],
      options: {
        model: "gpt-5-codex",
        modelReasoningEffort: "high",
        sandboxMode: "workspace-write",
        approvalPolicy: "never",
        networkAccessEnabled: false,
        additionalDirectories: ["/srv/shared"],
        webSearchMode: "cached",
        outputSchema: { type: "object" },
        timeoutMs: 60_000,
      },
      mcpServers: {
        "alive-tools": { command: "node", args: ["server.js", "--stdio"], env: { TOKEN_FILE: "/run/t", _X: "" } },
      },
    });
  });

  it("checks input", async () => {
    for (const input of [undefined, "", 42, [], {}, "x".repeat(1024 * 1024 + 1)])
      await invalid(() => parseRunTurnParams(turn({ input }), policy), "input");
    await parseRunTurnParams(turn({ input: "x".repeat(1024 * 1024) }), policy);
    await invalid(() => parseRunTurnParams(turn({ input: ["text"] }), policy), "input[0]");
    await invalid(() => parseRunTurnParams(turn({ input: [{ type: "video" }] }), policy), "input[0].type");
    await invalid(() => parseRunTurnParams(turn({ input: [{ type: "text" }] }), policy), "input[0].text");
    await invalid(
      () =>
        parseRunTurnParams(
          turn({
            input: [
              { type: "text", text: "a" },
              { type: "text", text: 5 },
            ],
          }),
          policy,
        ),
      "input[1].text",
    );
    await invalid(
      () => parseRunTurnParams(turn({ input: [{ type: "local_image", path: "shot.png" }] }), policy),
      "input[0].path",
    );
    await invalid(
      () => parseRunTurnParams(turn({ input: [{ type: "local_image", path: "/a\0b.png" }] }), policy),
      "input[0].path",
    );
  });

  it("requires threadId to be a UUID (codex reads anything else as a thread name)", async () => {
    for (const threadId of ["my-thread", "0199a213-81c0-7800-8aa1", 5, "0199a213-81c0-7800-8aa1-bbab2a035a53x"]) {
      await invalid(() => parseRunTurnParams(turn({ threadId }), policy), "threadId");
    }
    assert.equal((await parseRunTurnParams(turn({ threadId: null }), policy)).threadId, undefined);
  });

  it("checks turnId and workspaceId", async () => {
    await invalid(() => parseRunTurnParams(turn({ turnId: "../x" }), policy), "turnId");
    await invalid(() => parseRunTurnParams(turn({ workspaceId: "a/b" }), policy), "workspaceId");
  });

  it("checks every option", async () => {
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ model: 5 }, "options.model"],
      [{ model: "" }, "options.model"],
      [{ model: "gpt\n5" }, "options.model"],
      [{ modelReasoningEffort: "max" }, "options.modelReasoningEffort"],
      [{ sandboxMode: "full" }, "options.sandboxMode"],
      [{ approvalPolicy: "always" }, "options.approvalPolicy"],
      [{ networkAccessEnabled: "true" }, "options.networkAccessEnabled"],
      [{ additionalDirectories: "/srv" }, "options.additionalDirectories"],
      [{ additionalDirectories: ["/srv", "rel"] }, "options.additionalDirectories[1]"],
      [{ webSearchMode: "on" }, "options.webSearchMode"],
      [{ outputSchema: [] }, "options.outputSchema"],
      [{ outputSchema: "{}" }, "options.outputSchema"],
      [{ timeoutMs: 999 }, "options.timeoutMs"],
      [{ timeoutMs: 604_800_001 }, "options.timeoutMs"],
      [{ timeoutMs: 1000.5 }, "options.timeoutMs"],
    ];
    for (const [options, field] of cases) await invalid(() => parseRunTurnParams(turn({ options }), policy), field);
    await invalid(() => parseRunTurnParams(turn({ options: "fast" }), policy), "options");
    const edges = await parseRunTurnParams(turn({ options: { timeoutMs: 1000 } }), policy);
    assert.equal(edges.options?.timeoutMs, 1000);
  });

  it("checks mcpServers, and never echoes an env value", async () => {
    const server = (over: Record<string, unknown>): Record<string, unknown> => ({
      mcpServers: { fs: { command: "node", ...over } },
    });
    await invalid(() => parseRunTurnParams(turn({ mcpServers: [] }), policy), "mcpServers");
    await invalid(
      () => parseRunTurnParams(turn({ mcpServers: { "bad name": { command: "x" } } }), policy),
      "mcpServers",
    );
    await invalid(() => parseRunTurnParams(turn({ mcpServers: { fs: "node" } }), policy), "mcpServers.fs");
    await invalid(() => parseRunTurnParams(turn(server({ command: undefined })), policy), "mcpServers.fs.command");
    await invalid(() => parseRunTurnParams(turn(server({ command: "a\nb" })), policy), "mcpServers.fs.command");
    await invalid(() => parseRunTurnParams(turn(server({ args: "x" })), policy), "mcpServers.fs.args");
    await invalid(() => parseRunTurnParams(turn(server({ args: ["ok", 1] })), policy), "mcpServers.fs.args[1]");
    await invalid(() => parseRunTurnParams(turn(server({ env: [] })), policy), "mcpServers.fs.env");
    await invalid(() => parseRunTurnParams(turn(server({ env: { "1BAD": "x" } })), policy), "mcpServers.fs.env");
    await invalid(() => parseRunTurnParams(turn(server({ env: { "A-B": "x" } })), policy), "mcpServers.fs.env");
    await invalid(() => parseRunTurnParams(turn(server({ env: { N: 5 } })), policy), "mcpServers.fs.env.N");
    await invalid(
      () => parseRunTurnParams(turn(server({ env: { N: "v".repeat(8193) } })), policy),
      "mcpServers.fs.env.N",
    );
    const error = await invalid(
      () => parseRunTurnParams(turn(server({ env: { TOKEN: "sk-secret-value\nx" } })), policy),
      "mcpServers.fs.env.TOKEN",
    );
    assert.doesNotMatch(JSON.stringify({ message: error.message, data: error.data }), /sk-secret-value/);
    const ok = await parseRunTurnParams(turn(server({ env: { N: "v".repeat(8192) } })), policy);
    assert.equal(ok.mcpServers?.fs?.env?.N?.length, 8192);
  });

  it("validates carried workspace.ensure fields into params.workspace", async () => {
    const parsed = await parseRunTurnParams(
      turn({ userId: "u", uid: 10001, gid: 1000, workspacePath: path.join(root, "alias"), network: "none" }),
      policy,
    );
    assert.deepEqual(parsed.workspace, {
      workspaceId: "ws-1",
      userId: "u",
      uid: 10001,
      gid: 1000,
      workspacePath: workspace,
      network: "none",
    });
    await notAllowed(
      () => parseRunTurnParams(turn({ userId: "u", uid: 0, gid: 1000, workspacePath: workspace }), policy),
      "uid",
    );
    await notAllowed(
      () =>
        parseRunTurnParams(
          turn({ userId: "u", uid: 10001, gid: 1000, workspacePath: path.join(root, "escape") }),
          policy,
        ),
      "workspacePath",
    );
    await invalid(
      () => parseRunTurnParams(turn({ uid: 10001, gid: 1000, workspacePath: workspace }), policy),
      "userId",
    );
    await invalid(() => parseRunTurnParams(turn({ uid: 10001 }), policy), "workspacePath");
    await invalid(
      () =>
        parseRunTurnParams(
          turn({ userId: "u", uid: 10001, gid: 1000, workspacePath: workspace, resources: { pids: 1 } }),
          policy,
        ),
      "resources.pids",
    );
  });

  it("leaves params.workspace out when no workspace fields are carried", async () => {
    const parsed = await parseRunTurnParams(turn({ git: { name: "ignored without workspacePath" } }), policy);
    assert.equal(parsed.workspace, undefined);
  });
});

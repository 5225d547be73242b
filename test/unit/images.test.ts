import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, test } from "node:test";
import { codexTargetTriple, codexVersion, findCodexVendorDir, parseCodexPackageInfo } from "../../src/codex-package.js";
import { defaultRuntimeContextDir, findPackageRoot } from "../../src/docker/build-context.js";
import { readContextFiles, runtimeImageTag, type RuntimeTagInputs } from "../../src/docker/image-tag.js";

const base: RuntimeTagInputs = {
  files: [
    { path: "Dockerfile", content: "ARG BASE_IMAGE=debian:bookworm-slim\nFROM ${BASE_IMAGE}\n" },
    { path: "etc/motd", content: "hello\n" },
  ],
  codexVersion: "0.163.0",
  codexTarget: "x86_64-unknown-linux-musl",
  baseImage: "debian:bookworm-slim",
  baseImageId: "sha256:1111111111111111111111111111111111111111111111111111111111111111",
};

describe("runtimeImageTag", () => {
  test("is alive-codex-runtime:<12 hex>", () => {
    assert.match(runtimeImageTag(base), /^alive-codex-runtime:[0-9a-f]{12}$/);
  });

  test("is stable for the same inputs, whatever the file order or content type", () => {
    const reordered: RuntimeTagInputs = {
      ...base,
      files: [...base.files].reverse().map((f) => ({ path: f.path, content: Buffer.from(f.content) })),
    };
    assert.equal(runtimeImageTag(base), runtimeImageTag({ ...base }));
    assert.equal(runtimeImageTag(base), runtimeImageTag(reordered));
  });

  const changes: Array<[string, Partial<RuntimeTagInputs>]> = [
    ["the Dockerfile changes", { files: [{ path: "Dockerfile", content: "FROM x\n" }, base.files[1]!] }],
    ["a file is added", { files: [...base.files, { path: "extra.sh", content: "" }] }],
    ["a file is renamed", { files: [base.files[0]!, { path: "etc/motd2", content: "hello\n" }] }],
    ["the codex version changes", { codexVersion: "0.164.0" }],
    ["the codex target changes", { codexTarget: "aarch64-unknown-linux-musl" }],
    ["the base image ref changes", { baseImage: "alive-codex-base:bookworm" }],
    [
      "the base image id changes",
      { baseImageId: "sha256:2222222222222222222222222222222222222222222222222222222222222222" },
    ],
  ];
  for (const [what, change] of changes) {
    test(`changes when ${what}`, () => {
      assert.notEqual(runtimeImageTag({ ...base, ...change }), runtimeImageTag(base));
    });
  }

  test("does not confuse a path/content boundary", () => {
    const a = runtimeImageTag({ ...base, files: [{ path: "ab", content: "c" }] });
    const b = runtimeImageTag({ ...base, files: [{ path: "a", content: "bc" }] });
    assert.notEqual(a, b);
  });
});

describe("build context location", () => {
  test("finds the package root from src and from a dist-like path", () => {
    const root = findPackageRoot();
    assert.ok(existsSync(path.join(root, "package.json")));
    assert.equal(findPackageRoot(path.join(root, "dist", "src", "docker", "images.js")), root);
  });

  test("images/runtime holds the Dockerfile, and readContextFiles lists it", async () => {
    const dir = defaultRuntimeContextDir();
    const files = await readContextFiles(dir);
    const dockerfile = files.find((f) => f.path === "Dockerfile");
    assert.ok(dockerfile, `no Dockerfile in ${dir}`);
    const text = Buffer.from(dockerfile.content).toString("utf8");
    assert.match(text, /^ARG BASE_IMAGE=debian:bookworm-slim$/m);
    assert.match(text, /^FROM \$\{BASE_IMAGE\}$/m);
    assert.match(text, /^ENTRYPOINT \["\/usr\/bin\/tini", "--"\]$/m);
  });
});

describe("codex binary", () => {
  test("the vendor dir holds codex and its version matches codex-package.json", () => {
    const dir = findCodexVendorDir();
    assert.ok(existsSync(path.join(dir, "bin", "codex")));
    const info = JSON.parse(readFileSync(path.join(dir, "codex-package.json"), "utf8")) as { version: string };
    assert.equal(codexVersion(), info.version);
    assert.equal(findCodexVendorDir(), dir);
  });

  test("maps Linux platforms to targets and refuses the rest", () => {
    assert.equal(codexTargetTriple("linux", "x64"), "x86_64-unknown-linux-musl");
    assert.equal(codexTargetTriple("linux", "arm64"), "aarch64-unknown-linux-musl");
    assert.throws(() => codexTargetTriple("darwin", "arm64"), /Linux/);
  });

  test("parseCodexPackageInfo names the file when the version is missing or bad", () => {
    assert.deepEqual(parseCodexPackageInfo('{"version":"1.2.3","target":"t"}', "x.json"), {
      version: "1.2.3",
      target: "t",
      entrypoint: "bin/codex",
    });
    assert.throws(() => parseCodexPackageInfo("{", "x.json"), /x\.json is not valid JSON/);
    assert.throws(() => parseCodexPackageInfo('{"version":"latest"}', "x.json"), /x\.json has no usable "version"/);
  });
});

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync, promises as fs } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { gzipSync } from "node:zlib";
import tar from "tar-fs";
import {
  CodexDownloadError,
  downloadCodexVendor,
  platformPackageOf,
  sha512Of,
} from "../../src/docker/codex-download.js";

const TARGET = "x86_64-unknown-linux-musl";

/** A platform tarball as npm publishes codex's: package/vendor/<target>/..., plus what must never be extracted. */
async function makeTarball(version: string): Promise<Buffer> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "alive-codex-tgz-"));
  try {
    const vendor = path.join(dir, "package", "vendor", TARGET);
    await fs.mkdir(path.join(vendor, "bin"), { recursive: true });
    await fs.mkdir(path.join(vendor, "codex-path"), { recursive: true });
    await fs.writeFile(
      path.join(dir, "package", "package.json"),
      JSON.stringify({ name: "@openai/codex", version: `${version}-linux-x64` }),
    );
    await fs.writeFile(path.join(dir, "package", "outside.sh"), "#!/bin/sh\necho not wanted\n", { mode: 0o755 });
    await fs.writeFile(
      path.join(vendor, "codex-package.json"),
      JSON.stringify({ layoutVersion: 1, version, target: TARGET, entrypoint: "bin/codex" }),
    );
    await fs.writeFile(path.join(vendor, "bin", "codex"), "#!/bin/sh\necho codex-cli\n", { mode: 0o755 });
    await fs.writeFile(path.join(vendor, "codex-path", "rg"), "rg", { mode: 0o755 });
    await fs.symlink("/etc/passwd", path.join(vendor, "bin", "sneaky"));
    const chunks: Buffer[] = [];
    for await (const chunk of tar.pack(dir) as unknown as AsyncIterable<Buffer>) chunks.push(chunk);
    return gzipSync(Buffer.concat(chunks));
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

const sri = (data: Buffer): string => `sha512-${createHash("sha512").update(data).digest("base64")}`;

describe("fetching a codex build from an npm registry", () => {
  let server: http.Server;
  let registry: string;
  const requests: string[] = [];
  const tarballs = new Map<string, Buffer>();
  /** version manifests by the raw request path. */
  const manifests = new Map<string, unknown>();

  before(async () => {
    server = http.createServer((req, res) => {
      requests.push(req.url ?? "");
      const tarball = tarballs.get(req.url ?? "");
      if (tarball !== undefined) {
        res.writeHead(200, { "content-type": "application/octet-stream" }).end(tarball);
        return;
      }
      const manifest = manifests.get(req.url ?? "");
      if (manifest === undefined)
        res.writeHead(404, { "content-type": "application/json" }).end('{"error":"Not found"}');
      else res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(manifest));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    registry = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  /** Publishes `version` (its tarball carrying `carries`), with `integrity` as the manifest's (default: the right one). */
  const publish = async (
    version: string,
    options: { carries?: string; integrity?: (tgz: Buffer) => string } = {},
  ): Promise<void> => {
    const tgz = await makeTarball(options.carries ?? version);
    const tarballPath = `/@openai/codex/-/codex-${version}-linux-x64.tgz`;
    tarballs.set(tarballPath, tgz);
    manifests.set(`/@openai%2fcodex/${version}`, {
      name: "@openai/codex",
      version,
      optionalDependencies: {
        "@openai/codex-linux-x64": `npm:@openai/codex@${version}-linux-x64`,
        "@openai/codex-darwin-arm64": `npm:@openai/codex@${version}-darwin-arm64`,
      },
    });
    manifests.set(`/@openai%2fcodex/${version}-linux-x64`, {
      name: "@openai/codex",
      version: `${version}-linux-x64`,
      dist: { tarball: `${registry}${tarballPath}`, integrity: (options.integrity ?? sri)(tgz) },
    });
  };

  const scratch = async (): Promise<string> => fs.mkdtemp(path.join(os.tmpdir(), "alive-codex-dl-"));

  test("the vendor dir of the target comes out, checked against the manifest's sha512; nothing else of the tarball does", async () => {
    await publish("0.171.0");
    const dir = await scratch();
    try {
      const vendor = await downloadCodexVendor({ registry, version: "0.171.0", target: TARGET, dir });
      assert.equal(vendor, path.join(dir, "extracted", "package", "vendor", TARGET));
      assert.equal(JSON.parse(await fs.readFile(path.join(vendor, "codex-package.json"), "utf8")).version, "0.171.0");
      assert.equal((await fs.stat(path.join(vendor, "bin", "codex"))).mode & 0o111, 0o111, "codex stays executable");
      assert.ok(existsSync(path.join(vendor, "codex-path", "rg")));
      assert.equal(existsSync(path.join(vendor, "bin", "sneaky")), false, "no symlink is extracted");
      assert.equal(
        existsSync(path.join(dir, "extracted", "package", "outside.sh")),
        false,
        "nothing outside vendor/<target>",
      );
      assert.equal(existsSync(path.join(dir, "codex.tgz")), false, "the tarball is removed once extracted");
      assert.deepEqual(requests.slice(-3), [
        "/@openai%2fcodex/0.171.0",
        "/@openai%2fcodex/0.171.0-linux-x64",
        "/@openai/codex/-/codex-0.171.0-linux-x64.tgz",
      ]);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  test("a tarball that does not match the manifest's integrity is refused before anything is extracted", async () => {
    await publish("0.170.0", { integrity: () => sri(Buffer.from("something else")) });
    const dir = await scratch();
    try {
      await assert.rejects(
        downloadCodexVendor({ registry, version: "0.170.0", target: TARGET, dir }),
        (error: unknown) => {
          assert.ok(error instanceof CodexDownloadError);
          assert.match(
            error.message,
            /codex-0\.170\.0-linux-x64\.tgz does not match the registry's integrity \(sha512 .*, expected .*\): refusing it/,
          );
          return true;
        },
      );
      assert.equal(existsSync(path.join(dir, "extracted")), false);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  test("a manifest without a sha512 integrity is refused", async () => {
    await publish("0.169.0", { integrity: () => "sha1-AAAAAAAAAAAAAAAAAAAAAAAAAAA=" });
    const dir = await scratch();
    try {
      await assert.rejects(
        downloadCodexVendor({ registry, version: "0.169.0", target: TARGET, dir }),
        /has no sha512 integrity: refusing/,
      );
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  test("a version the registry does not have names the package, the 404 and how to list versions", async () => {
    const dir = await scratch();
    try {
      await assert.rejects(
        downloadCodexVendor({ registry, version: "9.9.9", target: TARGET, dir }),
        /the npm registry has no @openai\/codex@9\.9\.9 \(.*: 404\); npm view @openai\/codex versions/,
      );
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  test("a tarball carrying another codex than its name says is refused", async () => {
    await publish("0.168.0", { carries: "0.167.2" });
    const dir = await scratch();
    try {
      await assert.rejects(
        downloadCodexVendor({ registry, version: "0.168.0", target: TARGET, dir }),
        /carries codex 0\.167\.2 for x86_64-unknown-linux-musl, not 0\.168\.0/,
      );
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  test("a registry nobody answers at names the registry", async () => {
    const dir = await scratch();
    try {
      await assert.rejects(
        downloadCodexVendor({ registry: "http://127.0.0.1:1", version: "0.171.0", target: TARGET, dir }),
        /cannot reach the npm registry for @openai\/codex@0\.171\.0 \(http:\/\/127\.0\.0\.1:1\//,
      );
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  test("the platform package: an npm alias (0.163 on) or a package of its own; none for another target", () => {
    const aliased = {
      optionalDependencies: {
        "@openai/codex-linux-x64": "npm:@openai/codex@0.171.0-linux-x64",
        "@openai/codex-linux-arm64": "npm:@openai/codex@0.171.0-linux-arm64",
      },
    };
    assert.deepEqual(platformPackageOf(aliased, "0.171.0", TARGET), {
      name: "@openai/codex",
      version: "0.171.0-linux-x64",
    });
    assert.deepEqual(platformPackageOf(aliased, "0.171.0", "aarch64-unknown-linux-musl"), {
      name: "@openai/codex",
      version: "0.171.0-linux-arm64",
    });
    assert.deepEqual(
      platformPackageOf({ optionalDependencies: { "@openai/codex-linux-x64": "0.150.0" } }, "0.150.0", TARGET),
      { name: "@openai/codex-linux-x64", version: "0.150.0" },
    );
    assert.throws(
      () => platformPackageOf({}, "0.171.0", TARGET),
      /lists no @openai\/codex-linux-x64 among its optionalDependencies/,
    );
    assert.throws(
      () => platformPackageOf({ optionalDependencies: { "@openai/codex-linux-x64": "^0.171.0" } }, "0.171.0", TARGET),
      /not an exact version/,
    );
    assert.throws(
      () => platformPackageOf(aliased, "0.171.0", "x86_64-apple-darwin"),
      /no codex platform package is known for x86_64-apple-darwin/,
    );
  });

  test("sri: the sha512 part of an integrity string", () => {
    assert.equal(sha512Of("sha512-abc+/=="), "abc+/==");
    assert.equal(sha512Of("sha1-xyz= sha512-QQ=="), "QQ==");
    assert.equal(sha512Of("sha1-xyz="), null);
    assert.equal(sha512Of(undefined), null);
  });
});

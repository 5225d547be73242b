/** The credential broker's CA, its leaves and their cache, and the trust each side is given. */
import assert from "node:assert/strict";
import { X509Certificate, createPrivateKey } from "node:crypto";
import { promises as fsp } from "node:fs";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { after, before, describe, test } from "node:test";
import tls from "node:tls";
import { BrokerCa, LEAF_VALIDITY_MS, type IssuedLeaf } from "../../src/egress/broker/broker-ca.js";
import { ipAddressBytes } from "../../src/egress/broker/certificate.js";
import { LeafMinter } from "../../src/egress/broker/leaf-minter.js";
import { UPSTREAM_CA_SETTING, createUpstreamTrust, trustBundleText } from "../../src/egress/broker/trust.js";
import { TrustBundle } from "../../src/workspace/trust-bundle.js";
import { ConfigError } from "../../src/shared/setting-parsers.js";

let root: string;
before(async () => {
  root = await fsp.mkdtemp(path.join(os.tmpdir(), "broker-ca-"));
});
after(() => fsp.rm(root, { recursive: true, force: true }));

let dirs = 0;
const freshDir = (): string => path.join(root, `state-${++dirs}`, "broker");

const modeOf = async (file: string): Promise<number> => (await fsp.stat(file)).mode & 0o777;

describe("broker CA", () => {
  test("is made at first open: dir 0700, key 0600, a CA certificate of that key", async () => {
    const dir = freshDir();
    const ca = await BrokerCa.open(dir);
    assert.equal(await modeOf(dir), 0o700);
    assert.equal(await modeOf(path.join(dir, "ca.key")), 0o600);
    assert.equal(await modeOf(path.join(dir, "ca.crt")), 0o644);
    assert.equal(await fsp.readFile(path.join(dir, "ca.crt"), "utf8"), ca.certPem);
    const cert = new X509Certificate(ca.certPem);
    assert.equal(cert.ca, true);
    assert.match(cert.subject, /^CN=Alive codex egress broker CA [0-9a-f]{8}$/);
    assert.ok(cert.verify(cert.publicKey), "self-signed");
    assert.equal(cert.publicKey.asymmetricKeyType, "ec");
    assert.ok(Date.parse(cert.validTo) - Date.now() > 9 * 365 * 24 * 3600 * 1000);
    assert.deepEqual((await fsp.readdir(dir)).sort(), ["ca.crt", "ca.key"], "no temporary file left");
  });

  test("a reopen reuses the CA (same certificate), and puts back a widened key mode", async () => {
    const dir = freshDir();
    const first = await BrokerCa.open(dir);
    await fsp.chmod(path.join(dir, "ca.key"), 0o644);
    await fsp.chmod(dir, 0o755);
    const second = await BrokerCa.open(dir);
    assert.equal(second.certPem, first.certPem);
    assert.equal(await modeOf(path.join(dir, "ca.key")), 0o600);
    assert.equal(await modeOf(dir), 0o700);
    // A leaf issued after the reopen chains to the certificate containers were given before.
    const leaf = new X509Certificate((await second.issueLeaf("api.example.com")).certPem);
    assert.ok(leaf.checkIssued(new X509Certificate(first.certPem)));
    assert.ok(leaf.verify(new X509Certificate(first.certPem).publicKey));
  });

  test("a key without its certificate (a crash between the writes) gives a new CA", async () => {
    const dir = freshDir();
    const first = await BrokerCa.open(dir);
    await fsp.rm(path.join(dir, "ca.crt"));
    const second = await BrokerCa.open(dir);
    assert.notEqual(second.certPem, first.certPem);
    assert.equal(await fsp.readFile(path.join(dir, "ca.crt"), "utf8"), second.certPem);
  });

  test("a certificate that is not the key's is refused, naming the directory", async () => {
    const dirA = freshDir();
    const dirB = freshDir();
    await BrokerCa.open(dirA);
    await BrokerCa.open(dirB);
    await fsp.copyFile(path.join(dirB, "ca.crt"), path.join(dirA, "ca.crt"));
    await assert.rejects(BrokerCa.open(dirA), (error: Error) => {
      assert.ok(error.message.includes(dirA) && error.message.includes("damaged"), error.message);
      return true;
    });
  });

  test("a directory that is a symlink is refused, and nothing is written through it", async () => {
    const target = path.join(root, "elsewhere");
    await fsp.mkdir(target, { recursive: true });
    const link = path.join(root, "linked-broker");
    await fsp.symlink(target, link);
    await assert.rejects(BrokerCa.open(link), /is not a directory/);
    assert.deepEqual(await fsp.readdir(target), []);
  });

  test("a directory not owned by the sidecar's user is refused", { skip: process.getuid?.() !== 0 }, async () => {
    const dir = freshDir();
    await fsp.mkdir(dir, { recursive: true });
    await fsp.chown(dir, 12345, 12345);
    await assert.rejects(BrokerCa.open(dir), /not owned by the sidecar's user/);
  });

  test("a CA near its end is replaced at open", async () => {
    const dir = freshDir();
    const first = await BrokerCa.open(dir);
    const later = Date.now() + 10 * 365 * 24 * 3600 * 1000 - 10 * 24 * 3600 * 1000;
    const second = await BrokerCa.open(dir, { now: () => later });
    assert.notEqual(second.certPem, first.certPem);
  });
});

describe("broker leaves", () => {
  let ca: BrokerCa;
  before(async () => {
    ca = await BrokerCa.open(freshDir());
  });

  const check = (leaf: IssuedLeaf): X509Certificate => {
    const cert = new X509Certificate(leaf.certPem);
    const caCert = new X509Certificate(ca.certPem);
    assert.ok(cert.checkIssued(caCert) && cert.verify(caCert.publicKey), "signed by the CA");
    assert.equal(cert.ca, false);
    assert.ok(cert.checkPrivateKey(createPrivateKey(leaf.keyPem)), "the key is the certificate's");
    return cert;
  };

  test("a host name gets a DNS SAN, a short validity starting a little in the past", async () => {
    const leaf = await ca.issueLeaf("api.example.com");
    const cert = check(leaf);
    assert.equal(cert.subjectAltName, "DNS:api.example.com");
    assert.equal(cert.checkHost("api.example.com"), "api.example.com");
    assert.equal(cert.checkHost("other.example.com"), undefined);
    const from = Date.parse(cert.validFrom);
    assert.ok(from < Date.now() - 30 * 60 * 1000 && from > Date.now() - 2 * 3600 * 1000, cert.validFrom);
    assert.ok(Math.abs(Date.parse(cert.validTo) - from - LEAF_VALIDITY_MS) < 2000, cert.validTo);
    assert.equal(Date.parse(cert.validTo), leaf.notAfter.getTime() - (leaf.notAfter.getTime() % 1000));
  });

  test("an IPv4 or IPv6 literal gets an IP SAN", async () => {
    const v4 = check(await ca.issueLeaf("127.0.0.1"));
    assert.equal(v4.subjectAltName, "IP Address:127.0.0.1");
    assert.equal(v4.checkIP("127.0.0.1"), "127.0.0.1");
    const v6 = check(await ca.issueLeaf("2001:db8::1"));
    assert.equal(v6.checkIP("2001:db8::1"), "2001:db8::1");
    assert.equal(v6.checkIP("2001:db8::2"), undefined);
  });

  test("a name too long for a common name is named by its SAN alone", async () => {
    const host = `${"a".repeat(60)}.example.com`;
    const cert = check(await ca.issueLeaf(host));
    assert.equal(cert.subject || "", "", "an empty subject");
    assert.equal(cert.checkHost(host), host);
  });

  test("IP literals become their bytes", () => {
    assert.deepEqual([...(ipAddressBytes("192.0.2.7") ?? [])], [192, 0, 2, 7]);
    assert.deepEqual([...(ipAddressBytes("::1") ?? [])], [...new Array(15).fill(0), 1]);
    assert.deepEqual(
      [...(ipAddressBytes("::ffff:192.0.2.7") ?? [])],
      [...new Array(10).fill(0), 0xff, 0xff, 192, 0, 2, 7],
    );
    assert.deepEqual([...(ipAddressBytes("2001:db8:0:1::")?.slice(0, 8) ?? [])], [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1]);
    assert.equal(ipAddressBytes("example.com"), null);
  });
});

describe("leaf minter", () => {
  let ca: BrokerCa;
  before(async () => {
    ca = await BrokerCa.open(freshDir());
  });

  function counting(clock?: () => number) {
    const issued: string[] = [];
    const counted = {
      issueLeaf: (host: string) => {
        issued.push(host);
        return ca.issueLeaf(host);
      },
    };
    return { issued, minter: new LeafMinter(counted, { maxHosts: 2, ...(clock ? { now: clock } : {}) }) };
  }

  test("a fresh mint takes a few ms, a cached one next to nothing (printed)", async () => {
    const minter = new LeafMinter(ca);
    await minter.mint("warm-up.example.com");
    const freshRuns = 20;
    let start = performance.now();
    for (let i = 0; i < freshRuns; i++) await minter.mint(`host-${i}.example.com`);
    const freshMs = (performance.now() - start) / freshRuns;
    const first = await minter.mint("cached.example.com");
    const cachedRuns = 10_000;
    start = performance.now();
    for (let i = 0; i < cachedRuns; i++) assert.equal(await minter.mint("cached.example.com"), first);
    const cachedMs = (performance.now() - start) / cachedRuns;
    console.log(`mint: fresh ${freshMs.toFixed(2)} ms, cached ${(cachedMs * 1000).toFixed(2)} µs (mean)`);
    assert.ok(cachedMs < freshMs, `cached ${cachedMs} ms vs fresh ${freshMs} ms`);
  });

  test("concurrent mints of one host share one issue", async () => {
    const { issued, minter } = counting();
    const [a, b] = [minter.mint("api.example.com"), minter.mint("api.example.com")];
    assert.equal(a, b);
    assert.equal(await a, await b);
    assert.deepEqual(issued, ["api.example.com"]);
  });

  test("the cache is bounded: the least recently used host goes first", async () => {
    const { issued, minter } = counting();
    await minter.mint("a.test");
    await minter.mint("b.test");
    await minter.mint("a.test");
    await minter.mint("c.test");
    assert.equal(minter.size, 2);
    await minter.mint("a.test");
    await minter.mint("b.test");
    assert.deepEqual(issued, ["a.test", "b.test", "c.test", "b.test"]);
  });

  test("a leaf near its end is issued anew", async () => {
    let now = Date.now();
    const { issued, minter } = counting(() => now);
    const first = await minter.mint("a.test");
    now += LEAF_VALIDITY_MS - 3 * 24 * 3600 * 1000;
    assert.equal(await minter.mint("a.test"), first);
    now += 2 * 24 * 3600 * 1000;
    assert.notEqual(await minter.mint("a.test"), first);
    assert.deepEqual(issued, ["a.test", "a.test"]);
  });

  test("a failed issue is not kept", async () => {
    let fail = true;
    const flaky = {
      issueLeaf: (host: string) => (fail ? Promise.reject(new Error("no entropy today")) : ca.issueLeaf(host)),
    };
    const minter = new LeafMinter(flaky);
    await assert.rejects(minter.mint("a.test"), /no entropy/);
    fail = false;
    assert.ok(await minter.mint("a.test"));
  });
});

describe("trust", () => {
  test("the container's bundle is Node's roots plus the broker's CA, mode 0644, written whole", async () => {
    const ca = await BrokerCa.open(freshDir());
    const dir = path.join(root, "bundle");
    await fsp.mkdir(dir);
    const bundle = new TrustBundle(trustBundleText(ca.certPem));
    assert.equal(await bundle.installIn(dir), `/run/alive/${bundle.name}`);
    await bundle.installIn(dir);
    const file = path.join(dir, bundle.name);
    assert.equal(await modeOf(file), 0o644);
    const text = await fsp.readFile(file, "utf8");
    const blocks = text.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
    assert.equal(blocks.length, tls.rootCertificates.length + 1);
    assert.deepEqual(blocks.slice(0, -1), [...tls.rootCertificates]);
    assert.equal(`${blocks.at(-1)}\n`, ca.certPem);
    assert.deepEqual(await fsp.readdir(dir), [bundle.name], "no temporary file left");
  });

  test("upstream trust: Node's roots, plus every certificate of the operator's bundle", async () => {
    const a = await BrokerCa.open(freshDir());
    const b = await BrokerCa.open(freshDir());
    assert.equal(createUpstreamTrust().certificates.length, tls.rootCertificates.length);
    const trust = createUpstreamTrust(`# our CAs\n${a.certPem}\n${b.certPem}`);
    assert.equal(trust.certificates.length, tls.rootCertificates.length + 2);
    assert.deepEqual(trust.certificates.slice(-2), [a.certPem.trim(), b.certPem.trim()]);
  });

  test("an operator bundle without a certificate, or with a broken one, is refused naming the setting", () => {
    assert.throws(
      () => createUpstreamTrust("not a certificate at all"),
      (error: unknown) =>
        error instanceof ConfigError &&
        error.setting === UPSTREAM_CA_SETTING &&
        error.message.startsWith(`${UPSTREAM_CA_SETTING}=`) &&
        /PEM certificates/.test(error.message),
    );
    const broken = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    assert.throws(
      () => createUpstreamTrust(broken),
      (error: unknown) => error instanceof ConfigError && /number 1 of 1 does not/.test(error.message),
    );
  });
});

/**
 * The credential broker's certificate authority: an ECDSA P-256 key and a self-signed certificate,
 * made at first use and kept in a directory of the sidecar's state (root-owned, mode 0700, never
 * mounted): `ca.key` (mode 0600) and `ca.crt`. Later opens reuse them, so containers that were
 * given the certificate keep trusting the leaves issued after a restart. The certificate is what
 * containers trust (trust.ts writes it into their bundle); the key never leaves this process and
 * the directory.
 */
import {
  X509Certificate,
  createPrivateKey,
  createPublicKey,
  generateKeyPair,
  randomBytes,
  type KeyObject,
} from "node:crypto";
import { constants, promises as fsp } from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import type * as pkijs from "pkijs";
import { writeAtomically } from "./atomic-file.js";
import { buildCertificate, keyIdOf, parseCertificate } from "./certificate.js";

const KEY_FILE = "ca.key";
const CERT_FILE = "ca.crt";
const DAY_MS = 24 * 60 * 60 * 1000;
const CA_VALIDITY_MS = 10 * 365 * DAY_MS;
/** A CA this close to its end is replaced at open, not used until it fails every client. */
const CA_RENEW_BEFORE_MS = 30 * DAY_MS;
/** Leaves start this far in the past: a container's clock a little behind ours still accepts them. */
const LEAF_BACKDATE_MS = 60 * 60 * 1000;
export const LEAF_VALIDITY_MS = 7 * DAY_MS;

const generateEcKeyPair = promisify(generateKeyPair);

/** A leaf issued for a host: its key and certificate (PEM) and when it stops being valid. */
export interface IssuedLeaf {
  keyPem: string;
  certPem: string;
  notAfter: Date;
}

export interface BrokerCaOptions {
  /** The clock. Default Date.now. */
  now?: () => number;
}

export class BrokerCa {
  readonly #key: KeyObject;
  readonly #certificate: pkijs.Certificate;
  readonly #keyId: Uint8Array;
  readonly #now: () => number;

  private constructor(
    /** The CA certificate (PEM): what containers are given to trust. */
    readonly certPem: string,
    keyPem: string,
    now: () => number,
  ) {
    this.#key = createPrivateKey(keyPem);
    this.#certificate = parseCertificate(certPem);
    this.#keyId = keyIdOf(createPublicKey(this.#key));
    this.#now = now;
  }

  /**
   * Opens the CA kept in `dir`, making the directory and the CA when absent (or when it is about
   * to expire). Refuses a directory that is a symlink or not owned by the sidecar's user, and a
   * certificate that does not belong to the key beside it.
   */
  static async open(dir: string, options: BrokerCaOptions = {}): Promise<BrokerCa> {
    const now = options.now ?? Date.now;
    await ensurePrivateDir(dir);
    const existing = await readExisting(dir);
    if (existing !== null) {
      const certificate = new X509Certificate(existing.certPem);
      if (!certificate.ca || !certificate.checkPrivateKey(createPrivateKey(existing.keyPem)))
        throw new Error(
          `the broker CA in ${dir} is damaged: ${CERT_FILE} is not a CA certificate of ${KEY_FILE}; ` +
            "remove both to make a new CA (containers must then be given the new certificate)",
        );
      if (Date.parse(certificate.validTo) - now() > CA_RENEW_BEFORE_MS)
        return new BrokerCa(existing.certPem, existing.keyPem, now);
    }
    const made = await makeCa(now());
    // The key first: a crash between the two renames leaves a key without a certificate, made anew next time.
    await writeAtomically(path.join(dir, KEY_FILE), made.keyPem, 0o600);
    await writeAtomically(path.join(dir, CERT_FILE), made.certPem, 0o644);
    return new BrokerCa(made.certPem, made.keyPem, now);
  }

  /** Issues a leaf for `host` (a host name, or an IP literal: then an IP SAN), valid for LEAF_VALIDITY_MS. */
  async issueLeaf(host: string): Promise<IssuedLeaf> {
    const { publicKey, privateKey } = await generateEcKeyPair("ec", { namedCurve: "P-256" });
    const start = this.#now() - LEAF_BACKDATE_MS;
    const notAfter = new Date(start + LEAF_VALIDITY_MS);
    const certPem = buildCertificate({
      commonName: host,
      publicKey,
      notBefore: new Date(start),
      notAfter,
      issuer: { certificate: this.#certificate, keyId: this.#keyId },
      signingKey: this.#key,
      role: { ca: false, host },
    });
    return { keyPem: privateKey.export({ type: "pkcs8", format: "pem" }).toString(), certPem, notAfter };
  }
}

async function ensurePrivateDir(dir: string): Promise<void> {
  await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
  const stat = await fsp.lstat(dir);
  if (!stat.isDirectory()) throw new Error(`the broker CA directory ${dir} is not a directory`);
  if (typeof process.getuid === "function" && stat.uid !== process.getuid())
    throw new Error(`the broker CA directory ${dir} is not owned by the sidecar's user`);
  await fsp.chmod(dir, 0o700);
}

/** Both files, or null when either is missing (never made, or a crash between the two writes). */
async function readExisting(dir: string): Promise<{ keyPem: string; certPem: string } | null> {
  try {
    const keyPem = await readOwnFile(path.join(dir, KEY_FILE), 0o600);
    const certPem = await readOwnFile(path.join(dir, CERT_FILE), 0o644);
    return { keyPem, certPem };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw error;
  }
}

/** Reads a file that is not a symlink, putting its mode back to `mode` if someone widened it. */
async function readOwnFile(file: string, mode: number): Promise<string> {
  const handle = await fsp.open(file, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    if (((await handle.stat()).mode & 0o777) !== mode) await handle.chmod(mode);
    return await handle.readFile("utf8");
  } finally {
    await handle.close();
  }
}

async function makeCa(now: number): Promise<{ keyPem: string; certPem: string }> {
  const { publicKey, privateKey } = await generateEcKeyPair("ec", { namedCurve: "P-256" });
  const certPem = buildCertificate({
    // Each sidecar's CA has a name of its own: two of them in one trust store stay apart.
    commonName: `Alive codex egress broker CA ${randomBytes(4).toString("hex")}`,
    publicKey,
    notBefore: new Date(now - LEAF_BACKDATE_MS),
    notAfter: new Date(now + CA_VALIDITY_MS),
    signingKey: privateKey,
    role: { ca: true },
  });
  return { keyPem: privateKey.export({ type: "pkcs8", format: "pem" }).toString(), certPem };
}

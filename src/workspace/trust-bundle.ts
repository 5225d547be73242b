/**
 * The trust bundle a workspace's TLS clients use (SSL_CERT_FILE and the like, codex/env.ts): the
 * system roots plus the sidecar's CA, which signs the certificates of hosts the egress proxy
 * intercepts to broker a credential (docs/security.md, "Brokered credentials"). It is written into
 * the workspace's run dir (root's, read-only inside at /run/alive), named by its content's hash, so
 * a container made by an earlier sidecar gets it at its next turn, and a changed bundle is a new name.
 */
import { createHash, randomBytes } from "node:crypto";
import { promises as fs } from "node:fs";
import path from "node:path";
import { CONTAINER_RUN_DIR } from "./spec.js";

export class TrustBundle {
  readonly name: string;

  constructor(readonly pem: string) {
    this.name = `ca-bundle-${createHash("sha256").update(pem).digest("hex").slice(0, 16)}.pem`;
  }

  /** The bundle as codex sees it. */
  get containerPath(): string {
    return path.posix.join(CONTAINER_RUN_DIR, this.name);
  }

  /** Puts the bundle in the run dir unless it is there; returns its path inside the container. */
  async installIn(runDir: string): Promise<string> {
    const target = path.join(runDir, this.name);
    const there = await fs.lstat(target).catch(() => null);
    if (there?.isFile()) return this.containerPath;
    const temp = `${target}.${randomBytes(4).toString("hex")}.tmp`;
    await fs.writeFile(temp, this.pem, { mode: 0o644, flag: "wx" });
    await fs.rename(temp, target);
    return this.containerPath;
  }
}

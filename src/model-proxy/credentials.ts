/**
 * Per-turn model credentials: what codex inside a workspace container sends as its API key
 * instead of the real one. Each is random, refers to whatever the caller chose (a workspace and
 * a turn), and stops working the moment it is revoked.
 *
 * Tokens are kept only as SHA-256 digests, and looked up by digest: the time a lookup takes
 * depends on a hash the caller cannot steer, never on how many leading characters of a valid
 * token a guess got right, so nothing about a live token leaks through timing.
 */
import { createHash, randomBytes } from "node:crypto";

export const CREDENTIAL_PREFIX = "alive-turn-";
/** 32 random bytes: 256 bits, far past guessing. */
const TOKEN_BYTES = 32;
/** The prefix and 43 base64url characters; anything longer is not ours and is not hashed. */
const TOKEN_LENGTH = CREDENTIAL_PREFIX.length + Math.ceil((TOKEN_BYTES * 4) / 3);

export class TurnCredentials<T> {
  readonly #byDigest = new Map<string, T>();

  /** Issues a fresh credential for `ref`. The caller hands it to one container and revokes it after. */
  issue(ref: T): string {
    const token = `${CREDENTIAL_PREFIX}${randomBytes(TOKEN_BYTES).toString("base64url")}`;
    this.#byDigest.set(digestOf(token), ref);
    return token;
  }

  /**
   * Accepts again a credential issued before a restart, known by its digest (credentialDigest):
   * the turn's codex keeps sending it, and the digest is all that was kept of it.
   */
  restore(digest: string, ref: T): void {
    this.#byDigest.set(digest, ref);
  }

  /** Revokes a credential known by its digest; true if it was live. */
  revokeDigest(digest: string): boolean {
    return this.#byDigest.delete(digest);
  }

  /** What `token` refers to, or null if it was never issued, was revoked, or is malformed. */
  resolve(token: string): T | null {
    if (!isWellFormed(token)) return null;
    return this.#byDigest.get(digestOf(token)) ?? null;
  }

  /** Revokes one credential; true if it was live. */
  revoke(token: string): boolean {
    if (!isWellFormed(token)) return false;
    return this.#byDigest.delete(digestOf(token));
  }

  /** Revokes every credential whose ref matches (e.g. all of a workspace being removed); returns how many. */
  revokeWhere(matches: (ref: T) => boolean): number {
    let revoked = 0;
    for (const [digest, ref] of this.#byDigest) {
      if (!matches(ref)) continue;
      this.#byDigest.delete(digest);
      revoked++;
    }
    return revoked;
  }

  /** Live credentials (for tests and metrics). */
  get size(): number {
    return this.#byDigest.size;
  }
}

/** A cheap shape check before hashing; it depends only on the guess, never on a live token. */
function isWellFormed(token: string): boolean {
  return token.length === TOKEN_LENGTH && token.startsWith(CREDENTIAL_PREFIX);
}

/** The digest a credential is kept as (what survives a restart: turn-records.ts). */
export function credentialDigest(token: string): string {
  return digestOf(token);
}

function digestOf(token: string): string {
  return createHash("sha256").update(token).digest("base64url");
}

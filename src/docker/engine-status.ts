/** The engine and image facts sidecar.health reports, read cheaply. */
import type { HealthResult } from "../service.js";
import { raceAbort } from "../shared/abort.js";
import { isImagePresent } from "./base-image.js";
import type { EnginePort } from "./engine-port.js";
import type { Docker } from "./engine.js";
import type { ImageCodex } from "./image-codex.js";
import type { RuntimeImage } from "./images.js";
import type { RuntimeCodex } from "./runtime-codex.js";

/**
 * What health reports about the engine and the image, cheaply: reachability is a /_ping on every
 * call (~0.3 ms); the engine version, the image reference and its presence are re-read at most
 * every few seconds (Engine 20.10's /version alone costs 7-10 ms).
 */
export class EngineStatus {
  private cached: {
    at: number;
    serverVersion: string;
    image: { ref: string; present: boolean } | null;
    codex: ImageCodex | null;
  } | null = null;
  private static readonly TTL_MS = 5000;

  constructor(
    private readonly engine: EnginePort,
    private readonly docker: Docker,
    private readonly image: RuntimeImage,
    private readonly codex: RuntimeCodex,
  ) {}

  /** The engine, the image and the codex found in it (read once per image: RuntimeCodex caches it). */
  async read(signal?: AbortSignal): Promise<[HealthResult["docker"], HealthResult["image"] | null, ImageCodex | null]> {
    const deadline = AbortSignal.any([AbortSignal.timeout(3000), ...(signal ? [signal] : [])]);
    try {
      await this.engine.ping(deadline);
    } catch {
      this.cached = null;
      return [{ reachable: false }, null, null];
    }
    if (this.cached === null || Date.now() - this.cached.at > EngineStatus.TTL_MS) {
      const serverVersion = await this.engine.version(deadline);
      let image: { ref: string; present: boolean } | null = null;
      try {
        const ref = await this.image.ref();
        image = { ref, present: await isImagePresent(this.docker, ref) };
      } catch {
        image = null;
      }
      const codex = image?.present ? await raceAbort(this.codex.found(image.ref), deadline).catch(() => null) : null;
      this.cached = { at: Date.now(), serverVersion, image, codex: codex?.codex ?? null };
    }
    return [{ reachable: true, serverVersion: this.cached.serverVersion }, this.cached.image, this.cached.codex];
  }
}

/**
 * The codex version a runtime image carries, as found in the image rather than as asked for: its
 * label (set by the sidecar's own build, from the codex-package.json it copied in), else
 * /opt/codex/codex-package.json read out of a container created (never started) from the image:
 * an image built elsewhere (ALIVE_CODEX_IMAGE) may carry any codex.
 */
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import tar from "tar-fs";
import { parseCodexPackageInfo } from "../codex-package.js";
import type { Docker } from "./engine.js";
import { withDocker } from "./engine.js";
import { LABEL_PREFIX } from "./labels.js";

export const CODEX_VERSION_LABEL = `${LABEL_PREFIX}.codex-version`;
/** Where images/runtime/Dockerfile puts the codex build's own description. */
export const IMAGE_CODEX_PACKAGE_JSON = "/opt/codex/codex-package.json";

export interface ImageCodex {
  version: string;
  /** "label": the image's dev.alive.codex.codex-version; "file": its /opt/codex/codex-package.json. */
  source: "label" | "file";
}

/** The label's version when it has one that looks like a version, else null. */
export function codexVersionFromLabels(labels: Record<string, string> | null | undefined): string | null {
  const value = labels?.[CODEX_VERSION_LABEL]?.trim();
  return value !== undefined && /^\d+\.\d+\.\d+/.test(value) ? value : null;
}

export interface ImageCodexOptions {
  /** Labels for the short-lived container the file is read from (the reaper finds it by them). */
  labels: Record<string, string>;
  signal?: AbortSignal;
}

/** What codex `ref` carries; null when the image has neither the label nor the file (not a runtime image). */
export async function readImageCodex(
  docker: Docker,
  ref: string,
  options: ImageCodexOptions,
): Promise<ImageCodex | null> {
  const info = await withDocker(`inspect image ${ref}`, () => docker.getImage(ref).inspect());
  const labelled = codexVersionFromLabels(info.Config?.Labels);
  if (labelled !== null) return { version: labelled, source: "label" };
  const text = await readFileFromImage(docker, ref, IMAGE_CODEX_PACKAGE_JSON, options);
  if (text === null) return null;
  return { version: parseCodexPackageInfo(text, `${IMAGE_CODEX_PACKAGE_JSON} in ${ref}`).version, source: "file" };
}

/**
 * One file of an image, through a container that is created and removed but never started (nothing
 * of the image runs): the engine's archive endpoint, unpacked into a temp dir. Null when it is absent.
 */
async function readFileFromImage(
  docker: Docker,
  ref: string,
  file: string,
  options: ImageCodexOptions,
): Promise<string | null> {
  const container = await withDocker(`create a container of ${ref} to read ${file}`, () =>
    docker.createContainer({
      Image: ref,
      Entrypoint: ["/nonexistent-never-started"],
      Cmd: [],
      Labels: options.labels,
      NetworkDisabled: true,
      HostConfig: { NetworkMode: "none", AutoRemove: false },
      ...(options.signal ? { abortSignal: options.signal } : {}),
    }),
  );
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "alive-codex-image-file-"));
  try {
    const archive = await withDocker(`read ${file} from ${ref}`, () => container.getArchive({ path: file }), {
      ignore: [404],
    });
    if (archive === undefined) return null;
    await pipeline(
      archive,
      tar.extract(dir, {
        ignore: (_name: string, header?: tar.Headers) => header?.type !== "file",
      } as tar.ExtractOptions) as unknown as NodeJS.WritableStream,
    );
    return await fs.readFile(path.join(dir, path.basename(file)), "utf8").catch(() => null);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
    await container.remove({ force: true, v: true }).catch(() => undefined);
  }
}

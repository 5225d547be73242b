/**
 * The derived tag of the runtime image, `alive-codex-runtime:<12 hex>`: a sha256 over every file
 * under images/runtime, the codex version and target, and the base image's reference and id. An
 * upgrade of any of them gives a new tag (so a rebuild); an unchanged tree finds its image and reuses it.
 */
import { createHash } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";

export const RUNTIME_IMAGE_REPOSITORY = "alive-codex-runtime";

/** One file of the build context, for hashing: path relative to the context dir, '/'-separated. */
export interface ContextFile {
  path: string;
  content: string | Uint8Array;
}

export interface RuntimeTagInputs {
  files: readonly ContextFile[];
  codexVersion: string;
  codexTarget: string;
  baseImage: string;
  /** The base image's id (sha256:…), so a re-made base with the same name gives a new tag. */
  baseImageId: string;
}

/** The derived tag of the runtime image: a pure function of its build inputs (file order does not matter). */
export function runtimeImageTag(inputs: RuntimeTagInputs): string {
  const hash = createHash("sha256");
  const field = (name: string, value: string | Uint8Array): void => {
    const bytes = typeof value === "string" ? Buffer.from(value, "utf8") : value;
    hash.update(`${name}\0${bytes.length}\0`);
    hash.update(bytes);
  };
  field("format", "alive-codex-runtime/2");
  for (const file of [...inputs.files].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))) {
    field("file", file.path);
    field("content", file.content);
  }
  field("codex-version", inputs.codexVersion);
  field("codex-target", inputs.codexTarget);
  field("base-image", inputs.baseImage);
  field("base-image-id", inputs.baseImageId);
  return `${RUNTIME_IMAGE_REPOSITORY}:${hash.digest("hex").slice(0, 12)}`;
}

/** Every regular file under `dir`, with '/'-separated paths relative to it. */
export async function readContextFiles(dir: string): Promise<ContextFile[]> {
  const files: ContextFile[] = [];
  const walk = async (relative: string): Promise<void> => {
    const entries = await readdir(path.join(dir, relative), { withFileTypes: true });
    for (const entry of entries) {
      const child = relative === "" ? entry.name : `${relative}/${entry.name}`;
      if (entry.isDirectory()) await walk(child);
      else if (entry.isFile()) files.push({ path: child, content: await readFile(path.join(dir, child)) });
    }
  };
  await walk("");
  return files;
}

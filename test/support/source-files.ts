/** The repository's src/ as the structural unit tests read it (layering, the engine port, file size). */
import { existsSync, readdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

/** src/ of the checkout this test runs from (the first folder above it holding package.json). */
export function findSrcDir(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, "package.json"))) {
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error("no package.json above the test");
    dir = parent;
  }
  return path.join(dir, "src");
}

/** Every .ts file below `dir`, relative to it and '/'-separated. */
export function listTs(dir: string, relative = ""): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(path.join(dir, relative), { withFileTypes: true })) {
    const child = relative === "" ? entry.name : `${relative}/${entry.name}`;
    if (entry.isDirectory()) out.push(...listTs(dir, child));
    else if (entry.isFile() && entry.name.endsWith(".ts")) out.push(child);
  }
  return out;
}

#!/usr/bin/env node
// Builds the sidecar's own image from images/sidecar/Dockerfile, for running the sidecar in a
// container (compose/compose.yaml, docs/compose.md). Run `npm run build` first.
//
//   node scripts/build-sidecar-image.mjs [--base-image REF] [--force]
//
// Tags alive-codex-sidecar:<package version> and alive-codex-sidecar:<version>-<12 hex>, a sha256
// over the build inputs (the Dockerfile, package.json, package-lock.json, dist/src, images/runtime,
// the list of staged packages, the Node binary, the base image's reference and id). When an image
// of that tag exists it is reused (and <version> moved to it); --force builds anyway.
// Prints the <version>-<hash> reference as the only line on stdout; everything else goes to stderr.
//
// The base image: --base-image, else $ALIVE_CODEX_BASE_IMAGE, else debian:bookworm-slim when the
// engine has it, else alive-codex-base:bookworm (scripts/make-base-image.mjs) when it has that,
// else debian:bookworm-slim pulled.
//
// The build context is staged as symlinks in a temp dir and sent with `tar --dereference`, so
// nothing big is copied on disk: the Node binary this script runs with (process.execPath; Debian
// bookworm's nodejs is 18, the sidecar needs >= 20), the production packages of node_modules (those
// package-lock.json does not mark "dev", that are installed; codex's voice resources left out, as
// in the runtime image), package.json, package-lock.json, dist/src and images/runtime.
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import { createReadStream, existsSync, realpathSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm, symlink } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { $ } from "zx";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const REPOSITORY = "alive-codex-sidecar";
const DEFAULT_BASE_IMAGE = "debian:bookworm-slim";
const LOCAL_BASE_IMAGE = "alive-codex-base:bookworm";
const LABEL_PREFIX = "dev.alive.codex";

const say = (message) => console.error(`build-sidecar-image: ${message}`);
function fail(message) {
  console.error(`build-sidecar-image: ERROR: ${message}`);
  process.exit(1);
}

function parseArgs(argv) {
  const options = { baseImage: process.env.ALIVE_CODEX_BASE_IMAGE || "", force: false };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--force") options.force = true;
    else if (arg === "--base-image" && argv[i + 1] !== undefined) options.baseImage = argv[++i];
    else if (arg.startsWith("--base-image=")) options.baseImage = arg.slice("--base-image=".length);
    else if (arg === "--help" || arg === "-h") {
      console.log("Usage: node scripts/build-sidecar-image.mjs [--base-image REF] [--force]");
      process.exit(0);
    } else fail(`unexpected argument ${JSON.stringify(arg)} (expected --base-image REF or --force)`);
  }
  return options;
}

const quiet = $({ quiet: true, nothrow: true });

async function imageId(ref) {
  const result = await quiet`docker image inspect --format {{.Id}} ${ref}`;
  return result.exitCode === 0 ? result.stdout.trim() : null;
}

async function pull(ref) {
  say(`pulling ${ref}`);
  const result = await $({ nothrow: true, stdio: ["ignore", 2, 2] })`docker pull ${ref}`;
  return result.exitCode === 0 ? imageId(ref) : null;
}

/** The base image and its id, chosen as the header says. */
async function resolveBaseImage(requested) {
  const hint = `pull it where a registry is reachable, or make a local Debian bookworm base with \`node scripts/make-base-image.mjs\` and pass --base-image ${LOCAL_BASE_IMAGE} (see docs/image.md)`;
  if (requested !== "") {
    const id = (await imageId(requested)) ?? (await pull(requested));
    if (id === null) fail(`base image ${requested} is not in the engine and cannot be pulled: ${hint}`);
    return { ref: requested, id };
  }
  for (const ref of [DEFAULT_BASE_IMAGE, LOCAL_BASE_IMAGE]) {
    const id = await imageId(ref);
    if (id !== null) return { ref, id };
  }
  const id = await pull(DEFAULT_BASE_IMAGE);
  if (id === null)
    fail(
      `neither ${DEFAULT_BASE_IMAGE} nor ${LOCAL_BASE_IMAGE} is in the engine, and ${DEFAULT_BASE_IMAGE} cannot be pulled: ${hint}`,
    );
  return { ref: DEFAULT_BASE_IMAGE, id };
}

/** Every regular file under `dir`, as '/'-separated paths relative to it, sorted. */
async function listFiles(dir) {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((entry) => entry.isFile())
    .map((entry) =>
      path
        .relative(dir, path.join(entry.parentPath ?? entry.path, entry.name))
        .split(path.sep)
        .join("/"),
    )
    .sort();
}

/** The installed production packages: package-lock.json entries not marked dev, top level only (nested ones come with their parent). */
async function productionPackages() {
  const lock = JSON.parse(await readFile(path.join(ROOT, "package-lock.json"), "utf8"));
  if (!lock.packages) fail("package-lock.json has no `packages` (lockfile version 2 or later needed)");
  const packages = [];
  for (const [key, entry] of Object.entries(lock.packages)) {
    if (key === "" || entry.dev || entry.link) continue;
    const rest = key.slice("node_modules/".length);
    const topLevel = /^(@[^/]+\/)?[^/]+$/.test(rest);
    if (!key.startsWith("node_modules/") || !topLevel) continue;
    if (existsSync(path.join(ROOT, key))) packages.push(key);
    else if (!entry.optional) fail(`${key} is in package-lock.json but not installed: run \`npm ci\``);
  }
  return packages.sort();
}

/** Directories left out of the image: codex's voice resources (~50 MB), which the runtime image leaves out too. */
async function prunedPaths(packages) {
  const pruned = [];
  for (const key of packages.filter((p) => /^node_modules\/@openai\/codex-linux-[^/]+$/.test(p))) {
    const vendor = path.join(ROOT, key, "vendor");
    if (!existsSync(vendor)) continue;
    for (const triple of await readdir(vendor)) {
      const voice = path.join(vendor, triple, "codex-resources", "voice");
      if (existsSync(voice)) pruned.push(voice);
    }
  }
  return pruned;
}

/** Mirrors `source` at `target` with symlinks: one link for a subtree without pruned paths, else its entries one by one. */
async function linkTree(source, target, pruned) {
  if (!pruned.some((p) => p.startsWith(`${source}${path.sep}`))) {
    await mkdir(path.dirname(target), { recursive: true });
    await symlink(source, target);
    return;
  }
  await mkdir(target, { recursive: true });
  for (const entry of await readdir(source)) {
    const child = path.join(source, entry);
    if (!pruned.includes(child)) await linkTree(child, path.join(target, entry), pruned);
  }
}

async function hashFile(hash, file) {
  for await (const chunk of createReadStream(file)) hash.update(chunk);
}

/** The inputs hash: the tag of an image that holds exactly these inputs. */
async function inputsHash({ appFiles, packages, pruned, nodeBinary, baseImage }) {
  const hash = createHash("sha256");
  const field = (name, value) => {
    const bytes = Buffer.from(value, "utf8");
    hash.update(`${name}\0${bytes.length}\0`);
    hash.update(bytes);
  };
  field("format", "alive-codex-sidecar/1");
  for (const file of [
    ...(await listFiles(path.join(ROOT, "images", "sidecar"))).map((f) => `images/sidecar/${f}`),
    ...appFiles,
  ]) {
    field("file", file);
    await hashFile(hash, path.join(ROOT, file));
  }
  for (const key of packages) field("package", key);
  for (const p of pruned) field("pruned", path.relative(ROOT, p));
  field("node", `${process.version} ${process.arch}`);
  await hashFile(hash, nodeBinary);
  field("base-image", baseImage.ref);
  field("base-image-id", baseImage.id);
  return hash.digest("hex").slice(0, 12);
}

const options = parseArgs(process.argv.slice(2));
const pkg = JSON.parse(await readFile(path.join(ROOT, "package.json"), "utf8"));
if (!existsSync(path.join(ROOT, "dist", "src", "cli", "main.js")))
  fail("dist/src/cli/main.js is missing: run `npm run build` first");
if ((await quiet`docker version --format {{.Server.Version}}`).exitCode !== 0)
  fail("the Docker engine does not answer to `docker version` (DOCKER_HOST?)");

const started = Date.now();
const baseImage = await resolveBaseImage(options.baseImage);
const nodeBinary = realpathSync(process.execPath);
const packages = await productionPackages();
const pruned = await prunedPaths(packages);
const appFiles = [
  "package.json",
  "package-lock.json",
  ...(await listFiles(path.join(ROOT, "dist", "src"))).map((f) => `dist/src/${f}`),
  ...(await listFiles(path.join(ROOT, "images", "runtime"))).map((f) => `images/runtime/${f}`),
];
const hash = await inputsHash({ appFiles, packages, pruned, nodeBinary, baseImage });
const ref = `${REPOSITORY}:${pkg.version}-${hash}`;
const versionRef = `${REPOSITORY}:${pkg.version}`;

if (!options.force && (await imageId(ref)) !== null) {
  await $`docker tag ${ref} ${versionRef}`;
  say(`${ref} exists (inputs unchanged): reused, ${versionRef} points to it`);
  console.log(ref);
  process.exit(0);
}

const context = await mkdtemp(path.join(os.tmpdir(), "alive-codex-sidecar-build-"));
try {
  await symlink(path.join(ROOT, "images", "sidecar", "Dockerfile"), path.join(context, "Dockerfile"));
  await symlink(nodeBinary, path.join(context, "node"));
  for (const key of packages) await linkTree(path.join(ROOT, key), path.join(context, "modules", key), pruned);
  for (const entry of ["package.json", "package-lock.json", path.join("dist", "src"), path.join("images", "runtime")]) {
    await mkdir(path.dirname(path.join(context, "app", entry)), { recursive: true });
    await symlink(path.join(ROOT, entry), path.join(context, "app", entry));
  }
  say(
    `building ${ref} FROM ${baseImage.ref} (node ${process.version} from ${nodeBinary}, ${packages.length} production packages)`,
  );
  const labels = [
    `${LABEL_PREFIX}.image=sidecar`,
    `${LABEL_PREFIX}.version=${pkg.version}`,
    `${LABEL_PREFIX}.inputs=${hash}`,
    `${LABEL_PREFIX}.base-image=${baseImage.ref}`,
  ].flatMap((label) => ["--label", label]);
  // Ownership root:root in the image; modes as on disk. stdout of the build goes to our stderr.
  const build = await $({
    quiet: true,
    nothrow: true,
  })`tar -C ${context} --dereference --owner=0 --group=0 --numeric-owner -cf - .`.pipe(
    $({
      stdio: ["pipe", 2, 2],
      nothrow: true,
    })`docker build --force-rm --build-arg BASE_IMAGE=${baseImage.ref} ${labels} -t ${ref} -t ${versionRef} -`,
  );
  if (build.exitCode !== 0) fail(`docker build exited with ${build.exitCode} (its output is above)`);
} finally {
  await rm(context, { recursive: true, force: true });
}
const size = (await quiet`docker image inspect --format {{.Size}} ${ref}`).stdout.trim();
say(
  `built ${ref} (and ${versionRef}) in ${Math.round((Date.now() - started) / 1000)} s; ${Math.round(Number(size) / 1e6)} MB`,
);
console.log(ref);

#!/usr/bin/env node
// Makes a local Debian bookworm base image for the runtime image, for engines that cannot pull
// debian:bookworm-slim (no registry). Does nothing when the image already exists.
//
//   node scripts/make-base-image.mjs [TAG]       (default: $ALIVE_CODEX_BASE_IMAGE, else alive-codex-base:bookworm)
//
// Then run the sidecar (and the tests) with ALIVE_CODEX_BASE_IMAGE=<TAG>. Needs root (debootstrap
// makes device nodes and chroots) and apt access to Debian's package mirrors; takes about 30 s.
import { mkdtemp } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { $, which } from "zx";

const DEFAULT_TAG = "alive-codex-base:bookworm";
const SUITE = "bookworm";

const tag = process.argv[2] ?? (process.env.ALIVE_CODEX_BASE_IMAGE || DEFAULT_TAG);
const say = (message) => console.log(`make-base-image: ${message}`);
const run = $({ stdio: "inherit", verbose: false });
const asRoot = process.getuid?.() === 0 ? [] : ["sudo"];

async function imageExists(ref) {
  const result = await $({ nothrow: true, quiet: true })`docker image inspect --format {{.Id}} ${ref}`;
  return result.exitCode === 0 ? result.stdout.trim() : null;
}

const existing = await imageExists(tag);
if (existing !== null) {
  say(`${tag} already exists (${existing}); nothing to do`);
  process.exit(0);
}

if ((await which("debootstrap", { nothrow: true })) === null) {
  say("debootstrap is missing: installing it with apt-get");
  await run`${asRoot} apt-get update`;
  await run`${asRoot} apt-get install -y --no-install-recommends debootstrap`;
}

const dir = await mkdtemp(path.join(os.tmpdir(), "alive-codex-base-"));
const started = Date.now();
try {
  say(`debootstrap --variant=minbase ${SUITE} ${dir}`);
  await run`${asRoot} debootstrap --variant=minbase ${SUITE} ${dir}`;
  say("removing apt caches and package lists from the tree");
  // The runtime image runs apt-get update itself: the downloaded .debs and lists are dead weight (~80 MB).
  const apt = (...parts) => path.join(dir, ...parts);
  await run`${asRoot} find ${apt("var", "cache", "apt")} ${apt("var", "lib", "apt", "lists")} -type f ! -name lock -delete`;
  say(`tar -C ${dir} -c . | docker import - ${tag}`);
  await $({ quiet: true })`${asRoot} tar -C ${dir} -c .`.pipe(
    $({ stdio: ["pipe", "inherit", "inherit"] })`docker import - ${tag}`,
  );
  const id = await imageExists(tag);
  if (id === null) throw new Error(`docker import finished but ${tag} is not in the engine`);
  say(
    `made ${tag} (${id}) in ${Math.round((Date.now() - started) / 1000)} s; use it with ALIVE_CODEX_BASE_IMAGE=${tag}`,
  );
} finally {
  say(`removing ${dir}`);
  await run`${asRoot} rm -rf ${dir}`;
}

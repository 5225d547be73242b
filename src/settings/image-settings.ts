/**
 * The settings of the runtime image a workspace container runs (its base, the codex version it
 * installs and where from) and of the OCI runtimes it may run under.
 */
import { MIN_CODEX_VERSION, parseCodexVersionSetting } from "../codex-versions.js";
import { ConfigError, parseName, parseUrl } from "../shared/setting-parsers.js";
import { names, setting, type AnySetting } from "./setting-spec.js";

/** A comma-separated list of runtime names, at least one. */
const runtimeNames = (name: string, raw: string): string[] => {
  const list = raw
    .split(",")
    .map((entry) => entry.trim())
    .filter((entry) => entry !== "");
  if (list.length === 0) throw new ConfigError(name, raw, "a comma-separated list of runtime names, e.g. runc,runsc");
  return [...new Set(list.map((entry) => parseName(name, entry, 64)))];
};

export const IMAGE_SETTINGS: readonly AnySetting[] = [
  setting({
    key: "image",
    env: "ALIVE_CODEX_IMAGE",
    flag: "--image",
    parse: names(255),
    default: null,
    defaultText: "alive-codex-runtime:<hash of build inputs>",
    description:
      "Runtime image reference. Unset: the sidecar builds images/runtime on first need and tags it by its inputs.",
  }),
  setting({
    key: "baseImage",
    env: "ALIVE_CODEX_BASE_IMAGE",
    flag: "--base-image",
    parse: names(255),
    default: null,
    defaultText: "debian:bookworm-slim when present, else the local alive-codex-base:bookworm",
    description:
      "Base image the runtime image is built FROM (scripts/make-base-image.mjs makes the local one where no registry is reachable).",
  }),
  setting({
    key: "codexVersion",
    env: "ALIVE_CODEX_CODEX_VERSION",
    flag: "--codex-version",
    parse: parseCodexVersionSetting,
    default: null,
    defaultText: "the SDK's: the @openai/codex that @openai/codex-sdk depends on",
    description: `The @openai/codex CLI version the runtime image installs, e.g. 0.171.0 (new models can need a newer CLI). At least ${MIN_CODEX_VERSION} (an older one is refused at start-up, naming it); one the sidecar's tests have not run against starts with a warning. A version other than the SDK's is fetched from ALIVE_CODEX_NPM_REGISTRY when the image is built (the image tag changes with it); sidecar.health and doctor report the version found in the image. With ALIVE_CODEX_IMAGE set, the image must carry this version. See docs/image.md, "Codex version".`,
  }),
  setting({
    key: "npmRegistry",
    env: "ALIVE_CODEX_NPM_REGISTRY",
    flag: "--npm-registry",
    parse: parseUrl,
    default: null,
    defaultText: "npm's configured registry",
    description:
      "npm registry (or a mirror of it) a codex version other than the SDK's is fetched from, by the sidecar itself when it builds the runtime image: the package's manifest, then its tarball, checked against the manifest's sha512 integrity. Unset: the registry `npm config get registry` names, asked at build time (where npm is absent, as in the sidecar image, set it). No proxy settings are read: point it at a mirror the sidecar reaches directly.",
  }),
  setting({
    key: "runtime",
    env: "ALIVE_CODEX_RUNTIME",
    flag: "--runtime",
    parse: names(64),
    default: null,
    defaultText: "(engine default, runc)",
    description:
      "OCI runtime of a workspace container whose workspace.ensure names none, e.g. runsc for gVisor (docs/runtimes.md).",
  }),
  setting({
    key: "runtimes",
    env: "ALIVE_CODEX_RUNTIMES",
    flag: "--runtimes",
    parse: runtimeNames,
    default: "runc,runsc",
    description:
      "Comma-separated OCI runtimes a workspace may ask for (workspace.ensure runtime); ALIVE_CODEX_RUNTIME is always allowed. Each must also be registered with the engine (docker info), else -32006. scripts/install-runsc.sh registers runsc (docs/runtimes.md).",
  }),
  setting({
    key: "network",
    env: "ALIVE_CODEX_NETWORK",
    flag: "--network",
    parse: names(64),
    default: null,
    defaultText: "(unset)",
    description:
      "No longer used: workspace containers have no network of their own and reach out only through the sidecar (docs/security.md). Still accepted, so existing configurations load; the sidecar logs a deprecation warning at start when it is set.",
  }),
];

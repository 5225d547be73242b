import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { sdkCodexVersion } from "../../src/codex-package.js";
import {
  CODEX_FLAGS,
  MIN_CODEX_VERSION,
  TESTED_CODEX_VERSIONS,
  codexFlagsFor,
  codexSupport,
  compareCodexVersions,
  describeCodexHealth,
  parseCodexVersionSetting,
} from "../../src/codex-versions.js";
import { ConfigError, loadConfig } from "../../src/config.js";
import { codexStartupProblem } from "../../src/docker/runtime-codex.js";
import { RuntimeCodex } from "../../src/docker/runtime-codex.js";
import { createLogger } from "../../src/log.js";

describe("codex versions", () => {
  test("the minimum is the installed SDK's own codex, and it is among the tested ones (a bumped SDK must update both)", () => {
    assert.equal(MIN_CODEX_VERSION, sdkCodexVersion());
    assert.ok(TESTED_CODEX_VERSIONS.includes(sdkCodexVersion()));
  });

  test("versions compare by number, a prerelease before its release", () => {
    assert.ok(compareCodexVersions("0.171.0", "0.163.0") > 0);
    assert.ok(compareCodexVersions("0.163.0", "0.171.0") < 0);
    assert.ok(compareCodexVersions("0.99.0", "0.163.0") < 0, "numbers, not text");
    assert.equal(compareCodexVersions("0.163.0", "0.163.0"), 0);
    assert.ok(compareCodexVersions("0.172.0-alpha.1", "0.172.0") < 0);
    assert.ok(compareCodexVersions("1.0.0", "0.999.999") > 0);
    assert.throws(() => compareCodexVersions("latest", "0.163.0"), /not a codex version: "latest"/);
  });

  test("support: below the minimum refused naming the version and why; tested ones marked; newer ones driven but untested", () => {
    assert.deepEqual(codexSupport("0.163.0"), { supported: true, tested: true });
    assert.deepEqual(codexSupport("0.171.0"), { supported: true, tested: true });
    assert.deepEqual(codexSupport("0.169.1"), { supported: true, tested: false });
    const old = codexSupport("0.150.0");
    assert.equal(old.supported, false);
    assert.match(
      old.supported ? "" : old.reason,
      /^codex 0\.150\.0 is older than 0\.163\.0, the oldest @openai\/codex-sdk 0\.163\.0 can drive/,
    );
    assert.equal(codexSupport("0.163").supported, false);
  });

  test("flags: every hardening flag for every version driven; none for what is not a version", () => {
    assert.deepEqual(codexFlagsFor("0.163.0"), ["--ignore-user-config", "--ignore-rules"]);
    assert.deepEqual(codexFlagsFor("0.171.0"), ["--ignore-user-config", "--ignore-rules"]);
    assert.deepEqual(codexFlagsFor("0.150.0"), []);
    assert.deepEqual(codexFlagsFor("garbage"), []);
    for (const flag of CODEX_FLAGS)
      assert.ok(compareCodexVersions(flag.since, MIN_CODEX_VERSION) >= 0 && flag.why.length > 20, flag.flag);
  });

  test("the setting: a version driven, else a ConfigError naming the setting, the value and what is expected", () => {
    assert.equal(parseCodexVersionSetting("ALIVE_CODEX_CODEX_VERSION", "0.171.0"), "0.171.0");
    assert.equal(parseCodexVersionSetting("ALIVE_CODEX_CODEX_VERSION", "v0.171.0"), "0.171.0");
    assert.throws(
      () => parseCodexVersionSetting("ALIVE_CODEX_CODEX_VERSION", "latest"),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.match(
          error.message,
          /^ALIVE_CODEX_CODEX_VERSION="latest": expected a codex version as npm lists @openai\/codex's, MAJOR\.MINOR\.PATCH/,
        );
        return true;
      },
    );
    assert.throws(
      () => parseCodexVersionSetting("--codex-version", "0.150.0"),
      /^ConfigError: --codex-version="0\.150\.0": expected a version at or above 0\.163\.0: codex 0\.150\.0 is older than/,
    );
    assert.equal(loadConfig({}, {}).codexVersion, null);
    assert.equal(loadConfig({}, { ALIVE_CODEX_CODEX_VERSION: "0.171.0" }).codexVersion, "0.171.0");
    assert.equal(
      loadConfig({ "--codex-version": "0.163.0" }, { ALIVE_CODEX_CODEX_VERSION: "0.171.0" }).codexVersion,
      "0.163.0",
    );
    assert.throws(() => loadConfig({}, { ALIVE_CODEX_CODEX_VERSION: "0.1.0" }), /ALIVE_CODEX_CODEX_VERSION="0\.1\.0"/);
    assert.equal(loadConfig({}, {}).npmRegistry, null, "unset: npm's own configured registry, asked at build time");
    assert.throws(() => loadConfig({}, { ALIVE_CODEX_NPM_REGISTRY: "registry.example" }), /ALIVE_CODEX_NPM_REGISTRY/);
  });
});

describe("health's codex line, as alive-codex health and doctor print it", () => {
  const flags = ["--ignore-user-config", "--ignore-rules"];
  test("each origin, tested or not, read from the image or not yet", () => {
    assert.equal(
      describeCodexHealth({ version: "0.163.0", requested: "0.163.0", sdk: "0.163.0", tested: true, flags }),
      "0.163.0 (the SDK's; tested; adds --ignore-user-config --ignore-rules)",
    );
    assert.equal(
      describeCodexHealth({ version: null, requested: "0.171.0", sdk: "0.163.0", tested: true, flags }),
      "0.171.0 (ALIVE_CODEX_CODEX_VERSION; the SDK's is 0.163.0; not read from the image yet; tested; adds --ignore-user-config --ignore-rules)",
    );
    assert.equal(
      describeCodexHealth({ version: "0.169.1", requested: null, sdk: "0.163.0", tested: false, flags: [] }),
      "0.169.1 (the image's, given as is (ALIVE_CODEX_IMAGE); NOT TESTED with this sidecar; adds no flag)",
    );
    assert.equal(
      describeCodexHealth({ version: null, requested: null, sdk: "0.163.0", tested: false, flags: [] }),
      "unknown (the image's, given as is (ALIVE_CODEX_IMAGE); not read from the image yet; NOT TESTED with this sidecar; adds no flag)",
    );
  });
});

describe("the runtime image's codex, as start-up and health see it", () => {
  const log = createLogger({ level: "error", write: () => undefined });
  const runtimeCodex = (configured: string | null, explicitImage: boolean): RuntimeCodex =>
    new RuntimeCodex({
      docker: null as never,
      image: { ref: () => Promise.resolve("alive-codex-runtime:test") },
      configured,
      explicitImage,
      sdk: "0.163.0",
      labels: {},
      log,
    });

  test("start-up refuses an image whose codex the SDK cannot drive, or an image given as is with another version than the one set", () => {
    assert.equal(codexStartupProblem({ version: "0.171.0", source: "label" }, null, "img:1"), null);
    assert.equal(codexStartupProblem({ version: "0.171.0", source: "file" }, "0.171.0", "img:1"), null);
    assert.match(
      codexStartupProblem({ version: "0.150.0", source: "file" }, null, "img:1") ?? "",
      /^The runtime image img:1 carries codex 0\.150\.0, which this sidecar cannot drive: codex 0\.150\.0 is older than 0\.163\.0/,
    );
    assert.match(
      codexStartupProblem({ version: "0.163.0", source: "label" }, "0.171.0", "img:1") ?? "",
      /^ALIVE_CODEX_CODEX_VERSION is 0\.171\.0, but the runtime image img:1 \(ALIVE_CODEX_IMAGE\) carries codex 0\.163\.0/,
    );
  });

  test("requested: the setting, else the SDK's when the sidecar builds the image, else nothing for an image given as is", () => {
    assert.equal(runtimeCodex(null, false).requested, "0.163.0");
    assert.equal(runtimeCodex("0.171.0", false).requested, "0.171.0");
    assert.equal(runtimeCodex(null, true).requested, null);
    assert.equal(runtimeCodex("0.171.0", true).requested, "0.171.0");
  });

  test("health: the version found, else none yet; tested and the flags for it", () => {
    assert.deepEqual(runtimeCodex("0.171.0", false).health({ version: "0.171.0", source: "label" }), {
      version: "0.171.0",
      requested: "0.171.0",
      sdk: "0.163.0",
      tested: true,
      flags: ["--ignore-user-config", "--ignore-rules"],
    });
    assert.deepEqual(runtimeCodex(null, false).health(null), {
      version: null,
      requested: "0.163.0",
      sdk: "0.163.0",
      tested: true,
      flags: ["--ignore-user-config", "--ignore-rules"],
    });
    assert.equal(runtimeCodex(null, true).health({ version: "0.169.1", source: "file" }).tested, false);
    assert.equal(runtimeCodex(null, true).health(null).tested, false);
  });
});

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { execa } from "execa";
import { LAUNCHER_BINARY, LAUNCH_SCRIPT, encodeLaunchHeader, launcherCommand } from "../../src/codex/launcher.js";

/**
 * The launch script under a real bash, with a `codex` on PATH that prints the argv it got (one
 * argument per line) and one variable of its env: what codex in the container would be given. It
 * also writes a line to its stdout and stderr: they must land in the turn's files, not the exec's.
 */
async function launch(
  flags: string[],
  env: Record<string, string>,
  argv: string[],
  prompt = "",
): Promise<{ args: string[]; env: string; stdin: string; out: string; err: string; execOutput: string }> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "alive-launch-"));
  try {
    await fs.writeFile(
      path.join(dir, "codex"),
      '#!/bin/bash\nprintf "%s\\n" "$@" > "$OUT/args"\nprintf "%s" "${ALIVE_TEST_VAR-unset}" > "$OUT/env"\ncat > "$OUT/stdin"\necho event\necho diagnostics >&2\n',
      { mode: 0o755 },
    );
    const [, , script, name, ...rest] = launcherCommand(flags);
    await fs.writeFile(path.join(dir, "turn.in"), prompt);
    // Codex's output is appended: what is there already stays.
    await fs.writeFile(path.join(dir, "turn.out"), "before\n");
    const files = {
      stdin: path.join(dir, "turn.in"),
      stdout: path.join(dir, "turn.out"),
      stderr: path.join(dir, "turn.err"),
    };
    const result = await execa("bash", ["-c", script as string, name as string, ...rest], {
      input: encodeLaunchHeader(env, argv, files),
      env: { PATH: `${dir}:/usr/bin:/bin`, OUT: dir },
      extendEnv: false,
      reject: false,
    });
    assert.equal(result.exitCode, 0, result.stderr);
    const read = (file: string): Promise<string> => fs.readFile(path.join(dir, file), "utf8");
    return {
      args: (await read("args")).split("\n").slice(0, -1),
      env: await read("env"),
      stdin: await read("stdin"),
      out: await read("turn.out"),
      err: await read("turn.err"),
      execOutput: result.stdout + result.stderr,
    };
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

describe("the launcher", () => {
  test("its command: the launch script, its name, then the flags it adds", () => {
    assert.deepEqual(launcherCommand(), [LAUNCHER_BINARY, "-c", LAUNCH_SCRIPT, "alive-launch"]);
    assert.deepEqual(launcherCommand(["--ignore-user-config"]).slice(3), ["alive-launch", "--ignore-user-config"]);
    assert.throws(() => launcherCommand(["--x; rm -rf /"]), /not a codex flag/);
    assert.throws(() => launcherCommand(["resume"]), /not a codex flag/);
  });

  test("the flags go right after exec, ahead of the SDK's argv; the env is exported, the prompt is codex's stdin and its output goes to the turn's files", async () => {
    const sdkArgv = [
      "exec",
      "--experimental-json",
      "--config",
      'model_provider="alive"',
      "--model",
      "gpt-5.5",
      "resume",
      "0199a213-81c0-7800-8aa1-bbab2a035a53",
    ];
    const got = await launch(
      ["--ignore-user-config", "--ignore-rules"],
      { ALIVE_TEST_VAR: "a value with spaces=and equals" },
      sdkArgv,
      "the prompt\nsecond line",
    );
    assert.deepEqual(got.args, ["exec", "--ignore-user-config", "--ignore-rules", ...sdkArgv.slice(1)]);
    assert.equal(got.env, "a value with spaces=and equals");
    assert.equal(got.stdin, "the prompt\nsecond line");
    assert.equal(got.out, "before\nevent\n");
    assert.equal(got.err, "diagnostics\n");
    // (bash may complain about an rc file of the machine's on its stderr: that is not codex's.)
    assert.doesNotMatch(got.execOutput, /event|diagnostics/, "nothing of codex's goes through the exec");
  });

  test("without flags, or for an argv that is not exec, codex gets the argv as it came", async () => {
    assert.deepEqual((await launch([], {}, ["exec", "--experimental-json"])).args, ["exec", "--experimental-json"]);
    assert.deepEqual((await launch(["--ignore-user-config"], {}, ["--version"])).args, ["--version"]);
  });
});

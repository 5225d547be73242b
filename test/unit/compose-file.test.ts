/**
 * compose/compose.yaml grants what disk limits need (docs/compose.md, "Disk limits"). The compose
 * integration test runs the sidecar's container with these grants written out as create options
 * (this machine has no docker-compose); this test keeps the file and those options from drifting apart.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const COMPOSE = readFileSync(fileURLToPath(new URL("../../../compose/compose.yaml", import.meta.url)), "utf8");
/** The file's lines without comments. */
const lines = COMPOSE.split("\n")
  .map((line) => line.replace(/(^|\s)#.*$/, "").trimEnd())
  .filter((line) => line.trim() !== "");

describe("compose/compose.yaml: disk limits out of the box", () => {
  test("CAP_SYS_ADMIN, AppArmor unconfined, the loop devices, /dev and the state dir bound rshared, as compose.test.ts runs it", () => {
    const listed = (key: string): string[] => {
      const start = lines.findIndex((line) => line.trim() === `${key}:`);
      assert.ok(start >= 0, `compose.yaml has ${key}`);
      const items: string[] = [];
      for (const line of lines.slice(start + 1)) {
        const item = /^\s+- (.*)$/.exec(line);
        if (!item) break;
        items.push((item[1] ?? "").replace(/^"|"$/g, ""));
      }
      return items;
    };
    assert.ok(listed("cap_add").includes("SYS_ADMIN"));
    assert.ok(listed("security_opt").includes("apparmor=unconfined"));
    assert.deepEqual(listed("device_cgroup_rules"), ["c 10:237 rwm", "b 7:* rwm"]);
    const volumes = listed("volumes");
    assert.ok(volumes.includes("/dev:/dev"), volumes.join("; "));
    assert.ok(volumes.includes("${ALIVE_CODEX_STATE_DIR}:${ALIVE_CODEX_STATE_DIR}:rshared"), volumes.join("; "));
  });
});

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ConfigError } from "../../src/config.js";
import { isInternal, parseInternalDestinations } from "../../src/policy/internal-destinations.js";

const SETTING = "ALIVE_CODEX_INTERNAL_DESTINATIONS";

describe("parseInternalDestinations", () => {
  test("origins, URLs with a path and host:port pairs", () => {
    const parsed = parseInternalDestinations(
      [
        "http://10.0.0.5:8080",
        "https://Alive.Internal",
        "http://alive.internal",
        "alive.internal:3000",
        "[::1]:9000",
        "http://127.0.0.1:4000/api/v1",
      ],
      SETTING,
    );
    assert.deepEqual(
      parsed.map((d) => [d.host, d.port]),
      [
        ["10.0.0.5", 8080],
        ["alive.internal", 443],
        ["alive.internal", 80],
        ["alive.internal", 3000],
        ["0000:0000:0000:0000:0000:0000:0000:0001", 9000],
        ["127.0.0.1", 4000],
      ],
    );
    assert.equal(parsed[0]?.entry, "http://10.0.0.5:8080");
  });

  const BAD: ReadonlyArray<readonly [string, string, RegExp]> = [
    ["another scheme", "ftp://files.internal", /only http and https/],
    ["a host without a port", "alive.internal", /needs a port/],
    ["a host:port with a path", "alive.internal:80/api", /needs a port and nothing after it/],
    ["a bad port", "alive.internal:99999", /origins or host:port/],
    ["an empty entry", "", /origins or host:port/],
    ["a bad host", "http://exa mple:80", /origins or host:port/],
  ];
  for (const [what, entry, expected] of BAD) {
    test(`refuses ${what}, naming the setting and the entry`, () => {
      assert.throws(
        () => parseInternalDestinations([entry], SETTING),
        (error: unknown) => {
          assert.ok(error instanceof ConfigError);
          assert.equal(error.setting, SETTING);
          assert.equal(error.value, entry);
          assert.match(error.expected, expected);
          return true;
        },
      );
    });
  }

  test("refuses user info without echoing it", () => {
    assert.throws(
      () => parseInternalDestinations(["http://admin:hunter22@alive.internal:80"], SETTING),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.doesNotMatch(error.message, /hunter22/);
        assert.match(error.expected, /without user or password/);
        return true;
      },
    );
  });
});

describe("isInternal", () => {
  const destinations = parseInternalDestinations(
    ["http://10.0.0.5:8080", "https://alive.internal", "[::1]:9000", "http://localhost:4000"],
    SETTING,
  );

  const CASES: ReadonlyArray<readonly [string, number, boolean]> = [
    ["10.0.0.5", 8080, true],
    ["10.0.0.5", 8081, false],
    ["10.0.0.6", 8080, false],
    ["::ffff:10.0.0.5", 8080, true],
    ["ALIVE.internal.", 443, true],
    ["alive.internal", 80, false],
    ["api.alive.internal", 443, false],
    ["::1", 9000, true],
    ["[0:0:0:0:0:0:0:1]", 9000, true],
    ["127.0.0.1", 9000, false],
    ["localhost", 4000, true],
    ["127.0.0.1", 4000, false],
    ["not a host", 80, false],
  ];
  for (const [host, port, expected] of CASES) {
    test(`${host}:${port} is ${expected ? "" : "not "}internal`, () =>
      assert.equal(isInternal(destinations, host, port), expected));
  }

  test("an empty list holds nothing", () => assert.equal(isInternal([], "10.0.0.5", 8080), false));
});

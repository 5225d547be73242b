import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ErrorCode, SidecarError } from "../../src/errors.js";
import {
  EGRESS_LIMITS,
  decideHost,
  describeEgress,
  normalizeHost,
  parseEgressPolicy,
  type EgressPolicy,
} from "../../src/policy/egress-policy.js";

function refusal(value: unknown): { field?: string; reason?: string; received?: string } {
  try {
    parseEgressPolicy(value, "egress");
  } catch (error) {
    assert.ok(error instanceof SidecarError);
    assert.equal(error.code, ErrorCode.invalidParams);
    return error.data ?? {};
  }
  assert.fail(`expected ${JSON.stringify(value)} to be refused`);
}

describe("parseEgressPolicy", () => {
  test('"public" and "model" are policies', () => {
    assert.equal(parseEgressPolicy("public", "egress"), "public");
    assert.equal(parseEgressPolicy("model", "egress"), "model");
  });

  test("a list is normalised: lowercase, IDNA ASCII, no trailing dot, duplicates dropped, deny defaults to []", () => {
    assert.deepEqual(
      parseEgressPolicy(
        { allow: ["Example.COM", "*.Bücher.example", "example.com.", "packages.example.org"] },
        "egress",
      ),
      {
        allow: ["example.com", "*.xn--bcher-kva.example", "packages.example.org"],
        deny: [],
      },
    );
    assert.deepEqual(parseEgressPolicy({ allow: [], deny: ["*.evil.example"] }, "egress"), {
      allow: [],
      deny: ["*.evil.example"],
    });
  });

  const BAD: ReadonlyArray<readonly [string, unknown, string, RegExp]> = [
    ["another word", "private", "egress", /"public", "model"/],
    ["null", null, "egress", /"public", "model"/],
    ["an array", ["example.com"], "egress", /"public", "model"/],
    ["a list without allow", { deny: ["a.example"] }, "egress.allow", /required/],
    ["a misspelt key", { allow: [], dney: ["a.example"] }, "egress", /unknown key "dney"/],
    ["allow not an array", { allow: "example.com" }, "egress.allow", /array/],
    ["a number in the list", { allow: [42] }, "egress.allow[0]", /string/],
    ["a scheme", { allow: ["https://example.com"] }, "egress.allow[0]", /no scheme, port, path/],
    ["a port", { allow: ["example.com:443"] }, "egress.allow[0]", /no scheme, port, path/],
    ["a path", { allow: ["example.com/x"] }, "egress.allow[0]", /no scheme, port, path/],
    ["a user", { deny: ["u@example.com"], allow: [] }, "egress.deny[0]", /no scheme, port, path/],
    ["spaces", { allow: ["exa mple.com"] }, "egress.allow[0]", /no scheme/],
    ["a bare *", { allow: ["*"] }, "egress.allow[0]", /leading "\*\."/],
    ["a wildcard inside", { allow: ["a.*.example.com"] }, "egress.allow[0]", /leading "\*\."/],
    ["a wildcard suffix", { allow: ["example.*"] }, "egress.allow[0]", /leading "\*\."/],
    ["an empty name", { allow: [""] }, "egress.allow[0]", /not a valid domain/],
    ["a bad label", { allow: ["-bad.example"] }, "egress.allow[0]", /not a valid domain/],
    ["a long label", { allow: [`${"a".repeat(64)}.example`] }, "egress.allow[0]", /not a valid domain/],
    ["an IPv4 address", { allow: ["10.0.0.1"] }, "egress.allow[0]", /not an IP address/],
    ["a numeric IPv4 spelling", { allow: ["0x7f.1"] }, "egress.allow[0]", /not an IP address/],
    ["an IPv6 address", { allow: ["[::1]"] }, "egress.allow[0]", /no scheme/],
    [
      "too many entries",
      { allow: Array.from({ length: EGRESS_LIMITS.patterns + 1 }, (_, i) => `h${i}.example`) },
      "egress.allow",
      /at most 256/,
    ],
  ];

  for (const [what, value, field, reason] of BAD) {
    test(`refuses ${what}, naming ${field}`, () => {
      const data = refusal(value);
      assert.equal(data.field, field);
      assert.match(data.reason ?? "", reason);
    });
  }

  test("the refusal carries what was received", () => {
    assert.equal(refusal({ allow: ["https://example.com"] }).received, '"https://example.com"');
  });
});

describe("decideHost", () => {
  const list: EgressPolicy = {
    allow: ["example.com", "*.github.com", "*.corp.example"],
    deny: ["secret.corp.example", "*.gist.github.com"],
  };

  const CASES: ReadonlyArray<readonly [EgressPolicy, string, ReturnType<typeof decideHost>]> = [
    ["public", "anything.example", { allowed: true }],
    ["public", "10.0.0.1", { allowed: true }],
    ["model", "api.openai.com", { allowed: false, reason: "model_only" }],
    ["model", "203.0.113.10", { allowed: false, reason: "model_only" }],
    [list, "example.com", { allowed: true }],
    [list, "EXAMPLE.com.", { allowed: true }],
    [list, "www.example.com", { allowed: false, reason: "not_allowed" }],
    [list, "github.com", { allowed: false, reason: "not_allowed" }],
    [list, "api.github.com", { allowed: true }],
    [list, "a.b.github.com", { allowed: true }],
    [list, "evilgithub.com", { allowed: false, reason: "not_allowed" }],
    [list, "github.com.evil.example", { allowed: false, reason: "not_allowed" }],
    [list, "x.gist.github.com", { allowed: false, reason: "denied" }],
    [list, "gist.github.com", { allowed: true }],
    [list, "secret.corp.example", { allowed: false, reason: "denied" }],
    [list, "open.corp.example", { allowed: true }],
    [list, "unlisted.example", { allowed: false, reason: "not_allowed" }],
    [list, "203.0.113.10", { allowed: false, reason: "not_allowed" }],
    [list, "::1", { allowed: false, reason: "not_allowed" }],
    [list, "not a host", { allowed: false, reason: "not_allowed" }],
    [{ allow: ["example.com"], deny: ["example.com"] }, "example.com", { allowed: false, reason: "denied" }],
    [{ allow: [], deny: [] }, "example.com", { allowed: false, reason: "not_allowed" }],
  ];

  for (const [policy, host, expected] of CASES) {
    test(`${JSON.stringify(describeEgress(policy))}: ${host} → ${expected.allowed ? "allowed" : expected.reason}`, () => {
      assert.deepEqual(decideHost(policy, host), expected);
    });
  }

  test("an IDN host matches its ASCII pattern", () => {
    assert.deepEqual(decideHost(parseEgressPolicy({ allow: ["bücher.example"] }, "egress"), "BÜCHER.example"), {
      allowed: true,
    });
  });
});

describe("normalizeHost", () => {
  test("names, IPv4 spellings and bracketed IPv6", () => {
    assert.equal(normalizeHost("Example.COM."), "example.com");
    assert.equal(normalizeHost("0x7f.1"), "127.0.0.1");
    assert.equal(normalizeHost("2130706433"), "127.0.0.1");
    assert.equal(normalizeHost("[::1]"), "::1");
    assert.equal(normalizeHost("FE80::1"), "fe80::1");
    assert.equal(normalizeHost("a b"), undefined);
    assert.equal(normalizeHost(""), undefined);
  });
});

describe("describeEgress", () => {
  test("is plain JSON and a copy", () => {
    const policy: EgressPolicy = { allow: ["example.com"], deny: [] };
    const description = describeEgress(policy);
    assert.deepEqual(description, { mode: "list", allow: ["example.com"], deny: [] });
    assert.deepEqual(describeEgress("public"), { mode: "public" });
    assert.deepEqual(describeEgress("model"), { mode: "model" });
    policy.allow.push("other.example");
    assert.deepEqual(JSON.parse(JSON.stringify(description)), { mode: "list", allow: ["example.com"], deny: [] });
  });
});

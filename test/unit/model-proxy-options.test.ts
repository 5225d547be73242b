/** The model proxy's options: checked once, with errors that name the option and what was expected. */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  DEFAULT_CONNECT_TIMEOUT_MS,
  resolveModelProxyOptions,
  type ModelProxyOptions,
} from "../../src/model-proxy/options.js";

const base: ModelProxyOptions<string> = {
  upstreamBaseUrl: "https://api.openai.com/v1/",
  apiKey: "sk-secret-value",
  authorize: () => null,
};

describe("resolveModelProxyOptions", () => {
  test("fills defaults and splits the upstream's path", () => {
    const resolved = resolveModelProxyOptions(base);
    assert.equal(resolved.upstream.origin, "https://api.openai.com");
    assert.equal(resolved.upstreamPath, "/v1");
    assert.equal(resolved.basePath, "/v1");
    assert.equal(resolved.connectTimeoutMs, DEFAULT_CONNECT_TIMEOUT_MS);
    assert.equal(
      resolveModelProxyOptions({ ...base, upstreamBaseUrl: "http://127.0.0.1:9/", basePath: "/" }).upstreamPath,
      "",
    );
    assert.equal(resolveModelProxyOptions({ ...base, basePath: "/" }).basePath, "");
    assert.equal(resolveModelProxyOptions({ ...base, apiKey: null }).apiKey, null);
    assert.deepEqual(resolved.routes, [
      { method: "POST", path: "/responses" },
      { method: "POST", path: "/responses/compact" },
    ]);
    assert.equal(resolved.concurrencyPerTurn, 2);
    assert.equal(resolved.ratePerMinute, 120);
    assert.equal(resolved.organization, null);
  });

  test("rejects bad values, naming the option, the value and what was expected", () => {
    const cases: Array<[Partial<ModelProxyOptions<string>>, RegExp]> = [
      [
        { upstreamBaseUrl: "api.openai.com" },
        /upstreamBaseUrl: got "api.openai.com", expected an http:\/\/ or https:\/\/ URL/,
      ],
      [{ upstreamBaseUrl: "ftp://example.com/v1" }, /upstreamBaseUrl: .*expected an http/],
      [{ upstreamBaseUrl: "https://user:pw@example.com/v1" }, /upstreamBaseUrl: .*without user info/],
      [{ upstreamBaseUrl: "https://example.com/v1?api-version=1" }, /upstreamBaseUrl: .*without query/],
      [{ basePath: "v1" }, /basePath: got "v1", expected an absolute path/],
      [{ basePath: "/v1/../x" }, /basePath/],
      [{ connectTimeoutMs: 0 }, /connectTimeoutMs: got 0, expected a whole number of ms from 1/],
      [{ connectTimeoutMs: 1.5 }, /connectTimeoutMs/],
      [{ apiKey: "" }, /apiKey: expected null or a non-empty single-line string/],
      [
        { authorize: undefined as unknown as ModelProxyOptions<string>["authorize"] },
        /authorize: got undefined, expected a function/,
      ],
      [{ extraRoutes: ["GET /files/../x"] }, /extraRoutes\[0\]: expected a path/],
      [{ extraRoutes: ["FETCH /models"] }, /extraRoutes\[0\]: expected "METHOD \/path"/],
      [{ hostedTools: ["mcp"] }, /hostedTools: got "mcp", expected one of web_search, code_interpreter, file_search/],
      [{ organization: "org x" }, /organization: got "org x"/],
      [{ concurrencyPerTurn: 0 }, /concurrencyPerTurn: got 0, expected a whole number from 1/],
      [{ ratePerMinute: -1 }, /ratePerMinute/],
      [{ maxBodyBytes: 0 }, /maxBodyBytes/],
    ];
    for (const [override, message] of cases)
      assert.throws(() => resolveModelProxyOptions({ ...base, ...override }), message, JSON.stringify(override));
  });

  test("never echoes the key or URL credentials in an error", () => {
    for (const override of [
      { apiKey: "sk-secret-value\nx" },
      { upstreamBaseUrl: "https://user:sk-secret-value@example.com/v1" },
    ]) {
      assert.throws(
        () => resolveModelProxyOptions({ ...base, ...override }),
        (error: Error) => !error.message.includes("sk-secret-value"),
      );
    }
  });
});

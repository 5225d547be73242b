/**
 * What each side of a brokered connection trusts. A container trusts the roots Node ships plus the
 * broker's CA (one PEM file, mounted into it). The broker, as the client of the real upstream,
 * trusts the same roots plus the operator's own bundle (ALIVE_CODEX_UPSTREAM_CA: a company proxy's
 * or an internal service's CA), never the broker's CA: its own leaves must not satisfy it.
 */
import { X509Certificate } from "node:crypto";
import tls from "node:tls";
import { ConfigError } from "../../shared/setting-parsers.js";

export const UPSTREAM_CA_SETTING = "ALIVE_CODEX_UPSTREAM_CA";

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;

/** The container's trust bundle (workspace/trust-bundle.ts writes it): Node's root certificates, then the broker's CA. */
export function trustBundleText(caCertPem: string): string {
  return `${[...tls.rootCertificates, caCertPem.trim()].join("\n")}\n`;
}

/** The certificates an upstream's chain may end in, and the TLS context made from them once (not per connection). */
export interface UpstreamTrust {
  certificates: readonly string[];
  context: tls.SecureContext;
}

/**
 * Node's root certificates plus those of the operator's PEM bundle, if given. A bundle that holds
 * no certificate, or one that does not parse, is refused with an error naming `setting`.
 */
export function createUpstreamTrust(operatorPem?: string, setting = UPSTREAM_CA_SETTING): UpstreamTrust {
  const extra = operatorPem === undefined ? [] : parseOperatorBundle(operatorPem, setting);
  const certificates = [...tls.rootCertificates, ...extra];
  return { certificates, context: tls.createSecureContext({ ca: certificates }) };
}

function parseOperatorBundle(text: string, setting: string): string[] {
  const blocks = text.match(PEM_CERTIFICATE) ?? [];
  // What the operator gave is shown by its start only: a bundle may be long.
  const shown = text.length > 60 ? `${text.slice(0, 60)}…` : text;
  if (blocks.length === 0)
    throw new ConfigError(setting, shown, 'one or more PEM certificates ("-----BEGIN CERTIFICATE-----" blocks)');
  blocks.forEach((block, index) => {
    try {
      new X509Certificate(block);
    } catch (error) {
      throw new ConfigError(
        setting,
        shown,
        `PEM certificates that parse (number ${index + 1} of ${blocks.length} does not: ${(error as Error).message})`,
      );
    }
  });
  return blocks;
}

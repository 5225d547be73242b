/**
 * The X.509 certificates of the credential broker, built with pkijs (the ASN.1 structure only) and
 * signed with Node's own crypto: the broker's CA (self-signed) and the short-lived leaves it issues
 * for the hosts whose TLS it terminates. ECDSA P-256 throughout: a key costs well under a
 * millisecond, where RSA would cost tens. The extensions are the ones strict verifiers ask for
 * (Python 3.13 sets VERIFY_X509_STRICT): key identifiers both ways, critical basic constraints and
 * key usage, and a subject alternative name on every leaf, as an IP address for an IP literal.
 */
import { createHash, randomBytes, sign, type KeyObject } from "node:crypto";
import net from "node:net";
import * as asn1js from "asn1js";
import * as pkijs from "pkijs";

const ECDSA_WITH_SHA256 = "1.2.840.10045.4.3.2";
const COMMON_NAME = "2.5.4.3";
const SERVER_AUTH = "1.3.6.1.5.5.7.3.1";
const EXTENSION = {
  subjectKeyIdentifier: "2.5.29.14",
  keyUsage: "2.5.29.15",
  subjectAltName: "2.5.29.17",
  basicConstraints: "2.5.29.19",
  authorityKeyIdentifier: "2.5.29.35",
  extKeyUsage: "2.5.29.37",
} as const;
/** Longer common names are not allowed (RFC 5280's ub-common-name): such a leaf names its host in its SAN only. */
const MAX_COMMON_NAME = 64;
/** UTCTime stops at 2049; a later date must be a GeneralizedTime (RFC 5280 4.1.2.5). */
const LAST_UTC_TIME = Date.UTC(2050, 0, 1);

export interface CertificateSpec {
  /** The subject's common name; none, or one too long for a common name: the subject is empty. */
  commonName?: string;
  publicKey: KeyObject;
  notBefore: Date;
  notAfter: Date;
  /** Absent: self-signed by `signingKey` (the CA). */
  issuer?: { certificate: pkijs.Certificate; keyId: Uint8Array };
  signingKey: KeyObject;
  /** A CA (may sign leaves, not other CAs) or a TLS server leaf for `host`. */
  role: { ca: true } | { ca: false; host: string };
}

/** Builds and signs a certificate; returns it as PEM. */
export function buildCertificate(spec: CertificateSpec): string {
  const keyInfo = pkijs.PublicKeyInfo.fromBER(spec.publicKey.export({ type: "spki", format: "der" }));
  const keyId = keyIdOfInfo(keyInfo);
  const subject = nameOf(spec.commonName);
  const certificate = new pkijs.Certificate();
  certificate.version = 2;
  certificate.serialNumber = new asn1js.Integer({ valueHex: serialNumber() });
  certificate.signature = new pkijs.AlgorithmIdentifier({ algorithmId: ECDSA_WITH_SHA256 });
  certificate.signatureAlgorithm = new pkijs.AlgorithmIdentifier({ algorithmId: ECDSA_WITH_SHA256 });
  certificate.issuer = spec.issuer === undefined ? subject : spec.issuer.certificate.subject;
  certificate.subject = subject;
  certificate.notBefore = timeOf(spec.notBefore);
  certificate.notAfter = timeOf(spec.notAfter);
  certificate.subjectPublicKeyInfo = keyInfo;
  const authorityKeyId = spec.issuer?.keyId ?? keyId;
  certificate.extensions = [
    extension(EXTENSION.subjectKeyIdentifier, false, new asn1js.OctetString({ valueHex: keyId })),
    extension(
      EXTENSION.authorityKeyIdentifier,
      false,
      new pkijs.AuthorityKeyIdentifier({ keyIdentifier: new asn1js.OctetString({ valueHex: authorityKeyId }) }),
    ),
    ...(spec.role.ca ? caExtensions() : leafExtensions(spec.role.host, subject.typesAndValues.length === 0)),
  ];
  const tbs = new Uint8Array(certificate.encodeTBS().toBER());
  certificate.tbsView = tbs;
  // Node signs ECDSA as DER (r, s), which is what an X.509 signature value holds.
  certificate.signatureValue = new asn1js.BitString({ valueHex: sign("sha256", tbs, spec.signingKey) });
  return toPem(certificate.toSchema().toBER());
}

/** Parses a PEM certificate (the first in the text) into the structure a leaf's issuer is taken from. */
export function parseCertificate(pem: string): pkijs.Certificate {
  const base64 = /-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/.exec(pem)?.[1];
  if (base64 === undefined) throw new Error("no PEM certificate in the text");
  return pkijs.Certificate.fromBER(Buffer.from(base64.replace(/\s+/g, ""), "base64"));
}

/** The key identifier of a public key: SHA-1 of its bits, RFC 5280's method (1). */
export function keyIdOf(publicKey: KeyObject): Uint8Array {
  return keyIdOfInfo(pkijs.PublicKeyInfo.fromBER(publicKey.export({ type: "spki", format: "der" })));
}

function keyIdOfInfo(keyInfo: pkijs.PublicKeyInfo): Uint8Array {
  return createHash("sha1").update(keyInfo.subjectPublicKey.valueBlock.valueHexView).digest();
}

function caExtensions(): pkijs.Extension[] {
  return [
    extension(EXTENSION.basicConstraints, true, new pkijs.BasicConstraints({ cA: true, pathLenConstraint: 0 })),
    // keyCertSign (bit 5) and cRLSign (bit 6): 0b0000_0110, the last bit unused.
    extension(EXTENSION.keyUsage, true, new asn1js.BitString({ valueHex: new Uint8Array([0x06]), unusedBits: 1 })),
  ];
}

function leafExtensions(host: string, subjectEmpty: boolean): pkijs.Extension[] {
  const bytes = ipAddressBytes(host);
  const name =
    bytes === null
      ? new pkijs.GeneralName({ type: 2, value: host })
      : new pkijs.GeneralName({ type: 7, value: new asn1js.OctetString({ valueHex: bytes }) });
  return [
    extension(EXTENSION.basicConstraints, true, new pkijs.BasicConstraints({ cA: false })),
    // digitalSignature (bit 0): 0b1000_0000, seven bits unused.
    extension(EXTENSION.keyUsage, true, new asn1js.BitString({ valueHex: new Uint8Array([0x80]), unusedBits: 7 })),
    extension(EXTENSION.extKeyUsage, false, new pkijs.ExtKeyUsage({ keyPurposes: [SERVER_AUTH] })),
    // With an empty subject the SAN is the only name, and RFC 5280 makes it critical.
    extension(EXTENSION.subjectAltName, subjectEmpty, new pkijs.AltName({ altNames: [name] })),
  ];
}

function extension(extnID: string, critical: boolean, value: { toSchema(): asn1js.BaseBlock } | asn1js.BaseBlock) {
  const block = value instanceof asn1js.BaseBlock ? value : value.toSchema();
  return new pkijs.Extension({ extnID, critical, extnValue: block.toBER() });
}

function nameOf(commonName: string | undefined): pkijs.RelativeDistinguishedNames {
  const name = new pkijs.RelativeDistinguishedNames();
  if (commonName !== undefined && commonName.length <= MAX_COMMON_NAME)
    name.typesAndValues.push(
      new pkijs.AttributeTypeAndValue({ type: COMMON_NAME, value: new asn1js.Utf8String({ value: commonName }) }),
    );
  return name;
}

function timeOf(date: Date): pkijs.Time {
  const type = date.getTime() < LAST_UTC_TIME ? pkijs.TimeType.UTCTime : pkijs.TimeType.GeneralizedTime;
  // X.509 times have whole seconds.
  return new pkijs.Time({ type, value: new Date(Math.floor(date.getTime() / 1000) * 1000) });
}

/** 16 random bytes, positive (top bit clear) and so at most 20 octets however it is encoded. */
function serialNumber(): Uint8Array {
  const bytes = randomBytes(16);
  bytes[0] = ((bytes[0] ?? 0) & 0x7f) | 0x01;
  return bytes;
}

function toPem(der: ArrayBuffer): string {
  const lines =
    Buffer.from(der)
      .toString("base64")
      .match(/.{1,64}/g) ?? [];
  return `-----BEGIN CERTIFICATE-----\n${lines.join("\n")}\n-----END CERTIFICATE-----\n`;
}

/** The 4 or 16 bytes of an IP literal; null for a host name. */
export function ipAddressBytes(host: string): Uint8Array | null {
  const family = net.isIP(host);
  if (family === 4) return Uint8Array.from(host.split(".").map(Number));
  if (family !== 6) return null;
  // An IPv6 address may end in dotted IPv4 (::ffff:192.0.2.1): made into two groups first.
  const dotted = /^(.*:)(\d+\.\d+\.\d+\.\d+)$/.exec(host);
  const text = dotted === null ? host : `${dotted[1]}${dottedToGroups(dotted[2] ?? "")}`;
  const [head = "", tail] = text.split("::");
  const groupsOf = (part: string): number[] => (part === "" ? [] : part.split(":").map((group) => parseInt(group, 16)));
  const front = groupsOf(head);
  const back = tail === undefined ? [] : groupsOf(tail);
  const groups = [...front, ...new Array<number>(8 - front.length - back.length).fill(0), ...back];
  const bytes = new Uint8Array(16);
  groups.forEach((group, index) => {
    bytes[index * 2] = group >> 8;
    bytes[index * 2 + 1] = group & 0xff;
  });
  return bytes;
}

function dottedToGroups(dotted: string): string {
  const [a = 0, b = 0, c = 0, d = 0] = dotted.split(".").map(Number);
  return `${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
}

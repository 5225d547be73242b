/**
 * A DNS server on a UDP port of 127.0.0.1 that the test holds: it answers the names it is given
 * (A and AAAA records with a TTL), NXDOMAIN for names it does not know, and nothing at all for
 * names `silent` says (a resolver that never answers). Every query it received is recorded.
 * Nothing here sends anything but to loopback.
 */
import dgram from "node:dgram";
import { once } from "node:events";
import { canonicalAddress } from "../../src/policy/addresses.js";

export interface DnsRecords {
  a?: string[];
  aaaa?: string[];
  /** Seconds. Default 60. */
  ttl?: number;
}

export interface DnsResponderOptions {
  names?: Record<string, DnsRecords>;
  /** Names whose queries get no answer. Default: names ending in .silent.test. */
  silent?: (name: string) => boolean;
}

export interface DnsResponder {
  /** "127.0.0.1:<port>", for Resolver.setServers. */
  server: string;
  /** Queries received: name (lowercase) and type ("A", "AAAA" or the number). */
  queries: Array<{ name: string; type: string }>;
  /** The names answered can change while it runs. */
  names: Record<string, DnsRecords>;
  close(): Promise<void>;
}

const TYPES: Record<number, string> = { 1: "A", 28: "AAAA" };

export async function startDnsResponder(options: DnsResponderOptions = {}): Promise<DnsResponder> {
  const socket = dgram.createSocket("udp4");
  const silent = options.silent ?? ((name: string) => name.endsWith(".silent.test"));
  const state: DnsResponder = {
    server: "",
    queries: [],
    names: { ...options.names },
    close: () => new Promise((resolve) => socket.close(() => resolve())),
  };
  socket.on("message", (query, peer) => {
    const question = readQuestion(query);
    if (question === null) return;
    const type = TYPES[question.type] ?? String(question.type);
    state.queries.push({ name: question.name, type });
    if (silent(question.name)) return;
    const records = state.names[question.name];
    const addresses =
      records === undefined ? [] : type === "A" ? (records.a ?? []) : type === "AAAA" ? (records.aaaa ?? []) : [];
    socket.send(
      buildAnswer(query, question.end, records === undefined ? 3 : 0, question.type, addresses, records?.ttl ?? 60),
      peer.port,
      peer.address,
    );
  });
  socket.bind(0, "127.0.0.1");
  await once(socket, "listening");
  state.server = `127.0.0.1:${socket.address().port}`;
  return state;
}

function readQuestion(query: Buffer): { name: string; type: number; end: number } | null {
  if (query.length < 12 || query.readUInt16BE(4) !== 1) return null;
  const labels: string[] = [];
  let at = 12;
  while (at < query.length) {
    const length = query[at]!;
    if (length === 0) break;
    labels.push(query.subarray(at + 1, at + 1 + length).toString("ascii"));
    at += 1 + length;
  }
  if (at + 5 > query.length) return null;
  return { name: labels.join(".").toLowerCase(), type: query.readUInt16BE(at + 1), end: at + 5 };
}

/** The query's id and question, then one record per address (`rcode` 3: NXDOMAIN). */
function buildAnswer(
  query: Buffer,
  questionEnd: number,
  rcode: number,
  type: number,
  addresses: string[],
  ttl: number,
): Buffer {
  const header = Buffer.alloc(12);
  query.copy(header, 0, 0, 2);
  // QR, the query's RD, RA, and the rcode.
  header.writeUInt16BE(0x8080 | (query.readUInt16BE(2) & 0x0100) | rcode, 2);
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(addresses.length, 6);
  const records = addresses.map((address) => {
    const data =
      type === 1
        ? Buffer.from(address.split(".").map(Number))
        : Buffer.from(canonicalAddress(address)!.replace(/:/g, ""), "hex");
    const record = Buffer.alloc(12);
    record.writeUInt16BE(0xc00c, 0); // the name: a pointer to the question's
    record.writeUInt16BE(type, 2);
    record.writeUInt16BE(1, 4);
    record.writeUInt32BE(ttl, 6);
    record.writeUInt16BE(data.length, 10);
    return Buffer.concat([record, data]);
  });
  return Buffer.concat([header, query.subarray(12, questionEnd), ...records]);
}

/**
 * The turn.event notification as it goes on the wire, one newline-terminated line:
 *   {"jsonrpc":"2.0","method":"turn.event","params":{"turnId":T,"seq":N,"event":E}}
 * Made once per event (from the event's JSON): the connection sends it and the turn journal keeps it
 * as is, so a replay (turn.attach) sends the journal's lines verbatim. It is exactly what
 * serializeMessage(notificationMessage("turn.event", { turnId, seq, event })) makes (a unit test holds
 * them equal).
 */
export const TURN_EVENT = "turn.event";

export const TURN_EVENT_LINE_PREFIX = `{"jsonrpc":"2.0","method":"${TURN_EVENT}","params":{"turnId":`;

export function turnEventLine(turnId: string, seq: number, eventJson: string): string {
  return `${TURN_EVENT_LINE_PREFIX}${JSON.stringify(turnId)},"seq":${seq},"event":${eventJson}}}\n`;
}

/** The seq of a turn.event line made by turnEventLine (with or without its newline); null for any other line. */
export function turnEventLineSeq(line: string): number | null {
  if (!line.startsWith(TURN_EVENT_LINE_PREFIX)) return null;
  const at = line.indexOf(',"seq":', TURN_EVENT_LINE_PREFIX.length);
  if (at < 0) return null;
  const from = at + ',"seq":'.length;
  const comma = line.indexOf(",", from);
  const seq = Number(line.slice(from, comma));
  return comma > from && Number.isInteger(seq) && line.startsWith(',"event":', comma) ? seq : null;
}

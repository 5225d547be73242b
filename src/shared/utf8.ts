/** Bounding text by its UTF-8 size without encoding more than the bound. */

/** `text` cut to at most `maxBytes` bytes of UTF-8, at a character boundary; `text` itself when it fits. */
export function truncateUtf8(text: string, maxBytes: number): string {
  // A UTF-16 unit is at most 3 bytes of UTF-8 (a surrogate pair is 2 units and 4 bytes).
  if (text.length * 3 <= maxBytes || Buffer.byteLength(text) <= maxBytes) return text;
  // encodeInto writes whole characters only, and says how many UTF-16 units they were.
  const { read } = new TextEncoder().encodeInto(text, new Uint8Array(Math.max(0, maxBytes)));
  return text.slice(0, read);
}

/** Room left for the note boundText adds (its longest is under 50 bytes). */
const NOTE_BYTES = 64;

/** `text` within `maxBytes` bytes of UTF-8; a cut one ends with a note of how many bytes were left out. */
export function boundText(text: string, maxBytes: number): string {
  if (text.length * 3 <= maxBytes || Buffer.byteLength(text) <= maxBytes) return text;
  const kept = truncateUtf8(text, Math.max(0, maxBytes - NOTE_BYTES));
  return `${kept} … (${Buffer.byteLength(text) - Buffer.byteLength(kept)} more bytes not kept)`;
}

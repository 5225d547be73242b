/** Reading a journal file from its end: a turn's end line is its last. */
import { promises as fsp } from "node:fs";

/** The last line of a file (without its newline) and the file's size; reads backwards in chunks. */
export async function readLastLine(file: string): Promise<{ line: string | null; size: number; complete: boolean }> {
  const handle = await fsp.open(file, "r");
  try {
    const { size } = await handle.stat();
    if (size === 0) return { line: null, size, complete: true };
    const chunk = 64 * 1024;
    let start = size;
    let tail = Buffer.alloc(0);
    for (;;) {
      const from = Math.max(0, start - chunk);
      const buffer = Buffer.alloc(start - from);
      await handle.read(buffer, 0, buffer.length, from);
      tail = Buffer.concat([buffer, tail]);
      start = from;
      // The newline ending the last line does not count; the one before it starts the line.
      const complete = tail[tail.length - 1] === 0x0a;
      const body = complete ? tail.subarray(0, tail.length - 1) : tail;
      const newline = body.lastIndexOf(0x0a);
      if (newline >= 0) return { line: body.subarray(newline + 1).toString("utf8"), size, complete };
      if (start === 0) return { line: body.toString("utf8"), size, complete };
    }
  } finally {
    await handle.close();
  }
}

/**
 * Files the broker writes whole: a reader (a container, a restarted sidecar) sees the old text or
 * the new, never half.
 */
import { randomBytes } from "node:crypto";
import { constants, promises as fsp } from "node:fs";

/** Writes `text` to `file` through a temporary file beside it and a rename: no reader sees half of it. */
export async function writeAtomically(file: string, text: string, mode: number): Promise<void> {
  const temp = `${file}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
  const handle = await fsp.open(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, mode);
  try {
    try {
      await handle.writeFile(text);
      // The umask may have narrowed the mode given to open.
      await handle.chmod(mode);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fsp.rename(temp, file);
  } catch (error) {
    await fsp.rm(temp, { force: true });
    throw error;
  }
}

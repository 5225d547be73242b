/** Exit codes of alive-codex and the error that means "you called it wrong". */
export const ExitCode = {
  ok: 0,
  /** A turn failed or was cancelled, or the sidecar answered with an error. */
  failed: 1,
  /** Bad usage or a bad setting. */
  usage: 2,
  /** The sidecar could not be reached. */
  unreachable: 3,
  /** Interrupted with Ctrl-C (128 + SIGINT). */
  interrupted: 130,
} as const;

export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

export class UsageError extends Error {
  constructor(
    message: string,
    /** The command whose --help to point at, if any. */
    readonly command?: string,
  ) {
    super(message);
    this.name = "UsageError";
  }
}

/**
 * One uid serves one user at a time. Workspaces of one Alive user may share a uid; two users may
 * not. The kernel counts some things per uid whatever the container: inotify instances and watches,
 * pipe buffer pages (pipe-user-pages-soft), POSIX message queue bytes, processes under RLIMIT_NPROC.
 * Two users on one uid share those, so one can starve the other. And everything one user's
 * workspace owns on the host (its workspace dir, its HOME) would be the other's to read and change
 * from any process of that uid outside its container.
 *
 * A uid is held by every workspace the sidecar knows (running, paused or stopped; adopted after a
 * restart too, from the params label) and by an ensure in flight, from its call on: two concurrent
 * ensures cannot both take a free uid for different users. Removing the workspace frees it.
 */
import { ErrorCode, SidecarError } from "../errors.js";

/** A workspace, known or being ensured, and the uid it runs as for its user. */
export interface UidHold {
  workspaceId: string;
  userId: string;
  uid: number;
}

/** A workspace other than `wanted`'s own that holds `wanted.uid` for another user, if any. */
export function findUidConflict(wanted: UidHold, holds: Iterable<UidHold>): UidHold | undefined {
  for (const hold of holds) {
    if (hold.uid === wanted.uid && hold.workspaceId !== wanted.workspaceId && hold.userId !== wanted.userId)
      return hold;
  }
  return undefined;
}

/**
 * -32602 naming `uid` when another user's workspace holds the uid. The workspace itself does not
 * count: an ensure that changes its own user or uid replaces its container.
 */
export function checkUidHolder(wanted: UidHold, holds: Iterable<UidHold>): void {
  const conflict = findUidConflict(wanted, holds);
  if (conflict === undefined) return;
  const reason = `uid ${wanted.uid} serves another user's workspace: a uid serves one userId at a time; give each user their own uid, or remove that workspace first`;
  throw new SidecarError(ErrorCode.invalidParams, `invalid uid: ${reason}`, {
    data: { field: "uid", reason, received: String(wanted.uid), heldBy: conflict.workspaceId },
  });
}

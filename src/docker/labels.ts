/** Labels on every container and network the sidecar makes: `docker ps --filter label=...` finds them. */
export const LABEL_PREFIX = "dev.alive.codex";

export const Labels = {
  managed: `${LABEL_PREFIX}.managed`,
  /** The state dir of the sidecar that made it: a sidecar adopts only containers whose HOMEs it holds. */
  stateDir: `${LABEL_PREFIX}.state-dir`,
  workspaceId: `${LABEL_PREFIX}.workspace-id`,
  userId: `${LABEL_PREFIX}.user-id`,
  specHash: `${LABEL_PREFIX}.spec-hash`,
  uid: `${LABEL_PREFIX}.uid`,
  gid: `${LABEL_PREFIX}.gid`,
  workspacePath: `${LABEL_PREFIX}.workspace-path`,
  /** JSON of the WorkspaceParams the container was made from, so a restarted sidecar can adopt it. */
  params: `${LABEL_PREFIX}.params`,
  createdAt: `${LABEL_PREFIX}.created-at`,
  /** The OCI runtime the container runs under (runc, runsc, ...). */
  runtime: `${LABEL_PREFIX}.runtime`,
  /** Set by tests (and anyone embedding the sidecar) to reap their own containers. */
  runId: `${LABEL_PREFIX}.run-id`,
} as const;

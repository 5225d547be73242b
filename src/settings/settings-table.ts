/**
 * The settings table: every area's settings, in the order `alive-codex serve --help` and the README
 * list them (the order operators have read them in, so the areas interleave).
 */
import { ENGINE_SETTINGS, METRICS_SETTINGS, SOCKET_SETTINGS } from "./server-settings.js";
import { CONTAINER_SETTINGS, WORKSPACE_DISK_SETTINGS, WORKSPACE_ID_SETTINGS } from "./workspace-settings.js";
import { IMAGE_SETTINGS } from "./image-settings.js";
import { EGRESS_SETTINGS } from "./egress-proxy-settings.js";
import { JOURNAL_SETTINGS, TURN_SETTINGS } from "./turn-settings.js";
import { CODEX_SETTINGS } from "./codex-settings.js";
import { MODEL_PROXY_SETTINGS } from "./model-proxy-settings.js";
import type { AnySetting } from "./setting-spec.js";

export const SETTINGS: readonly AnySetting[] = [
  ...SOCKET_SETTINGS,
  ...WORKSPACE_ID_SETTINGS,
  ...IMAGE_SETTINGS,
  ...EGRESS_SETTINGS,
  ...CONTAINER_SETTINGS,
  ...TURN_SETTINGS,
  ...METRICS_SETTINGS,
  ...CODEX_SETTINGS,
  ...ENGINE_SETTINGS,
  ...WORKSPACE_DISK_SETTINGS,
  ...JOURNAL_SETTINGS,
  ...MODEL_PROXY_SETTINGS,
];

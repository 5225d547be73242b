/** What operators read of the settings table: `alive-codex serve --help` and the README's configuration table. */
import { SETTINGS } from "./settings-table.js";

/** Renders `alive-codex serve --help`: every setting with its flag, variable and default. */
export function renderSettingsHelp(): string {
  const lines = SETTINGS.map(
    (s) => `  ${s.flag} <value>\n      ${s.description}\n      env ${s.env}; default: ${s.defaultText}`,
  );
  return lines.join("\n");
}

export const CONFIG_TABLE_BEGIN =
  "<!-- config-table:begin (generated from src/config.ts SETTINGS: npm run docs:config) -->";
export const CONFIG_TABLE_END = "<!-- config-table:end -->";

/** The README's configuration table, rendered from SETTINGS. */
export function renderSettingsMarkdown(): string {
  const cell = (text: string): string => text.replace(/\|/g, "\\|");
  const rows = SETTINGS.map(
    (s) =>
      `| \`${s.env}\` | \`${s.flag}\` | ${cell(s.defaultText)} | ${cell(s.description)}${s.secret ? " Secret: never logged." : ""} |`,
  );
  return [
    CONFIG_TABLE_BEGIN,
    "| variable | flag | default | meaning |",
    "|---|---|---|---|",
    ...rows,
    CONFIG_TABLE_END,
  ].join("\n");
}

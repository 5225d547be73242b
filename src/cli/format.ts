/** Plain-text rendering for the CLI: aligned tables and docker-style ages. */

/** Columns separated by three spaces, padded to the widest cell (like `docker ps`). */
export function formatTable(header: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const all = [header, ...rows];
  const widths = header.map((_, column) => Math.max(...all.map((row) => (row[column] ?? "").length)));
  return all
    .map((row) =>
      row
        .map((cell, column) => (column === row.length - 1 ? cell : cell.padEnd(widths[column] ?? 0)))
        .join("   ")
        .trimEnd(),
    )
    .join("\n");
}

/** "key   value" lines, keys padded to the widest. */
export function formatPairs(pairs: ReadonlyArray<readonly [string, string]>): string {
  const width = Math.max(0, ...pairs.map(([key]) => key.length));
  return pairs.map(([key, value]) => `${key.padEnd(width)}   ${value}`).join("\n");
}

/** "3 minutes ago", "About an hour ago", ... */
export function formatAge(iso: string, now: number): string {
  const then = Date.parse(iso);
  if (Number.isNaN(then)) return iso || "-";
  const seconds = Math.max(0, Math.round((now - then) / 1000));
  if (seconds < 1) return "Less than a second ago";
  if (seconds < 60) return `${seconds} second${seconds === 1 ? "" : "s"} ago`;
  const minutes = Math.round(seconds / 60);
  if (minutes === 1) return "About a minute ago";
  if (minutes < 60) return `${minutes} minutes ago`;
  const hours = Math.round(minutes / 60);
  if (hours === 1) return "About an hour ago";
  if (hours < 48) return `${hours} hours ago`;
  const days = Math.round(hours / 24);
  if (days < 14) return `${days} days ago`;
  const weeks = Math.round(days / 7);
  if (weeks < 9) return `${weeks} weeks ago`;
  if (days < 365) return `${Math.round(days / 30)} months ago`;
  const years = Math.round(days / 365);
  return years === 1 ? "About a year ago" : `${years} years ago`;
}

export function indent(text: string, prefix = "    "): string {
  return text
    .replace(/\n+$/, "")
    .split("\n")
    .map((line) => `${prefix}${line}`)
    .join("\n");
}

#!/usr/bin/env node
// Rewrites the configuration table in README.md from src/config.ts (run after npm run build).
import { readFileSync, writeFileSync } from "node:fs";
import { CONFIG_TABLE_BEGIN, CONFIG_TABLE_END, renderSettingsMarkdown } from "../dist/src/config.js";

const readme = readFileSync("README.md", "utf8");
const start = readme.indexOf(CONFIG_TABLE_BEGIN);
const end = readme.indexOf(CONFIG_TABLE_END);
if (start < 0 || end < 0) throw new Error("README.md has no config-table markers");
writeFileSync(
  "README.md",
  readme.slice(0, start) + renderSettingsMarkdown() + readme.slice(end + CONFIG_TABLE_END.length),
);
console.log("README.md configuration table updated");

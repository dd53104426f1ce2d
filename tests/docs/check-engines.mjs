// Every package of the lock must accept Node 18.20 (Debian 12's nodejs): fails otherwise.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
const require = createRequire(import.meta.url);
const semver = require("semver");
const want = process.argv[2] || "18.20.0";
const lock = JSON.parse(readFileSync(new URL("./package-lock.json", import.meta.url)));
const bad = [];
for (const [path, p] of Object.entries(lock.packages || {})) {
  const range = p.engines && (Array.isArray(p.engines) ? null : p.engines.node);
  if (path && range && !semver.satisfies(want, range)) bad.push(`${path} wants node ${range}`);
}
if (bad.length) {
  console.error(`packages of tests/docs that refuse Node ${want}:\n  ` + bad.join("\n  "));
  process.exit(1);
}
console.log(`tests/docs: every package accepts Node ${want}`);

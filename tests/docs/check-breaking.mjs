// Breaking-change guard: compares api/openapi.yaml with the released contract
// (api/released/v1.yaml) using api-smart-diff (pinned in package.json), which classifies every
// change as breaking, non-breaking, deprecated, annotation or unclassified. Fails on a breaking
// change unless BOTH say it is one:
//   - info.version's major is above the released one (2.0.0 after 1.x), and
//   - CHANGELOG.md has a section for that version ("## [2.0.0] ...") that says BREAKING.
// Prints every breaking and unclassified change either way.
//
//   node check-breaking.mjs RELEASED CURRENT CHANGELOG
import { readFileSync, existsSync } from "node:fs";
import { createRequire } from "node:module";
import { apiCompare } from "api-smart-diff";

const require = createRequire(import.meta.url);
const yaml = require("js-yaml");
const [releasedPath, currentPath, changelogPath] = process.argv.slice(2);
if (!releasedPath || !currentPath || !changelogPath) {
  console.error("usage: node check-breaking.mjs RELEASED CURRENT CHANGELOG");
  process.exit(2);
}
const released = yaml.load(readFileSync(releasedPath, "utf8"));
const current = yaml.load(readFileSync(currentPath, "utf8"));

// The library reports rule errors on some allOf nodes through console.error and goes on
// (the change is then "unclassified"); keep them out of the log, count them.
const origError = console.error;
let ruleErrors = 0;
console.error = (...a) => {
  if (String(a[0]).startsWith("Classification Rule error")) ruleErrors++;
  else origError(...a);
};
const t0 = Date.now();
const { diffs } = apiCompare(released, current);
console.error = origError;

// A change under components/ is also reported where it matters, under each operation that uses
// it (dereferenced, in its request or response context); in components/ alone the library
// cannot tell a request schema from a response one (a property added to a response-only schema
// comes out "breaking"), so only the operations' view counts.
const inComponents = (d) => d.path[0] === "components";
const breaking = diffs.filter((d) => d.type === "breaking" && !inComponents(d));
const unclassified = diffs.filter((d) => d.type === "unclassified" && !inComponents(d));
const where = (d) => d.path.join(" > ");
const count = {};
for (const d of diffs) if (!inComponents(d)) count[d.type] = (count[d.type] || 0) + 1;
console.log(
  `${currentPath} against ${releasedPath} (${released.info.version} -> ${current.info.version}): ` +
    (Object.entries(count).map(([k, v]) => `${v} ${k}`).join(", ") || "no change") +
    ` (counted in the operations that use them) in ${((Date.now() - t0) / 1000).toFixed(1)} s`,
);
for (const d of unclassified) console.log(`  unclassified: ${d.description || d.action} (${where(d)})`);
if (!breaking.length) process.exit(0);

for (const d of breaking) console.log(`  BREAKING: ${d.description || d.action} (${where(d)})`);
const major = (v) => Number(String(v).split(".")[0]);
const ver = String(current.info.version);
const problems = [];
if (!(major(ver) > major(released.info.version)))
  problems.push(`info.version ${ver} keeps the released major ${major(released.info.version)}: a breaking change needs ${major(released.info.version) + 1}.0.0`);
const changelog = existsSync(changelogPath) ? readFileSync(changelogPath, "utf8") : "";
const esc = ver.replace(/[.]/g, "\\.");
const section = changelog.split(/^## /m).find((s) => new RegExp(`^\\[?v?${esc}\\]?(\\s|$)`).test(s));
if (!section) problems.push(`${changelogPath} has no section "## [${ver}]"`);
else if (!/breaking/i.test(section)) problems.push(`the section "## [${ver}]" of ${changelogPath} does not say BREAKING`);
if (problems.length) {
  console.error(`${breaking.length} breaking change(s) against the released contract:\n  ` + problems.join("\n  "));
  process.exit(1);
}
console.log(`${breaking.length} breaking change(s), announced by info.version ${ver} and ${changelogPath}.`);

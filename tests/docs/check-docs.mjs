// GET /docs in a real browser: Debian's chromium driven by playwright-core (pinned in
// package.json), headless. Fails unless
//   - every operation of api/openapi.yaml is on the page (Redoc's section "operation/<operationId>",
//     showing the operation's path),
//   - nothing was logged as a console error, no page error, no failed or 4xx/5xx request,
//   - nothing was fetched from anywhere but the service itself (no CDN: works offline).
// A screenshot of the top of the page is kept.
//
//   node check-docs.mjs BASE_URL SPEC SCREENSHOT      env CHROMIUM (default /usr/bin/chromium)
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { chromium } from "playwright-core";

const require = createRequire(import.meta.url);
const yaml = require("js-yaml");
const [base, specPath, shot] = process.argv.slice(2);
if (!base || !specPath || !shot) {
  console.error("usage: node check-docs.mjs BASE_URL SPEC SCREENSHOT");
  process.exit(2);
}
const spec = yaml.load(readFileSync(specPath, "utf8"));
const ops = [];
for (const [path, item] of Object.entries(spec.paths || {}))
  for (const m of ["get", "put", "post", "patch", "delete", "head", "options"])
    if (item[m]) ops.push({ method: m.toUpperCase(), path, id: item[m].operationId });

const problems = [];
const origin = new URL(base).origin;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  // --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1440, height: 1000 } });
  // Offline: any request that leaves the service is refused and counted.
  await page.route("**/*", (route) => {
    const u = route.request().url();
    if (u.startsWith(origin + "/") || u.startsWith("data:") || u.startsWith("blob:")) return route.continue();
    problems.push(`request outside the service: ${u}`);
    return route.abort();
  });
  page.on("console", (msg) => {
    if (msg.type() === "error") problems.push(`console error: ${msg.text()}`);
  });
  page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
  page.on("requestfailed", (req) => {
    if (!problems.some((p) => p.includes(req.url())))
      problems.push(`request failed: ${req.url()} (${req.failure()?.errorText})`);
  });
  page.on("response", (res) => {
    if (res.status() >= 400) problems.push(`HTTP ${res.status()} for ${res.url()}`);
  });

  const t0 = Date.now();
  const resp = await page.goto(`${base}/docs`, { waitUntil: "load", timeout: 60000 });
  if (!resp || resp.status() !== 200) problems.push(`GET /docs answered ${resp && resp.status()}`);
  // Redoc renders asynchronously: wait until it has drawn the operations.
  await page
    .waitForFunction(() => document.querySelectorAll('[data-section-id^="operation/"]').length > 0, null, {
      timeout: 90000,
    })
    .catch(() => problems.push("Redoc drew no operation within 90 s"));
  const onPage = await page.evaluate(() => {
    const out = {};
    for (const el of document.querySelectorAll('[data-section-id^="operation/"]'))
      out[el.getAttribute("data-section-id").slice("operation/".length)] = el.textContent || "";
    return out;
  });
  const title = await page.evaluate(() => document.querySelector("h1")?.textContent || "");
  if (!title.includes(spec.info.title)) problems.push(`the page's title is "${title}", not "${spec.info.title}"`);
  let missing = 0;
  for (const op of ops) {
    const text = op.id && onPage[op.id];
    if (!op.id) problems.push(`${op.method} ${op.path} has no operationId`);
    else if (text === undefined) {
      missing++;
      problems.push(`operation not on the page: ${op.method} ${op.path} (${op.id})`);
    } else if (!text.includes(op.path)) problems.push(`${op.id}: its section does not show the path ${op.path}`);
  }
  await page.screenshot({ path: shot, fullPage: false });
  console.log(
    `GET /docs: ${ops.length - missing} of ${ops.length} operations on the page, ` +
      `${Object.keys(onPage).length} sections, drawn in ${((Date.now() - t0) / 1000).toFixed(1)} s; screenshot ${shot}`,
  );
} finally {
  await browser.close();
}
if (problems.length) {
  console.error(`GET /docs: ${problems.length} problem(s):\n  ` + problems.slice(0, 40).join("\n  "));
  process.exit(1);
}

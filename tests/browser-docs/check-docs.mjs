// Opens /docs of a running Claudeway in Debian's headless Chromium and checks that Swagger UI
// renders every operation of openapi.yaml, that nothing is logged as an error, that no
// request leaves the server's host (any other is blocked and reported), that the big files
// come gzip-encoded, and that "Try it out" on GET /health gets a 200. Saves a screenshot.
//
// usage: node check-docs.mjs http://127.0.0.1:PORT [screenshot.png]
import { readFileSync, mkdirSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const base = process.argv[2];
const shot = resolve(process.argv[3] ?? resolve(here, "../../artifacts/docs.png"));
if (!base) {
  console.error("usage: node check-docs.mjs http://127.0.0.1:PORT [screenshot.png]");
  process.exit(2);
}
const host = new URL(base).host;

// The operations the page must show: the methods under `paths:` in openapi.yaml.
const spec = readFileSync(resolve(here, "../../openapi.yaml"), "utf8");
const expected = spec
  .split("\n")
  .filter((l) => /^    (get|put|post|delete|patch|head|options):\s*$/.test(l)).length;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
const problems = [];
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const foreign = [];
  await context.route("**/*", (route) => {
    const url = new URL(route.request().url());
    if (url.host !== host) {
      foreign.push(url.href);
      return route.abort();
    }
    return route.continue();
  });
  const page = await context.newPage();
  const errors = [];
  const encodings = {};
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(`console: ${m.text()}`);
  });
  page.on("pageerror", (e) => errors.push(`page error: ${e.message}`));
  page.on("requestfailed", (r) => {
    if (new URL(r.url()).host === host) {
      errors.push(`request failed: ${r.url()} (${r.failure()?.errorText})`);
    }
  });
  page.on("response", async (r) => {
    if (r.status() >= 400) errors.push(`HTTP ${r.status()}: ${r.url()}`);
    encodings[new URL(r.url()).pathname] = (await r.allHeaders())["content-encoding"] ?? "";
  });

  const resp = await page.goto(`${base}/docs`, { waitUntil: "load" });
  if (resp?.status() !== 200) problems.push(`/docs answered ${resp?.status()}`);
  await page.waitForSelector(".opblock", { timeout: 30_000 });
  await page.waitForLoadState("networkidle");
  const ops = await page.locator(".opblock").count();
  const title = (await page.locator(".info .title").textContent()) ?? "";
  console.log(`/docs: "${title.trim()}", ${ops} operations shown (${expected} in openapi.yaml)`);
  if (ops !== expected) problems.push(`${ops} operations shown, openapi.yaml has ${expected}`);
  if (!title.includes("Claudeway")) problems.push(`title is "${title}"`);
  for (const f of ["/docs/swagger-ui-bundle.js", "/docs/swagger-ui.css"]) {
    if (encodings[f] !== "gzip") problems.push(`${f}: Content-Encoding "${encodings[f]}"`);
  }

  // Try it out: GET /health from the page, through the page's own origin.
  const health = page.locator("#operations-meta-getHealth");
  await health.locator(".opblock-summary").click();
  await health.locator("button.try-out__btn").click();
  await health.locator("button.execute").click();
  const status = health.locator(".live-responses-table tbody .response-col_status").first();
  await status.waitFor({ timeout: 15_000 });
  const code = (await status.textContent())?.trim();
  console.log(`Try it out, GET /health: ${code}`);
  if (code !== "200") problems.push(`Try it out on GET /health gave ${code}`);

  mkdirSync(dirname(shot), { recursive: true });
  await page.screenshot({ path: shot, fullPage: true });
  console.log(`screenshot: ${shot}`);

  for (const e of errors) problems.push(e);
  for (const u of foreign) problems.push(`request to another host (blocked): ${u}`);
} catch (e) {
  problems.push(String(e));
} finally {
  await browser.close();
}
if (problems.length) {
  console.error(`/docs check failed:\n  ${problems.join("\n  ")}`);
  process.exit(1);
}
console.log("browser: 1 passed, 0 failed");

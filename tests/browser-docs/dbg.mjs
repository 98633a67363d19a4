import { chromium } from "playwright-core";
const base = process.argv[2];
const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox","--disable-gpu","--no-first-run","--disable-background-networking","--disable-component-update","--disable-sync"] });
const page = await (await browser.newContext()).newPage();
const t0 = Date.now();
page.on("request", r => console.log(Date.now()-t0, "REQ", r.method(), r.url()));
page.on("response", r => console.log(Date.now()-t0, "RESP", r.status(), r.url()));
page.on("requestfailed", r => console.log(Date.now()-t0, "FAIL", r.url(), r.failure()?.errorText));
page.on("console", m => console.log("console", m.type(), m.text()));
try { await page.goto(`${base}/docs`, { waitUntil: "load", timeout: 15000 }); console.log("loaded"); } catch (e) { console.log(String(e).slice(0,200)); }
await browser.close();

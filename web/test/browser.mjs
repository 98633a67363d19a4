// The dashboard in a real browser (Debian's chromium through playwright-core) against the real
// binary with the fake CLI: log in, every page shows what the admin API says, the logs page
// shows a new task within one poll, a reload keeps the login, logout works, a wrong key is
// refused, no console errors, no request to another host. Screenshots go to
// artifacts/dashboard/. Run by .ci/run after `cargo build`; or: node test/browser.mjs
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes, randomUUID } from 'node:crypto';
import { chromium } from 'playwright-core';
import { int, usd, when } from '../src/format.js';

const web = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const repo = resolve(web, '..');
const BIN = process.env.CLAUDEWAY_BIN ?? join(repo, 'target/debug/claudeway');
const FAKE = process.env.FAKE_CLAUDE_BIN ?? join(repo, 'target/debug/fake-claude');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const SHOTS = join(repo, 'artifacts', 'dashboard');
const ADMIN = `admin-${randomBytes(12).toString('hex')}`;
const USER = `ci-${randomBytes(12).toString('hex')}`;
const POLL_MS = 5000;

const started = Date.now();
let passed = 0;
const log = (msg) => console.log(`[${((Date.now() - started) / 1000).toFixed(1)}s] ${msg}`);
/** One check of the run done. */
const ok = (msg) => {
  passed += 1;
  log(`ok: ${msg}`);
};

/** Starts claudeway on a free port in a fresh directory; resolves to { base, stop }. */
function startServer() {
  const dir = mkdtempSync(join(tmpdir(), 'cw-browser-'));
  for (const d of ['work', 'logs', 'home']) mkdirSync(join(dir, d));
  const env = { ...process.env, IS_SANDBOX: '1', HOME: join(dir, 'home') };
  delete env.WRAPPER_KEYS;
  const child = spawn(
    BIN,
    [
      '--host', '127.0.0.1', '--port', '0',
      '--keys', `admin:${ADMIN},ci:${USER}`,
      '--claude-bin', FAKE,
      '--workdir', join(dir, 'work'),
      '--log-dir', join(dir, 'logs'),
      '--enable-plugin', 'dashboard',
      '--force',
    ],
    { cwd: dir, env, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  const stop = () => {
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };
  return new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`no banner in 30 s:\n${stderr}`)), 30000);
    child.stderr.on('data', (chunk) => {
      stderr += chunk;
      const m = /listening on [^\s]+:(\d+)/.exec(stderr);
      if (m) {
        clearTimeout(timer);
        ok({ base: `http://127.0.0.1:${m[1]}`, stop });
      }
    });
    child.on('exit', (code) => fail(new Error(`claudeway exited ${code}:\n${stderr}`)));
  });
}

async function post(base, key, path, body) {
  const r = await fetch(`${base}${path}`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  const text = await r.text();
  assert.equal(r.status, 200, text);
  return JSON.parse(text);
}

async function task(base, key, prompt, model) {
  const r = await fetch(`${base}/task`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ prompt, model }),
  });
  const body = await r.text();
  assert.equal(r.status, 200, body);
  return { requestId: r.headers.get('x-request-id'), body: JSON.parse(body) };
}

/** The admin API with the page's cookie (the browser context's request client: it leaves no
 * trace in the page's console or request log). */
async function adminApi(page, path) {
  const r = await page.request.get(new URL(path, page.url()).href);
  return { status: r.status(), body: await r.json() };
}

const text = async (page, testid) => (await page.getByTestId(testid).innerText()).trim();

async function shot(page, name) {
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

async function main() {
  mkdirSync(SHOTS, { recursive: true });
  const { base, stop } = await startServer();
  const host = new URL(base).host;
  log(`claudeway at ${base}`);
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync',
    ],
  });
  const problems = [];
  try {
    for (const [prompt, key, model] of [
      ['first task', USER, 'haiku'],
      ['second task', ADMIN, 'sonnet'],
      ['third task', USER, 'opus'],
    ]) {
      await task(base, key, prompt, model);
    }
    log('3 tasks done');
    for (const [key, model] of [[USER, 'haiku'], [ADMIN, 'sonnet'], [USER, 'opus']]) {
      const { session_id } = await post(base, key, '/session/start', { model });
      await post(base, key, `/session/${session_id}`, { prompt: `a turn of ${model}` });
    }
    log('3 sessions started');

    const context = await browser.newContext({ viewport: { width: 1200, height: 800 } });
    const page = await context.newPage();
    page.setDefaultTimeout(10000);
    page.on('request', (req) => {
      const url = new URL(req.url());
      if (url.protocol !== 'data:' && url.host !== host) problems.push(`request to ${req.url()}`);
    });
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('console', (msg) => {
      if (msg.type() !== 'error') return;
      // A 401 is how the page learns it is logged out (the session probe, a wrong key):
      // the browser reports each as a failed resource. Anything else is a problem.
      const url = msg.location()?.url ?? '';
      const expected =
        (/status of 401/.test(msg.text()) && /\/admin\/(session|login)$/.test(url)) ||
        (/status of 403/.test(msg.text()) && /\/admin\/login$/.test(url));
      if (!expected) problems.push(`console error: ${msg.text()} (${url})`);
    });

    // Logged out: the login page. A wrong key is refused.
    await page.goto(`${base}/dashboard/`);
    await page.locator('#key').fill('not-the-key');
    await page.getByRole('button', { name: 'Log in' }).click();
    assert.match(await text(page, 'login-error'), /Wrong key/);
    await shot(page, 'login');
    ok('wrong key refused');

    // A user key is not an admin key either.
    await page.locator('#key').fill(USER);
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.getByText('only the admin key').waitFor();

    await page.locator('#key').fill(ADMIN);
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.getByTestId('logout').waitFor();
    ok('logged in');

    // Overview: the cards and the model table say what /admin/overview says.
    await page.getByTestId('total-requests').waitFor();
    const o = (await adminApi(page, '/admin/overview')).body;
    assert.equal(await text(page, 'total-requests'), int(o.total_requests));
    assert.equal(await text(page, 'total-cost'), usd(o.total_cost_usd));
    assert.equal(await text(page, 'active-sessions'), int(o.active_sessions));
    assert.equal(await text(page, 'tokens'), `${int(o.tokens.input)} / ${int(o.tokens.output)}`);
    assert.equal(await text(page, 'unauthorized'), int(o.unauthorized));
    assert.equal(await text(page, 'events-dropped'), int(o.events_dropped));
    assert.ok(o.total_requests >= 4 && o.total_cost_usd > 0, JSON.stringify(o));
    const modelRows = page.getByTestId('models').locator('tbody tr');
    assert.equal(await modelRows.count(), o.models.length);
    for (const [i, m] of o.models.entries()) {
      const cells = await modelRows.nth(i).locator('td').allInnerTexts();
      assert.deepEqual(cells, [m.model, int(m.requests), usd(m.cost_usd)]);
    }
    assert.equal(await page.locator('canvas').count(), 2);
    await shot(page, 'overview');
    ok('overview matches');

    // A reload keeps the login (the page asks the server).
    await page.reload();
    await page.getByTestId('total-requests').waitFor();
    ok('reload keeps the login');

    // Keys.
    await page.getByRole('link', { name: 'Keys' }).click();
    await page.getByTestId('keys').waitFor();
    const keys = (await adminApi(page, '/admin/keys')).body.keys;
    assert.deepEqual(keys.map((k) => k.key_id), ['admin', 'ci']);
    for (const k of keys) {
      const cells = await page.locator(`tr[data-key="${k.key_id}"] td`).allInnerTexts();
      assert.equal(cells[1], int(k.requests), k.key_id);
      assert.equal(cells[2], usd(k.cost_usd), k.key_id);
      assert.equal(cells[4], when(k.last_used), k.key_id);
    }
    assert.ok(!(await page.content()).includes(ADMIN), 'no secret on the page');
    await shot(page, 'keys');
    ok('keys match');

    // Costs, each grouping.
    await page.getByRole('link', { name: 'Costs' }).click();
    for (const g of ['daily', 'weekly', 'monthly']) {
      await page.getByRole('button', { name: g }).click();
      const c = (await adminApi(page, `/admin/costs?group_by=${g}`)).body;
      // The table of the grouping just picked, not the one still shown while it loads.
      const table = page.locator(`[data-testid=costs][data-group=${g}]`);
      await table.waitFor();
      const rows = table.locator('tbody tr');
      assert.equal(await rows.count(), c.periods.length, g);
      for (const [i, p] of c.periods.entries()) {
        const cells = await rows.nth(i).locator('td').allInnerTexts();
        assert.deepEqual(cells, [p, int(c.total.requests[i]), usd(c.total.cost_usd[i])]);
      }
      const sum = c.total.cost_usd.reduce((a, b) => a + b, 0);
      assert.equal(await text(page, 'costs-total'), usd(sum));
      assert.equal(await page.locator('canvas').count(), 2);
      await shot(page, `costs-${g}`);
    }
    ok('costs match');

    // Logs: what the API has, then a new task shows up within one poll.
    await page.getByRole('link', { name: 'Logs' }).click();
    const logRows = page.getByTestId('logs').locator('tbody tr[data-seq]');
    await logRows.first().waitFor();
    const logs = (await adminApi(page, '/admin/logs?limit=200')).body;
    assert.equal(await logRows.count(), logs.entries.length);
    assert.equal(await logRows.first().getAttribute('data-seq'), String(logs.entries[0].seq));
    const fresh = await task(base, USER, 'a task for the live log', 'haiku');
    const t0 = Date.now();
    await page
      .locator(`tr[data-request-id="${fresh.requestId}"]`)
      .waitFor({ timeout: POLL_MS + 3000 });
    log(`new task in the log after ${Date.now() - t0} ms`);
    await page.locator('#key-filter').selectOption('ci');
    await page.waitForFunction(() => {
      const rows = [...document.querySelectorAll('[data-testid=logs] tbody tr[data-seq]')];
      return rows.length > 0 && rows.every((r) => r.children[1].textContent === 'ci');
    });
    const ciLogs = (await adminApi(page, '/admin/logs?key_id=ci&limit=200')).body;
    assert.equal(await logRows.count(), ciLogs.entries.length);
    await shot(page, 'logs');
    ok('logs match');

    // Sessions: the page shows what the admin API has.
    const real = await adminApi(page, '/admin/sessions?page=1&per_page=20');
    assert.equal(real.status, 200);
    assert.equal(real.body.total, 3);
    await page.getByRole('link', { name: 'Sessions' }).click();
    await page.getByTestId('page').waitFor();
    const list = (await adminApi(page, '/admin/sessions?page=1&per_page=20')).body;
    const sessionRows = page.getByTestId('sessions').locator('tbody tr[data-session]');
    assert.equal(await sessionRows.count(), list.sessions.length);
    const pages = Math.max(1, Math.ceil(list.total / list.per_page));
    assert.match(await text(page, 'page'), new RegExp(`^Page 1 of ${pages} `));
    for (const [i, s] of list.sessions.entries()) {
      const cells = await sessionRows.nth(i).locator('td').allInnerTexts();
      assert.deepEqual(cells.slice(1, 7), [s.key_id, s.model, when(s.created_at), when(s.last_active_at), int(s.task_count), usd(s.cost_usd)]);
    }
    await shot(page, 'sessions');
    if (pages > 1) {
      await page.getByRole('button', { name: 'Next' }).click();
      await page.getByText(`Page 2 of ${pages}`).waitFor();
      await page.getByRole('button', { name: 'Previous' }).click();
      await page.getByText(`Page 1 of ${pages}`).waitFor();
    }
    if (list.sessions.length) {
      const s = list.sessions[0];
      await sessionRows.first().getByRole('link').click();
      await page.getByTestId('session').waitFor();
      const detail = await page.getByTestId('session').innerText();
      for (const v of [s.session_id, s.key_id, s.workdir, int(s.task_count), usd(s.cost_usd), when(s.created_at)]) {
        assert.ok(detail.includes(v), `${v} in ${detail}`);
      }
      await shot(page, 'session');
      await page.getByTestId('delete').click();
      await page.getByTestId('confirm-delete').click();
      await page.waitForURL(/#\/sessions$/);
      await page.getByTestId('page').waitFor();
      assert.equal((await adminApi(page, `/admin/sessions/${s.session_id}`)).status, 404);
    }
    ok('sessions match');

    // A phone, in the dark.
    await page.setViewportSize({ width: 390, height: 844 });
    await page.emulateMedia({ colorScheme: 'dark' });
    await page.getByRole('link', { name: 'Overview' }).click();
    await page.getByTestId('total-requests').waitFor();
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `the page is ${overflow}px wider than a phone`);
    const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    assert.equal(bg, 'rgb(18, 21, 27)', 'dark background');
    await shot(page, 'overview-phone-dark');
    ok('phone width, dark');
    await page.setViewportSize({ width: 1200, height: 800 });
    await page.emulateMedia({ colorScheme: 'light' });

    // Logout ends the login on the server too.
    await page.getByTestId('logout').click();
    await page.locator('#key').waitFor();
    assert.equal((await adminApi(page, '/admin/overview')).status, 401);
    await page.reload();
    await page.locator('#key').waitFor();
    ok('logged out');

    assert.deepEqual(problems, [], 'no console errors and no other hosts');
    ok('no console errors, no request to another host');
    await context.close();
  } finally {
    await browser.close();
    stop();
  }
  console.log(`browser: ${passed} passed, 0 failed`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});

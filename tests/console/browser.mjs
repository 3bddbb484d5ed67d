// Drives the console in headless Chromium (Debian's `chromium`, through playwright-core) as
// a person would. Called by tests/console.rs, one step at a time:
//
//   node browser.mjs STEP ADMIN_URL GATEWAY_URL ADMIN_TOKEN AGENT_TOKEN SHOTS_DIR [ARG]
//
//   approve  ARG = text the pending request's arguments must show; refuses a wrong token and
//            a forged POST, approves with a note, then watches a new decision arrive live and
//            visits every page (screenshots of each, at 1280x800 and phone width)
//   deny     ARG = the note the agent must read
//   load     times the decisions page with the live buffer full
//
// Prints one JSON object; exits 1 with the reason on any failed expectation.

import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(import.meta.url);
const [step, admin, gateway, adminToken, agentToken, shots, arg] = process.argv.slice(2);
const modules = process.env.WARDEN_E2E_NODE_MODULES;
const { chromium } = require(path.join(modules, 'playwright-core'));

function expect(cond, why) {
  if (!cond) throw new Error(why);
}

async function login(page, token) {
  await page.goto(admin + '/');
  expect(page.url().endsWith('/login'), `not sent to the login form: ${page.url()}`);
  await page.fill('input[name=token]', token);
  const [resp] = await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
  return resp;
}

/// The pending request whose arguments show `text` (the page reloads itself when one comes).
async function card(page, text) {
  const deadline = Date.now() + 30000;
  for (;;) {
    const c = page.locator('section.card', { hasText: text });
    if ((await c.count()) > 0) return c.first();
    expect(Date.now() < deadline, `no pending approval showing ${text}: ${await page.content()}`);
    await page.waitForTimeout(250);
    if ((await page.locator('section.card').count()) === 0) await page.reload();
  }
}

/// One allowed MCP call through the gateway, as an agent makes it.
async function agentCall(tool, args) {
  const h = { 'content-type': 'application/json', accept: 'application/json, text/event-stream', authorization: `Bearer ${agentToken}` };
  const init = await fetch(gateway, { method: 'POST', headers: h, body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'browser-test', version: '0' } } }) });
  const sid = init.headers.get('mcp-session-id');
  await init.text();
  const hs = { ...h, 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25' };
  await (await fetch(gateway, { method: 'POST', headers: hs, body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }) })).text();
  const r = await fetch(gateway, { method: 'POST', headers: hs, body: JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: tool, arguments: args } }) });
  return r.text();
}

async function approve(browser) {
  const out = {};
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await ctx.newPage();

  // An agent's token is not the admin token: refused, and no cookie is set.
  const refused = await login(page, agentToken);
  expect(refused.status() === 401, `the agent's token got ${refused.status()}`);
  expect((await page.textContent('[role=alert]')).includes('not this gateway'), 'no refusal shown');
  expect((await ctx.cookies()).length === 0, 'a cookie for a refused login');
  await page.screenshot({ path: path.join(shots, 'login-refused.png') });

  await login(page, adminToken);
  expect(page.url().endsWith('/console/approvals'), `after login: ${page.url()}`);
  const cookie = (await ctx.cookies()).find((c) => c.name === 'warden_console');
  expect(cookie && cookie.httpOnly && cookie.sameSite === 'Strict', `session cookie: ${JSON.stringify(cookie)}`);

  const c = await card(page, arg);
  const args = await c.locator('pre.args').textContent();
  out.args_shown = args;
  await page.screenshot({ path: path.join(shots, 'approvals.png'), fullPage: true });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.screenshot({ path: path.join(shots, 'approvals-phone.png'), fullPage: true });
  await page.setViewportSize({ width: 1280, height: 800 });

  // A POST with the cookie but without the CSRF token (what a hostile page could send) is
  // refused and answers nothing.
  const id = await c.getAttribute('data-id');
  const forged = await page.evaluate(async (id) => (await fetch(`/approvals/${id}/approve`, { method: 'POST' })).status, id);
  expect(forged === 403, `a POST without the CSRF token got ${forged}`);
  expect((await page.locator(`section.card[data-id="${id}"]`).count()) === 1, 'the forged POST answered');

  await c.locator('input[name=note]').fill('checked the sum with finance');
  await Promise.all([page.waitForNavigation(), c.locator('button[value=approve]').click()]);
  expect((await page.locator(`section.card[data-id="${id}"]`).count()) === 0, 'still pending after approval');

  // The live view: a decision made after the page opened shows up in it.
  await page.goto(admin + '/console/decisions');
  await page.waitForFunction(() => document.querySelectorAll('#rows tr').length > 0, null, { timeout: 10000 });
  await agentCall('echo', { message: 'seen live' });
  await page.waitForSelector('#rows tr[data-tool="echo"]', { timeout: 10000 });
  // The filter hides what does not match.
  await page.selectOption('#f-outcome', 'deny');
  expect(await page.locator('#rows tr[data-tool="echo"]').first().isHidden(), 'the outcome filter did not hide an allow');
  await page.selectOption('#f-outcome', '');
  out.live_rows = await page.locator('#rows tr').count();
  await page.screenshot({ path: path.join(shots, 'decisions.png') });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.screenshot({ path: path.join(shots, 'decisions-phone.png') });
  await page.setViewportSize({ width: 1280, height: 800 });

  await page.goto(admin + '/console/limits');
  out.limits_text = await page.textContent('main');
  await page.screenshot({ path: path.join(shots, 'limits.png'), fullPage: true });

  await page.goto(admin + '/console/policy');
  expect((await page.locator('pre.source span.k').count()) > 0, 'the policy is not highlighted');
  out.policy_text = await page.textContent('main');
  await page.screenshot({ path: path.join(shots, 'policy.png'), fullPage: true });
  await ctx.close();
  return out;
}

async function deny(browser) {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await ctx.newPage();
  await login(page, adminToken);
  const c = await card(page, '"a": 40');
  await c.locator('input[name=note]').fill(arg);
  await Promise.all([page.waitForNavigation(), c.locator('button[value=deny]').click()]);
  await ctx.close();
  return {};
}

async function load(browser) {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await ctx.newPage();
  await login(page, adminToken);
  const timings = {};
  for (const p of ['approvals', 'limits', 'policy']) {
    const t0 = Date.now();
    await page.goto(`${admin}/console/${p}`, { waitUntil: 'load' });
    timings[p] = Date.now() - t0;
  }
  // The live page: until the whole buffer (1,000 decisions) is in the table.
  const t0 = Date.now();
  await page.goto(`${admin}/console/decisions`, { waitUntil: 'load' });
  await page.waitForFunction(() => document.querySelectorAll('#rows tr').length >= 1000, null, { timeout: 20000 });
  timings.decisions_with_1000 = Date.now() - t0;
  // The same, from the page's own clock: navigation start to the 1,000 rows in the table.
  Object.assign(timings, await page.evaluate(() => {
    const nav = performance.getEntriesByType('navigation')[0];
    const mark = performance.getEntriesByName('backlog-rendered')[0];
    return { decisions_dom_content_loaded: Math.round(nav.domContentLoadedEventEnd), decisions_rows_rendered: Math.round(mark ? mark.startTime : -1) };
  }));
  await ctx.close();
  return { timings_ms: timings };
}

const browser = await chromium.launch({
  executablePath: process.env.WARDEN_E2E_CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-dev-shm-usage'],
});
try {
  const steps = { approve, deny, load };
  expect(steps[step], `unknown step ${step}`);
  console.log(JSON.stringify({ ok: true, ...(await steps[step](browser)) }));
} catch (e) {
  console.log(JSON.stringify({ ok: false, error: String(e && e.stack || e) }));
  process.exitCode = 1;
} finally {
  await browser.close();
}

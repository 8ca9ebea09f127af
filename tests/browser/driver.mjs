// Drives Debian's headless Chromium (through playwright-core, no browser download) through
// tollgate's browser login against the real test OpenID Provider (tests/idp).
//
// Input: one JSON object on stdin, {"scenario": NAME, ...parameters}. Output: exactly one line
// on stdout, `BROWSER_RESULT {"ok":true,"result":{...}}` or `BROWSER_RESULT {"ok":false,
// "error":"...","trace":[...]}`; everything else (a trace of navigations) goes to stderr. The
// Rust side (tests/support/browser.rs) makes the assertions from the observations returned
// here; this script only waits for things with Playwright's bounded waits and reports what the
// browser saw. Every request to a host other than 127.0.0.1 or localhost is aborted (and listed
// in the result as `blocked`): the provider's pages import web fonts from the Internet.
//
// Scenarios (parameters in the Rust tests, tests/login_browser.rs):
//   login    sign in at `url` as `user`; cookies, document.cookie and the upstream's page
//   tamper   sign in, flip characters of the session cookie, reload (provider session kept,
//            then dropped)
//   signout  sign in, /oauth2/sign_out (confirming at the provider), open `url` again
//   refresh  sign in, then reload `url` until the provider's token counter shows refreshes
//   outage   sign in, make the provider's token endpoint answer 503, open `url` again
//   shared   sign in at `url`, then open `other_url` (a second gateway with the same secret)
//            and `foreign_url` (one with another secret)
//   dev      `tollgate dev`: sign in at its own form, then the second demo app (`second_url`)
//   two_apps sign in at `url` (one login), open `other_url` (another login on the same host),
//            sign out at `sign_out_url`, then open both again (tests/multi_login.rs)
//   cors     optionally sign in (`login`: {idp, url, user}), then for each of `pages` open its
//            `url` and run its `calls` there with `fetch` (tests/cors_browser.rs); reports what
//            the page could read of each answer, or the error fetch rejected with. Runs with
//            `intercept: false`: Playwright answers every preflight itself while request
//            interception is on, which would hide the gateway's answer.

import { performance } from 'node:perf_hooks';

const { chromium } = await import('playwright-core');

const CHROMIUM = process.env.TOLLGATE_CHROMIUM || '/usr/bin/chromium';
/// One Playwright wait (a navigation, a selector); generous for a loaded 2-core machine.
const STEP_TIMEOUT = 20_000;

const trace = [];
function log(line) {
  const entry = `${(performance.now() / 1000).toFixed(3)}s ${line}`;
  trace.push(entry);
  if (trace.length > 400) trace.shift();
  process.stderr.write(`browser: ${entry}\n`);
}

function emit(obj) {
  process.stdout.write(`BROWSER_RESULT ${JSON.stringify(obj)}\n`);
}

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

function isLoopback(url) {
  try {
    const { hostname, protocol } = new URL(url);
    if (protocol === 'data:' || protocol === 'about:') return true;
    return hostname === '127.0.0.1' || hostname === 'localhost';
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// Browser and page helpers
// ---------------------------------------------------------------------------------------------

async function openBrowser(input) {
  // Playwright gives every launch a fresh temporary profile (user-data dir) of its own and
  // removes it on close.
  const args = [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--no-first-run',
    // Belt and braces next to the request interception below: no name but localhost resolves.
    '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1',
  ];
  // Chromium is up in about a second on an idle machine, but a launch took over 30 s on a busy
  // two-core one; the Rust side bounds the whole scenario (support/browser.rs RUN_TIMEOUT).
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args, timeout: 90_000 });
  const context = await browser.newContext({ ignoreHTTPSErrors: Boolean(input.ignore_https_errors) });
  context.setDefaultTimeout(STEP_TIMEOUT);
  context.setDefaultNavigationTimeout(STEP_TIMEOUT);
  const blocked = [];
  // Without interception, --host-resolver-rules above still keeps every request on loopback.
  if (input.intercept !== false) {
    await context.route('**/*', (route) => {
      const url = route.request().url();
      if (isLoopback(url)) return route.continue();
      blocked.push(url);
      return route.abort('blockedbyclient');
    });
  }
  const page = await context.newPage();
  const navigations = [];
  page.on('response', (resp) => {
    const req = resp.request();
    if (req.isNavigationRequest() && req.frame() === page.mainFrame()) {
      const entry = { method: req.method(), url: resp.url(), status: resp.status() };
      navigations.push(entry);
      log(`${entry.method} ${entry.url} -> ${entry.status}`);
    }
  });
  const close = async () => {
    await browser.close().catch(() => {});
  };
  return { context, page, navigations, blocked, close, version: browser.version() };
}

function sameUrl(target) {
  const want = new URL(target).href;
  return (u) => u.href === want;
}

function onIdp(idp, prefix) {
  return (u) => u.href.startsWith(idp + prefix);
}

async function pageSummary(page) {
  const text = await page.evaluate(() => document.body?.innerText ?? '').catch(() => '');
  return `at ${page.url()}: ${text.replace(/\s+/g, ' ').slice(0, 300)}`;
}

/// Waits for the provider's login form (devInteractions: `login` and `password` inputs).
async function waitForLoginForm(page, idp) {
  await page.waitForURL(onIdp(idp, '/interaction/'));
  await page.waitForSelector('input[name="login"]', { state: 'visible' });
}

/// Fills and submits the login form, then waits until the browser is back at `expect`.
async function submitLogin(page, user, expect) {
  await page.fill('input[name="login"]', user);
  const password = page.locator('input[name="password"]');
  if (await password.count()) await password.fill('any-password');
  await Promise.all([page.waitForURL(sameUrl(expect)), page.click('button[type="submit"]')]);
  await page.waitForSelector('#headers', { state: 'attached' });
}

/// Opens `url`, signs in at the provider as `user`, and waits to be back at `url`.
/// Returns how long that took and what the upstream's page showed.
async function login(page, idp, url, user) {
  const started = performance.now();
  await page.goto(url);
  await waitForLoginForm(page, idp);
  const formShown = performance.now();
  await submitLogin(page, user, url);
  const done = performance.now();
  return {
    ms_total: Math.round(done - started),
    ms_to_form: Math.round(formShown - started),
    ms_after_submit: Math.round(done - formShown),
    upstream: await upstreamView(page),
  };
}

/// What the upstream's page (tests/login_browser.rs) shows: the URI and headers it received.
async function upstreamView(page) {
  const uri = await page.textContent('#uri');
  const headers = JSON.parse(await page.textContent('#headers'));
  return { url: page.url(), uri, headers };
}

/// Loads `url` and reports where the browser ended up: the upstream's page, the provider's
/// login form, or anything else (with its text), without treating any of them as a failure.
async function visit(page, idp, url) {
  const before = page.url();
  const resp = await page.goto(url);
  const loginForm = page.locator('input[name="login"]');
  const upstream = page.locator('#headers');
  // goto resolved on the final page's load event; its markup is server-rendered, so what it
  // is can be read now.
  await page.waitForLoadState('load');
  const out = { from: before, final_url: page.url(), status: resp?.status() ?? null };
  if (await upstream.count()) {
    out.kind = 'upstream';
    out.upstream = await upstreamView(page);
  } else if ((await loginForm.count()) && page.url().startsWith(idp + '/interaction/')) {
    out.kind = 'login_form';
  } else {
    out.kind = 'other';
    out.summary = await pageSummary(page);
  }
  return out;
}

async function cookieView(context, page) {
  const cookies = await context.cookies();
  const documentCookie = await page.evaluate(() => document.cookie);
  return { cookies, document_cookie: documentCookie };
}

function sessionCookie(cookies, name) {
  return cookies.find((c) => c.name === name || c.name === `${name}_0`);
}

/// Flips characters inside a sealed value, keeping it base64url so it still parses.
function tamper(value) {
  const chars = [...value];
  const flip = (i) => {
    const c = chars[i];
    chars[i] = c === 'A' ? 'B' : c === 'a' ? 'b' : 'A';
  };
  for (const at of [0.3, 0.5, 0.8]) flip(Math.min(chars.length - 1, Math.max(3, Math.floor(chars.length * at))));
  return chars.join('');
}

async function readCounters(idp) {
  const resp = await fetch(`${idp}/__test/counters`);
  if (!resp.ok) throw new Error(`GET ${idp}/__test/counters: ${resp.status}`);
  return resp.json();
}

// ---------------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------------

const scenarios = {
  // `tollgate dev`: open the printed URL, sign in at the development issuer's own form, and
  // land back on the demo page that shows the identity headers it received.
  async dev(input, b) {
    const { page } = b;
    await page.goto(input.url);
    await page.waitForSelector('#username', { state: 'visible' });
    const formUrl = page.url();
    await page.fill('#username', input.user);
    await Promise.all([page.waitForURL(sameUrl(input.url)), page.click('#sign-in')]);
    await page.waitForSelector('#welcome');
    const out = {
      form_url: formUrl,
      final_url: page.url(),
      welcome: await page.textContent('#welcome'),
      headers: await page.textContent('#headers'),
    };
    // The second demo app signs in with its own client; the issuer remembers the user.
    if (input.second_url) {
      await page.goto(input.second_url);
      await page.waitForURL(sameUrl(input.second_url));
      await page.waitForSelector('#welcome');
      out.second_final_url = page.url();
      out.second_welcome = await page.textContent('#welcome');
      out.cookies = await b.context.cookies();
    }
    return out;
  },

  async login(input, b) {
    const first = await login(b.page, input.idp, input.url, input.user);
    const cookies = await cookieView(b.context, b.page);
    // A second, already signed-in load: the session alone gets the page.
    const started = performance.now();
    const again = await visit(b.page, input.idp, input.url);
    again.ms = Math.round(performance.now() - started);
    return { login: first, cookies, again };
  },

  async tamper(input, b) {
    const { context, page } = b;
    const first = await login(page, input.idp, input.url, input.user);
    const { cookies } = await cookieView(context, page);
    const original = sessionCookie(cookies, input.cookie_name);
    if (!original) throw new Error(`no session cookie ${input.cookie_name} after login: ${JSON.stringify(cookies)}`);
    const tampered = { ...original, value: tamper(original.value) };
    delete tampered.partitionKey;

    // 1. The provider still has its session: the gateway must start a new login (a redirect to
    //    the provider, not an error page); the provider signs the user in again silently.
    await context.addCookies([tampered]);
    const navStart = b.navigations.length;
    const withIdpSession = await visit(page, input.idp, input.url);
    withIdpSession.chain = b.navigations.slice(navStart);
    withIdpSession.cookie_after = sessionCookie(await context.cookies(), input.cookie_name)?.value ?? null;

    // 2. Without the provider's session (its cookies dropped): the login form.
    await context.clearCookies();
    await context.addCookies([tampered]);
    const navStart2 = b.navigations.length;
    const withoutIdpSession = await visit(page, input.idp, input.url);
    withoutIdpSession.chain = b.navigations.slice(navStart2);
    let relogin = null;
    if (withoutIdpSession.kind === 'login_form') {
      await submitLogin(page, input.user, input.url);
      relogin = await upstreamView(page);
    }
    return {
      login: first,
      original_value: original.value,
      tampered_value: tampered.value,
      with_idp_session: withIdpSession,
      without_idp_session: withoutIdpSession,
      relogin,
    };
  },

  async signout(input, b) {
    const { context, page } = b;
    const first = await login(page, input.idp, input.url, input.user);
    const before = sessionCookie(await context.cookies(), input.cookie_name);
    const navStart = b.navigations.length;
    await page.goto(input.sign_out_url);
    // The provider asks to confirm (RP-initiated logout): "Yes, sign me out".
    const confirm = page.locator('button[name="logout"][value="yes"]');
    const loginForm = page.locator('input[name="login"]');
    await Promise.race([confirm.waitFor({ state: 'visible' }), loginForm.waitFor({ state: 'visible' })]);
    let confirmed = false;
    if (await confirm.count()) {
      confirmed = true;
      // After the confirmation the provider sends the browser to post_logout_redirect_uri (the
      // gateway's "/"), which without a session starts a login: the provider's form.
      await Promise.all([page.waitForURL((u) => !u.pathname.startsWith('/end_session')), confirm.click()]);
    }
    await Promise.race([
      loginForm.waitFor({ state: 'visible' }),
      page.locator('#headers').waitFor({ state: 'attached' }),
    ]).catch(() => {});
    const afterSignOut = {
      final_url: page.url(),
      login_form: page.url().startsWith(input.idp + '/interaction/') && (await loginForm.count()) > 0,
      summary: await pageSummary(page),
      chain: b.navigations.slice(navStart),
      cookie: sessionCookie(await context.cookies(), input.cookie_name) ?? null,
    };
    // Then the protected page again: must be the login form, not a silent re-login.
    const navStart2 = b.navigations.length;
    const revisit = await visit(page, input.idp, input.url);
    revisit.chain = b.navigations.slice(navStart2);
    return { login: first, cookie_before: before ?? null, confirmed, after_sign_out: afterSignOut, revisit };
  },

  async refresh(input, b) {
    const { page } = b;
    const first = await login(page, input.idp, input.url, input.user);
    const afterLogin = await readCounters(input.idp);
    const loads = [];
    const deadline = performance.now() + input.max_ms;
    let counters = afterLogin;
    // Bounded poll: reload until the provider has answered `want_token_calls` token requests
    // (the code exchange plus refreshes), or the load limit or deadline is reached.
    while (loads.length < input.max_loads && performance.now() < deadline) {
      const started = performance.now();
      const v = await visit(page, input.idp, input.url);
      counters = await readCounters(input.idp);
      loads.push({
        kind: v.kind,
        ms: Math.round(performance.now() - started),
        user: v.upstream?.headers?.['x-forwarded-user'] ?? null,
        email: v.upstream?.headers?.['x-forwarded-email'] ?? null,
        final_url: v.final_url,
        summary: v.summary ?? null,
        token_calls: counters.token ?? 0,
        auth_calls: counters.auth ?? 0,
      });
      if (v.kind !== 'upstream') break;
      if ((counters.token ?? 0) >= input.want_token_calls && loads.length >= input.min_loads) break;
      // Pace the reloads: refreshes come in each token's second half, not at every load.
      await page.waitForTimeout(input.pace_ms ?? 0);
    }
    return { login: first, counters_after_login: afterLogin, loads, counters_end: counters };
  },

  async outage(input, b) {
    // Signed in; then the provider's token endpoint fails (503) while the session's access
    // token is still valid but inside refresh_before: what does the next page load show?
    const { page } = b;
    const first = await login(page, input.idp, input.url, input.user);
    // Let the access token reach the second half of its life, where a refresh is due.
    await page.waitForTimeout(input.wait_ms ?? 0);
    const setFailure = async (status) => {
      const resp = await fetch(`${input.idp}/__test/fail?endpoint=token&status=${status}`, { method: 'POST' });
      if (!resp.ok) throw new Error(`POST /__test/fail: ${resp.status}`);
    };
    await setFailure(503);
    const navStart = b.navigations.length;
    let during;
    try {
      during = await visit(page, input.idp, input.url);
    } finally {
      await setFailure(0);
    }
    during.chain = b.navigations.slice(navStart);
    const navStart2 = b.navigations.length;
    const after = await visit(page, input.idp, input.url);
    after.chain = b.navigations.slice(navStart2);
    return { login: first, during, after };
  },

  async two_apps(input, b) {
    const { context, page } = b;
    const first = await login(page, input.idp, input.url, input.user);
    const other = await visit(page, input.idp, input.other_url);
    const cookies = await context.cookies();
    await page.goto(input.sign_out_url);
    // The provider asks to confirm (RP-initiated logout), then sends the browser back to the
    // first app, which without a session starts a login: the provider's form.
    const confirm = page.locator('button[name="logout"][value="yes"]');
    const loginForm = page.locator('input[name="login"]');
    await Promise.race([confirm.waitFor({ state: 'visible' }), loginForm.waitFor({ state: 'visible' })]);
    if (await confirm.count()) {
      await Promise.all([page.waitForURL((u) => !u.pathname.startsWith('/end_session')), confirm.click()]);
    }
    await loginForm.waitFor({ state: 'visible' }).catch(() => {});
    const left = await context.cookies();
    const afterSignOut = { final_url: page.url(), cookies: {} };
    for (const name of input.cookie_names) afterSignOut.cookies[name] = left.find((c) => c.name === name) ?? null;
    const otherAfter = await visit(page, input.idp, input.other_url);
    const firstAfter = await visit(page, input.idp, input.url);
    return { login: first, other, cookies, after_sign_out: afterSignOut, blog_after: otherAfter, wiki_after: firstAfter };
  },

  async cors(input, b) {
    const { page } = b;
    const signedIn = input.login ? await login(page, input.login.idp, input.login.url, input.login.user) : null;
    const pages = [];
    for (const p of input.pages) {
      await page.goto(p.url);
      const calls = [];
      for (const call of p.calls) {
        const seen = await page.evaluate(async ({ url, init }) => {
          try {
            const resp = await fetch(url, init);
            const headers = {};
            resp.headers.forEach((v, k) => {
              headers[k] = v;
            });
            return { ok: true, status: resp.status, headers, body: await resp.text() };
          } catch (err) {
            return { ok: false, error: `${err.name}: ${err.message}` };
          }
        }, call);
        log(`fetch from ${p.url}: ${call.init?.method ?? 'GET'} ${call.url} -> ${seen.ok ? seen.status : seen.error}`);
        calls.push({ name: call.name, ...seen });
      }
      pages.push({ url: page.url(), calls });
    }
    return { login: signedIn, pages };
  },

  async shared(input, b) {
    const { context, page } = b;
    const first = await login(page, input.idp, input.url, input.user);
    const countersBefore = await readCounters(input.idp);
    const navStart = b.navigations.length;
    const other = await visit(page, input.idp, input.other_url);
    other.chain = b.navigations.slice(navStart);
    const countersAfter = await readCounters(input.idp);
    const { cookies } = await cookieView(context, page);
    let foreign = null;
    if (input.foreign_url) {
      const navStart2 = b.navigations.length;
      foreign = await visit(page, input.idp, input.foreign_url);
      foreign.chain = b.navigations.slice(navStart2);
    }
    return { login: first, other, foreign, counters_before: countersBefore, counters_after: countersAfter, cookies };
  },
};

// ---------------------------------------------------------------------------------------------

let input;
try {
  input = await readStdin();
} catch (err) {
  emit({ ok: false, error: `bad input on stdin: ${err.message}`, trace });
  process.exit(2);
}
const scenario = scenarios[input.scenario];
if (!scenario) {
  emit({ ok: false, error: `unknown scenario ${input.scenario}`, trace });
  process.exit(2);
}

let b;
try {
  const launched = performance.now();
  b = await openBrowser(input);
  const launchMs = Math.round(performance.now() - launched);
  log(`chromium ${b.version ?? '?'} up in ${launchMs} ms`);
  const result = await scenario(input, b);
  result.browser_version = b.version ?? null;
  result.launch_ms = launchMs;
  result.blocked = b.blocked;
  result.navigations = b.navigations;
  emit({ ok: true, result });
  await b.close();
  process.exit(0);
} catch (err) {
  let where = '';
  if (b) where = await pageSummary(b.page).catch(() => '');
  emit({ ok: false, error: `${err.message ?? err}`, where, trace, blocked: b?.blocked ?? [] });
  if (b) await b.close();
  process.exit(1);
}

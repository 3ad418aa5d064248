// Drives Debian's Chromium with playwright-core (which downloads no browser) through the browser
// test's cases, and prints ONE line of JSON on stdout: what each page saw. It asserts nothing:
// tests/e2e/test_browser.py starts every server, runs this script, and makes the assertions.
//
//   node tests/browser/drive.mjs <config.json>
//
// The config (written by the test) names the Chromium binary, a fresh user-data-dir, the token
// endpoint and its API key, the two page origins (one allowed by TOKEN_SERVER_CORS_ORIGINS, one
// not) and each case's room. Exit 0 with {"ok": true, ...} when every case ran (whatever it
// found); exit 1 with {"ok": false, "error": ...} when the browser itself could not be driven.
import { readFileSync } from 'node:fs';
import { chromium } from 'playwright-core';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));

// --headless=new here rather than playwright's `headless: true`, which would add --mute-audio;
// the background-networking switches keep Chromium from calling out of this closed network.
const ARGS = [
  '--headless=new',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--use-fake-ui-for-media-stream', // grant the microphone without asking
  '--use-fake-device-for-media-stream', // a fake microphone (a beeping tone)
  '--autoplay-policy=no-user-gesture-required', // the agent's audio plays without a click
];

/** Open `url` in a new page and collect what the page tells the console. */
async function openPage(context, url) {
  const page = await context.newPage();
  const log = [];
  page.on('console', (msg) => log.push({ type: msg.type(), text: msg.text() }));
  page.on('pageerror', (error) => log.push({ type: 'pageerror', text: String(error) }));
  page.on('requestfailed', (request) =>
    log.push({
      type: 'requestfailed',
      text: `${request.method()} ${request.url()}: ${request.failure()?.errorText}`,
    }),
  );
  await page.goto(url, { timeout: config.stepTimeoutMs });
  await page.waitForFunction(() => window.browserTest !== undefined, null, {
    timeout: config.stepTimeoutMs,
  });
  return { page, log };
}

async function runCase(context, origin, fn, args) {
  const { page, log } = await openPage(context, `${origin}/`);
  try {
    const result = await page.evaluate(
      ([name, a]) => window.browserTest[name](a),
      [fn, args],
    );
    return { origin, result, console: log };
  } finally {
    await page.close();
  }
}

const output = { ok: false };
let context = null;
try {
  context = await chromium.launchPersistentContext(config.userDataDir, {
    executablePath: config.chromium,
    headless: false, // see ARGS
    args: ARGS,
    timeout: config.stepTimeoutMs,
    handleSIGINT: true,
    handleSIGTERM: true,
  });
  output.chromiumVersion = context.browser()?.version() ?? null;

  const common = { tokenUrl: config.tokenUrl, apiKey: config.apiKey };
  // 1. the allowed origin: token, call, the agent's greeting heard and read
  output.call = await runCase(context, config.allowedOrigin, 'call', {
    ...common,
    ...config.call,
  });
  // 2a. an origin TOKEN_SERVER_CORS_ORIGINS does not list: the browser refuses the preflight
  output.refusedOrigin = await runCase(context, config.disallowedOrigin, 'askToken', {
    ...common,
    ...config.refusedOrigin,
  });
  // 2b. the allowed origin asking for an agent the endpoint does not allow: its 403 reaches the page
  output.refusedAgent = await runCase(context, config.allowedOrigin, 'askToken', {
    ...common,
    ...config.refusedAgent,
  });
  output.ok = true;
} catch (error) {
  output.error = String(error?.stack ?? error);
} finally {
  if (context) {
    try {
      await context.close();
    } catch (error) {
      output.closeError = String(error);
    }
  }
}
process.stdout.write(`${JSON.stringify(output)}\n`);
process.exitCode = output.ok ? 0 : 1;

// How long JupyterLab takes to render in headless Chromium, once per request: `make bench-spawn`'s
// browser step (bench/bench_spawn.py). One browser for the whole run, so that its own start is
// not counted; each request gets a fresh context (no cache, no cookies), as a user's first visit.
//
// Reads one JSON object per line on stdin: {"url": ".../user/NAME/lab", "token": "..."}; the
// token goes in an Authorization header on every request of the page (the single-user server
// accepts the user's API token there, as it does a browser's hub cookie). Answers one JSON line per
// request on stdout: {"seconds": from navigation to JupyterLab's launcher shown, "title": ...}, or
// {"error": ...}. Trusts the hub's certificate by TRUSTED_SPKI (chromium.mjs).
import readline from "node:readline";
import { launch, VIEWPORT } from "./chromium.mjs";

const timeoutMs = Number(process.env.LAB_TIMEOUT_MS || 60000);
const browser = await launch();
try {
  for await (const line of readline.createInterface({ input: process.stdin })) {
    if (!line.trim()) continue;
    const { url, token } = JSON.parse(line);
    const context = await browser.newContext({
      viewport: VIEWPORT,
      extraHTTPHeaders: { Authorization: `token ${token}` },
    });
    context.setDefaultTimeout(timeoutMs);
    const page = await context.newPage();
    const started = performance.now();
    let answer;
    try {
      await page.goto(url);
      // The shell, then the launcher in it: what a user sees as "JupyterLab is up".
      await page.locator("#jp-main-dock-panel").waitFor();
      await page.locator(".jp-Launcher").first().waitFor();
      answer = { seconds: (performance.now() - started) / 1000, title: await page.title() };
    } catch (error) {
      answer = { error: String(error), at: page.url() };
    } finally {
      await context.close();
    }
    console.log(JSON.stringify(answer));
  }
} finally {
  await browser.close();
}

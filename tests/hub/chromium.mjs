// Headless Chromium as every driver here launches it: the system's chromium (CHROMIUM), no
// traffic of its own off the machine, and the hub's self-signed certificate trusted by its key
// only (TRUSTED_SPKI, the base64 SHA-256 of its SubjectPublicKeyInfo; any other is refused).
import playwright from "playwright-core";

export const VIEWPORT = { width: 1000, height: 560 };

export function launchOptions() {
  return {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
      ...(process.env.TRUSTED_SPKI ? [`--ignore-certificate-errors-spki-list=${process.env.TRUSTED_SPKI}`] : []),
    ],
  };
}

export function launchPersistent(userDataDir) {
  return playwright.chromium.launchPersistentContext(userDataDir, { ...launchOptions(), viewport: VIEWPORT });
}

export function launch() {
  return playwright.chromium.launch(launchOptions());
}

/** What a driver reports when a step throws: the error, and where the page was and what it showed. */
export async function whatWentWrong(error, page) {
  const report = { error: String(error) };
  if (page) {
    report.at = page.url();
    // A page in the middle of navigating has no content to give: say so rather than throw.
    report.page = await page.content().then((html) => html.slice(0, 4000), (why) => `unreadable: ${why.message}`);
  }
  return report;
}

/** A page in a browser context of its own, with its own cookies: one more person at the hub. */
export async function newPerson(browser) {
  const context = await browser.newContext({ viewport: VIEWPORT });
  context.setDefaultTimeout(30000);
  return context.newPage();
}

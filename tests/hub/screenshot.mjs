// Opens one page in headless Chromium, waits until a selector shows, and keeps a screenshot of
// the page: TensorBoard's scalar curves for the README, say. Prints the texts of what the
// selector matched as a JSON list on stdout; the calling test makes the assertions.
//
// Usage: node screenshot.mjs <url> <screenshot.png> <css selector> [width height [close]]
//   close: a control to click before the screenshot, as a user would, to put away what stands over
//   the page (TensorBoard's settings pane, which it opens by default); the screenshot waits
//   until the control's pane has gone.
import playwright from "playwright-core";

const [url, screenshot, selector, width = "1200", height = "800", close] = process.argv.slice(2);
if (!selector) {
  console.error("usage: node screenshot.mjs URL SCREENSHOT SELECTOR [WIDTH HEIGHT [CLOSE]]");
  process.exit(2);
}

const browser = await playwright.chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  // Nothing may reach out of the machine: no updates, sync or background traffic.
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run"],
});
try {
  const page = await browser.newPage({ viewport: { width: Number(width), height: Number(height) } });
  page.setDefaultTimeout(60000);
  await page.goto(url);
  const found = page.locator(selector);
  await found.first().waitFor();
  // Charts draw after their data arrives: wait until the network is quiet, then a frame more.
  await page.waitForLoadState("networkidle");
  if (close) {
    const control = page.locator(close);
    const controlled = await control.getAttribute("aria-controls");
    await control.click();
    if (controlled) await page.locator(`#${controlled}`).waitFor({ state: "hidden" });
  }
  await page.waitForTimeout(1000);
  await page.screenshot({ path: screenshot });
  console.log(JSON.stringify(await found.allInnerTexts()));
} finally {
  await browser.close();
}

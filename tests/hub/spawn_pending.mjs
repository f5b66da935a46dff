// A spawn that waits, as the spawn-pending page shows it: the admin signs in and opens USER's
// spawn-pending page, waits until its progress log shows TEXT (the scheduler's reason, passed on
// by KubeSpawner as the pod's events), opens the log and takes a screenshot to SCREENSHOT. Prints
// what the page showed as one JSON object on stdout; the pytest makes the assertions.
//
// Usage: node spawn_pending.mjs BASE_URL SCREENSHOT ADMIN ADMIN_PASSWORD USER TEXT
// (WAIT_MS bounds the wait for TEXT, default 60000)
import { launch, newPerson, whatWentWrong } from "./chromium.mjs";
import { submitLogin } from "./hub_pages.mjs";

const [baseUrl, screenshot, admin, adminPassword, user, text] = process.argv.slice(2);
if (!text) {
  console.error("usage: node spawn_pending.mjs BASE_URL SCREENSHOT ADMIN ADMIN_PASSWORD USER TEXT");
  process.exit(2);
}
const wait = Number(process.env.WAIT_MS || 60000);

const browser = await launch();
const seen = {};
let page;
try {
  page = await newPerson(browser);
  await page.goto(`${baseUrl}/hub/login`);
  await submitLogin(page, admin, adminPassword);
  await page.goto(`${baseUrl}/hub/spawn-pending/${user}`);
  seen.url = page.url();
  // The log sits in a closed <details> until the spawn ends: attached, not visible.
  await page.locator("#progress-log .progress-log-event", { hasText: text }).first().waitFor({ state: "attached", timeout: wait });
  await page.evaluate(() => { document.querySelector("#progress-details").open = true; });
  seen.message = (await page.locator("#progress-message").innerText()).trim();
  seen.log = (await page.locator("#progress-log .progress-log-event").allInnerTexts()).map((t) => t.trim());
  await page.screenshot({ path: screenshot, fullPage: true });
} catch (error) {
  Object.assign(seen, await whatWentWrong(error, page));
} finally {
  await browser.close();
}
console.log(JSON.stringify(seen));

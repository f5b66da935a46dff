// Drives headless Chromium through the tutorial's steps against a running hub: try to sign up
// under USERNAME with another password (the native authenticator's form; refused for the admin,
// whose account the hub made), log in with PASSWORD, open the spawn form, keep a screenshot of it,
// choose a profile and start the server. Prints what it saw as one JSON object on stdout; the pytest in
// test_browser.py makes the assertions.
//
// Usage: node spawn_form.mjs <hub base URL> <screenshot.png> <user-data-dir> <username> <password> <profile slug>
import { launchPersistent, whatWentWrong } from "./chromium.mjs";
import { readProfiles, signUp, submitLogin } from "./hub_pages.mjs";

const [baseUrl, screenshot, userDataDir, username, password, profileSlug] = process.argv.slice(2);
if (!profileSlug) {
  console.error("usage: node spawn_form.mjs BASE_URL SCREENSHOT USER_DATA_DIR USERNAME PASSWORD PROFILE_SLUG");
  process.exit(2);
}

const context = await launchPersistent(userDataDir);
context.setDefaultTimeout(15000);
const page = context.pages()[0] || (await context.newPage());
const seen = {};
try {
  seen.signup = await signUp(page, baseUrl, username, "a claim on the admin's name");

  await page.goto(`${baseUrl}/hub/login`);
  await Promise.all([page.waitForURL("**/hub/spawn**"), submitLogin(page, username, password)]);
  seen.afterLogin = page.url();

  seen.profiles = await readProfiles(page);
  await page.screenshot({ path: screenshot, fullPage: true });

  await page.check(`#profile-item-${profileSlug}`);
  await Promise.all([page.waitForURL(`**/user/${username}/**`, { timeout: 30000 }), page.click("#spawn_form button[type=submit]")]);
  seen.serverUrl = page.url();
  seen.serverPage = (await page.locator("body").innerText()).trim();
} catch (error) {
  Object.assign(seen, await whatWentWrong(error, page));
} finally {
  await context.close();
}
console.log(JSON.stringify(seen));

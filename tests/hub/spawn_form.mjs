// Drives headless Chromium through the tutorial's steps against a running hub: sign up (the
// native authenticator's form), log in, open the spawn form, keep a screenshot of it, choose a
// profile and start the server. Prints what it saw as one JSON object on stdout; the pytest in
// test_browser.py makes the assertions.
//
// Usage: node spawn_form.mjs <hub base URL> <screenshot.png> <user-data-dir> <username> <password> <profile slug>
import playwright from "playwright-core";

const [baseUrl, screenshot, userDataDir, username, password, profileSlug] = process.argv.slice(2);
if (!profileSlug) {
  console.error("usage: node spawn_form.mjs BASE_URL SCREENSHOT USER_DATA_DIR USERNAME PASSWORD PROFILE_SLUG");
  process.exit(2);
}

const context = await playwright.chromium.launchPersistentContext(userDataDir, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  viewport: { width: 1000, height: 560 },
  // Nothing may reach out of the machine: no updates, sync or background traffic.
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    // The proxy's self-signed certificate, trusted by its key only (any other is refused).
    ...(process.env.TRUSTED_SPKI ? [`--ignore-certificate-errors-spki-list=${process.env.TRUSTED_SPKI}`] : []),
  ],
});
context.setDefaultTimeout(15000);
const page = context.pages()[0] || (await context.newPage());
const seen = {};
try {
  await page.goto(`${baseUrl}/hub/signup`);
  await page.fill("#username_input", username);
  await page.fill("#password_input", password);
  await page.fill("#password_confirmation_input", password);
  await page.click("#signup_submit");
  await page.waitForLoadState();
  seen.signup = (await page.locator(".alert").first().innerText()).trim();

  await page.goto(`${baseUrl}/hub/login`);
  await page.fill("#username_input", username);
  await page.fill("#password_input", password);
  await Promise.all([page.waitForURL("**/hub/spawn**"), page.click("#login_submit")]);

  const profiles = page.locator("#kubespawner-profiles-list label.profile");
  await profiles.first().waitFor();
  seen.profiles = [];
  for (const profile of await profiles.all()) {
    seen.profiles.push({
      slug: await profile.locator("input[type=radio]").getAttribute("value"),
      checked: await profile.locator("input[type=radio]").isChecked(),
      title: (await profile.locator("h3").innerText()).trim(),
      description: (await profile.locator("p").innerText()).trim(),
    });
  }
  await page.screenshot({ path: screenshot, fullPage: true });

  await page.check(`#profile-item-${profileSlug}`);
  await Promise.all([page.waitForURL(`**/user/${username}/**`, { timeout: 30000 }), page.click("#spawn_form button[type=submit]")]);
  seen.serverUrl = page.url();
  seen.serverPage = (await page.locator("body").innerText()).trim();
} catch (error) {
  seen.error = String(error);
  seen.at = page.url();
  seen.page = (await page.content()).slice(0, 4000);
} finally {
  await context.close();
}
console.log(JSON.stringify(seen));

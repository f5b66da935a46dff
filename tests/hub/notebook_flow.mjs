// The seed's notebook exercise in headless Chromium, against a hub in the cluster: a sign-up
// under the admin's name is refused (the hub made the account, with the stack's generated
// password); a user signs up; the user's login is refused until the admin, signed in with
// ADMIN_PASSWORD, authorizes them at /hub/authorize;
// the user logs in, reads the spawn form, starts PROFILE and waits until JupyterLab is loaded
// through the proxy. Screenshots of the sign-in page, the spawn form and JupyterLab go to
// SCREENSHOT_DIR (sign-in.png, spawn-form.png, jupyterlab.png). Prints what it saw as one JSON
// object on stdout; the pytest makes the assertions.
//
// Usage: node notebook_flow.mjs BASE_URL SCREENSHOT_DIR ADMIN ADMIN_PASSWORD USER PASSWORD PROFILE_SLUG
// (PASSWORD is the user's; LAB_TIMEOUT_MS bounds the wait for the server, default 600000)
import { launch, newPerson, whatWentWrong } from "./chromium.mjs";
import { readProfiles, signUp, submitLogin } from "./hub_pages.mjs";

const [baseUrl, screenshots, admin, adminPassword, user, password, profileSlug] = process.argv.slice(2);
if (!profileSlug) {
  console.error("usage: node notebook_flow.mjs BASE_URL SCREENSHOT_DIR ADMIN ADMIN_PASSWORD USER PASSWORD PROFILE_SLUG");
  process.exit(2);
}
const labTimeout = Number(process.env.LAB_TIMEOUT_MS || 600000);

const browser = await launch();
const seen = {};
let page;
const person = () => newPerson(browser);

try {
  page = await person();
  seen.adminSignup = await signUp(page, baseUrl, admin, password);
  seen.userSignup = await signUp(page, baseUrl, user, password);

  // Before the admin's approval, the user's login is refused.
  await page.goto(`${baseUrl}/hub/login`);
  await page.screenshot({ path: `${screenshots}/sign-in.png` });
  await submitLogin(page, user, password);
  seen.loginBeforeAuthorization = { url: page.url(), message: (await page.locator(".login_error").allInnerTexts()).join(" ").trim() };

  // The admin authorizes the user.
  const adminPage = await person();
  page = adminPage;
  await adminPage.goto(`${baseUrl}/hub/login`);
  await submitLogin(adminPage, admin, adminPassword);
  await adminPage.goto(`${baseUrl}/hub/authorize`);
  const row = adminPage.locator(`tr[id="${user}"]`);
  seen.authorizedBefore = (await row.locator("td").nth(2).innerText()).trim();
  await Promise.all([adminPage.waitForNavigation(), row.getByRole("button", { name: "Authorize", exact: true }).click()]);
  await adminPage.goto(`${baseUrl}/hub/authorize`);
  seen.authorizedAfter = (await adminPage.locator(`tr[id="${user}"] td`).nth(2).innerText()).trim();
  await adminPage.context().close();

  // The user logs in, reads the form and starts the profile.
  page = await person();
  await page.goto(`${baseUrl}/hub/login`);
  await Promise.all([page.waitForURL("**/hub/spawn**"), submitLogin(page, user, password)]);
  seen.profiles = await readProfiles(page);
  await page.screenshot({ path: `${screenshots}/spawn-form.png`, fullPage: true });
  await page.check(`#profile-item-${profileSlug}`);
  const started = Date.now();
  await page.click("#spawn_form button[type=submit]");
  // The spawn-pending page follows the progress and goes on to the server when it is ready.
  await page.waitForURL(`**/user/${user}/lab**`, { timeout: labTimeout });
  await page.locator("#jp-main-dock-panel").waitFor({ timeout: labTimeout });
  await page.locator(".jp-Launcher").first().waitFor({ timeout: labTimeout });
  seen.labSeconds = (Date.now() - started) / 1000;
  seen.labUrl = page.url();
  seen.labTitle = await page.title();
  await page.screenshot({ path: `${screenshots}/jupyterlab.png` });
} catch (error) {
  Object.assign(seen, await whatWentWrong(error, page));
} finally {
  await browser.close();
}
console.log(JSON.stringify(seen));

// What a team member meets at a guarded hub, in headless Chromium: the admin's name cannot be
// claimed at sign-up and the admin signs in with the stack's generated password; a short and a
// common password are refused at sign-up; a user's account is locked after wrong passwords (the
// right one refused too) until the lockout has passed; and with the admin's server still starting
// (the stand-in spawner is slow for the admin), the user's Start is answered 429 with the hub's
// message, and again once the admin's server runs (the active server limit). Prints what it saw as
// one JSON object on stdout; signin_limits's pytest makes the assertions.
//
// Usage: node signin_limits.mjs BASE_URL ADMIN ADMIN_PASSWORD USER USER_PASSWORD WRONG_LOGINS LOCKOUT_SECONDS
import { launch, newPerson, whatWentWrong } from "./chromium.mjs";
import { signUp, submitLogin } from "./hub_pages.mjs";

const [baseUrl, admin, adminPassword, user, userPassword, wrongLogins, lockoutSeconds] = process.argv.slice(2);
if (!lockoutSeconds) {
  console.error("usage: node signin_limits.mjs BASE_URL ADMIN ADMIN_PASSWORD USER USER_PASSWORD WRONG_LOGINS LOCKOUT_SECONDS");
  process.exit(2);
}

const browser = await launch();
const seen = {};
let page;
const person = () => newPerson(browser);

/** Logs in on a fresh login page; where the browser ends up and the form's error, if any. */
async function login(page, username, password) {
  await page.goto(`${baseUrl}/hub/login`);
  await submitLogin(page, username, password);
  return { url: page.url(), message: (await page.locator(".login_error").allInnerTexts()).join(" ").trim() };
}

/** Submits the spawn form with its preselected profile; the answer's status and what the page says. */
async function pressStart(page) {
  await page.goto(`${baseUrl}/hub/spawn`);
  const [response] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === "POST" && r.url().includes("/hub/spawn")),
    page.click("#spawn_form button[type=submit]"),
  ]);
  await page.waitForLoadState();
  return { status: response.status(), text: (await page.locator("body").innerText()).trim() };
}

try {
  const adminPage = await person();
  page = adminPage;
  seen.adminSignup = await signUp(adminPage, baseUrl, admin, "a claim on the admin's name");
  seen.adminLogin = await login(adminPage, admin, adminPassword);

  page = await person();
  const userPage = page;
  seen.shortPassword = await signUp(userPage, baseUrl, user, "short1");
  seen.commonPassword = await signUp(userPage, baseUrl, user, "1234567890");
  seen.userSignup = await signUp(userPage, baseUrl, user, userPassword);
  seen.beforeAuthorization = await login(userPage, user, userPassword);
  // The admin authorizes the user (/hub/authorize/<name> toggles it).
  await adminPage.goto(`${baseUrl}/hub/authorize/${user}`);

  // Wrong passwords until the account is locked; then the right one is refused too.
  seen.wrong = [];
  for (let i = 0; i < Number(wrongLogins); i++) seen.wrong.push(await login(userPage, user, `not the password ${i}`));
  const lockedAt = Date.now();
  seen.rightWhileLocked = await login(userPage, user, userPassword);
  seen.rightWhileLockedAfterSeconds = (Date.now() - lockedAt) / 1000;
  // NativeAuthenticator unlocks once more than LOCKOUT_SECONDS whole seconds have passed.
  await new Promise((resolve) => setTimeout(resolve, lockedAt + (Number(lockoutSeconds) + 1.5) * 1000 - Date.now()));
  seen.rightAfterLockout = await login(userPage, user, userPassword);

  // The admin's server starts slowly; meanwhile the user presses Start.
  await adminPage.goto(`${baseUrl}/hub/spawn`);
  await adminPage.click("#spawn_form button[type=submit]");
  await adminPage.waitForURL("**/spawn-pending/**");
  seen.whileAnotherStarts = await pressStart(userPage);
  await adminPage.waitForURL(`**/user/${admin}/**`, { timeout: 60000 });
  seen.adminServer = (await adminPage.locator("body").innerText()).trim();
  seen.whileAnotherRuns = await pressStart(userPage);
} catch (error) {
  Object.assign(seen, await whatWentWrong(error, page));
} finally {
  await browser.close();
}
console.log(JSON.stringify(seen));

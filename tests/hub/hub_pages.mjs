// The hub's pages as a user meets them: NativeAuthenticator's sign-up and login forms and
// KubeSpawner's spawn form. Shared by the drivers in this directory.

/** Signs USERNAME up; returns the message the form answers with. */
export async function signUp(page, baseUrl, username, password) {
  await page.goto(`${baseUrl}/hub/signup`);
  await page.fill("#username_input", username);
  await page.fill("#password_input", password);
  await page.fill("#password_confirmation_input", password);
  await page.click("#signup_submit");
  await page.waitForLoadState();
  return (await page.locator(".alert").first().innerText()).trim();
}

/** Fills in and submits the login form (the page must show it). */
export async function submitLogin(page, username, password) {
  await page.fill("#username_input", username);
  await page.fill("#password_input", password);
  await Promise.all([page.waitForNavigation(), page.click("#login_submit")]);
}

/** The spawn form's profiles as shown: slug, whether preselected, title and description. */
export async function readProfiles(page) {
  const profiles = page.locator("#kubespawner-profiles-list label.profile");
  await profiles.first().waitFor();
  const seen = [];
  for (const profile of await profiles.all()) {
    seen.push({
      slug: await profile.locator("input[type=radio]").getAttribute("value"),
      checked: await profile.locator("input[type=radio]").isChecked(),
      title: (await profile.locator("h3").innerText()).trim(),
      description: (await profile.locator("p").innerText()).trim(),
    });
  }
  return seen;
}

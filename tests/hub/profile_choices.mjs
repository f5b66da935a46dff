// Signs in as each user in turn (the hub's dummy authenticator in this test) and reads the spawn
// form's profiles; the last user also keeps a screenshot of the form, chooses a profile, a GPU count
// and a GPU type, and starts the server. Prints what it saw as one JSON object on stdout; the
// pytest in test_profile_choices.py makes the assertions.
//
// Usage: node profile_choices.mjs <hub base URL> <screenshot.png> <profile slug> <gpus> <gpu type> <user>...
import { launch, whatWentWrong } from "./chromium.mjs";
import { readProfiles, submitLogin } from "./hub_pages.mjs";

const [baseUrl, screenshot, profileSlug, gpus, gpuType, ...users] = process.argv.slice(2);
if (!users.length) {
  console.error("usage: node profile_choices.mjs BASE_URL SCREENSHOT PROFILE_SLUG GPUS GPU_TYPE USER...");
  process.exit(2);
}

const browser = await launch();
const seen = { profiles: {} };
let page;
try {
  for (const [index, user] of users.entries()) {
    // A context of its own per user: no cookie of the one before.
    const context = await browser.newContext({ viewport: { width: 1000, height: 600 } });
    context.setDefaultTimeout(15000);
    page = await context.newPage();
    await page.goto(`${baseUrl}/hub/login`);
    await Promise.all([page.waitForURL("**/hub/spawn**"), submitLogin(page, user, "any password")]);
    seen.profiles[user] = await readProfiles(page);
    if (index < users.length - 1) {
      await context.close();
      continue;
    }
    await page.check(`#profile-item-${profileSlug}`);
    const option = (name) => page.locator(`select[name="profile-option-${profileSlug}--${name}"]`);
    seen.gpuChoices = await option("gpus").locator("option").evaluateAll((all) => all.map((o) => o.value));
    seen.gpuTypes = await option("gpu-type").locator("option").evaluateAll((all) => all.map((o) => o.value));
    await option("gpus").selectOption(gpus);
    await option("gpu-type").selectOption(gpuType);
    await page.screenshot({ path: screenshot, fullPage: true });
    await Promise.all([page.waitForURL(`**/user/${user}/**`, { timeout: 30000 }), page.click("#spawn_form button[type=submit]")]);
    seen.serverUrl = page.url();
  }
} catch (error) {
  Object.assign(seen, await whatWentWrong(error, page));
} finally {
  await browser.close();
}
console.log(JSON.stringify(seen));

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

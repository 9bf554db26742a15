// Drives the `fsvfm serve` page in headless Debian chromium: uploads files through the page's
// file picker and reports what the page shows, as one JSON object on stdout.
// Usage: node page_test.mjs URL SCREENSHOT.png PHOTO [NO_FACE_IMAGE]
import { launch } from "./launch.mjs";

const [url, shot, photo, noFace] = process.argv.slice(2);
const browser = await launch();
const out = {};
try {
  const page = await browser.newPage({ viewport: { width: 1000, height: 900 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(url, { timeout: 30000 });
  await page.waitForFunction(() => !document.getElementById("model").textContent.includes("loading"), null, { timeout: 30000 });
  out.model = await page.textContent("#model");
  await page.setInputFiles("#file", photo);
  await page.waitForSelector(".result .summary", { timeout: 60000 });
  await page.waitForSelector(".result canvas.picture", { timeout: 30000 });
  out.summary = await page.textContent(".result .summary");
  out.verdict = await page.textContent(".result .summary .verdict");
  out.pictures = await page.locator("canvas.picture").count();
  out.heatmaps = await page.locator(".faces img").count();
  // The heat-map toggle hides and shows the strip.
  await page.uncheck("#heat");
  out.heatmaps_hidden = await page.locator(".faces").evaluate((e) => getComputedStyle(e).display === "none");
  await page.check("#heat");
  await page.screenshot({ path: shot, fullPage: true });
  if (noFace) {
    await page.setInputFiles("#file", noFace);
    await page.waitForSelector(".result .error", { timeout: 60000 });
    out.error = await page.textContent(".result .error");
  }
  out.page_errors = errors;
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));

// Opens a demo report (report.html, self-contained) in headless Debian chromium and reports what a
// reader sees, as one JSON object on stdout: the headings, how many pictures there are and how
// many decoded, the page's size, script errors; and writes a full-page screenshot.
// Usage: node report_test.mjs file:///…/report.html SCREENSHOT.png
import { launch } from "./launch.mjs";

const [url, shot] = process.argv.slice(2);
const browser = await launch();
const out = {};
try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  // Any request off the page itself (a CDN font, a remote image) would be a defect of the report.
  const requests = [];
  page.on("request", (r) => { if (!r.url().startsWith("data:") && r.url() !== url) requests.push(r.url()); });
  await page.goto(url, { timeout: 30000, waitUntil: "load" });
  out.title = await page.title();
  out.headings = await page.locator("h1, h2").allTextContents();
  const imgs = await page.locator("img").evaluateAll((els) =>
    els.map((e) => ({ alt: e.alt, ok: e.complete && e.naturalWidth > 0, w: e.naturalWidth, shown: e.getBoundingClientRect().width })));
  out.images = imgs.length;
  out.decoded = imgs.filter((i) => i.ok).length;
  out.broken = imgs.filter((i) => !i.ok).map((i) => i.alt);
  // A picture shown wider than the page would need a horizontal scroll bar.
  out.page_width = await page.evaluate(() => document.documentElement.scrollWidth);
  out.page_height = await page.evaluate(() => document.documentElement.scrollHeight);
  out.tables = await page.locator("table").count();
  await page.screenshot({ path: shot, fullPage: true });
  out.page_errors = errors;
  out.requests = requests;
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));

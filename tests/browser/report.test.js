// `loadtest --report`: a short real run against a real gateway; the page
// must show exactly the numbers of the run's JSON, load nothing from the
// network, and draw its charts.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { ARTIFACTS, launchBrowser, runLoadtest, startGateway, tempDir } from "./lib.js";

function jsonAt(obj, key) {
  return key.split(".").reduce((o, k) => (o == null ? undefined : o[k]), obj);
}

test("the HTML report of a real run shows the numbers of its JSON", { timeout: 150_000 }, async (t) => {
  const gw = await startGateway();
  t.after(() => gw.stop());
  const tmp = tempDir("ferry-report-");
  t.after(() => tmp.remove());
  const json = path.join(tmp.dir, "run.json");
  const html = path.join(tmp.dir, "run.html");
  const run = await runLoadtest(["echo", "--url", gw.ws, "--sessions", "20", "--rate", "20",
    "--duration", "4", "--json", json, "--report", html], 90_000);
  assert.equal(run.code, 0, `loadtest failed: ${run.stdout}${run.stderr}`);
  const report = JSON.parse(readFileSync(json, "utf8"));
  assert.equal(report.sessions.established, 20);
  assert.ok(report.messages.sent > 0);

  const browser = await launchBrowser();
  t.after(() => browser.close());
  const page = await browser.context.newPage();
  const requests = [];
  page.on("request", (r) => requests.push(r.url()));
  await page.goto(pathToFileURL(html).href, { waitUntil: "load" });

  // Every figure with a JSON path equals the JSON, as a number and as shown.
  const cells = await page.$$eval("[data-key]", (els) =>
    els.map((e) => ({ key: e.dataset.key, value: e.dataset.value, text: e.textContent.trim() })));
  const keys = cells.map((c) => c.key);
  for (const k of ["sessions.attempted", "sessions.established", "sessions.failed", "messages.sent",
    "messages.delivered", "messages.lost", "messages.duplicated", "messages.reordered",
    "throughput_msgs_per_s", "duration_s", "latency_us.p50", "latency_us.p90", "latency_us.p99",
    "latency_us.p999", "latency_us.max", "loadgen_cpu_percent", "scenario", "transport"]) {
    assert.ok(keys.includes(k), `the page has no ${k}`);
  }
  for (const c of cells) {
    const expected = jsonAt(report, c.key);
    if (typeof expected === "string") {
      assert.equal(c.text, expected, c.key);
    } else if (expected === null) {
      assert.equal(c.value, "null", c.key);
    } else {
      assert.equal(Number(c.value), expected, `${c.key}: data-value`);
      if (Number.isInteger(expected) && !c.key.endsWith("_s") && !c.key.includes("percent")
          && !c.key.startsWith("throughput")) {
        assert.equal(c.text, String(expected), `${c.key}: text`);
      } else {
        assert.ok(Math.abs(Number(c.text) - expected) <= Math.max(0.05, expected * 1e-3), `${c.key}: ${c.text} vs ${expected}`);
      }
    }
  }
  assert.equal(await page.getAttribute("#verdict", "data-passed"), "true");
  assert.equal(await page.textContent("#verdict"), "PASSED");

  // The charts: four inline SVGs with lines in them.
  assert.equal(await page.locator("figure svg").count(), 4);
  for (const id of ["latency-percentiles", "timeline-throughput", "timeline-latency"]) {
    assert.ok(await page.locator(`#${id} svg polyline`).count() > 0, `${id} draws a line`);
  }
  // The timeline accounts for every message, and marks the connect wave.
  const seconds = await page.$$eval("#seconds tr", (rows) => rows.slice(1).map((r) => ({
    sent: Number(r.querySelector("[data-col=sent]").textContent),
    received: Number(r.querySelector("[data-col=received]").textContent),
  })));
  assert.ok(seconds.length >= 4, `at least the 4 s of traffic: ${seconds.length}`);
  assert.equal(seconds.reduce((a, s) => a + s.sent, 0), report.messages.sent);
  assert.equal(seconds.reduce((a, s) => a + s.received, 0),
    report.messages.delivered + report.messages.duplicated);
  const marks = await page.$$eval("#marks tr[data-mark]", (rows) => rows.map((r) => r.dataset.mark));
  assert.ok(marks.some((m) => m.startsWith("connect wave: 20 sessions")), marks.join(", "));
  assert.ok(marks.includes("measured window opens") && marks.includes("measured window closes"));

  // Self-contained: the only request is the file itself.
  assert.deepEqual(requests.filter((u) => !u.startsWith("file:")), []);

  await page.locator("details").evaluate((d) => { d.open = true; });
  await page.screenshot({ path: path.join(ARTIFACTS, "report.png"), fullPage: true });
});

// The live ops dashboard of a real gateway under load: the page shows what
// /metrics says (sessions equal the sessions the load tester holds open),
// refreshes by itself, and needs no API key while the admin API still does.
import { test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { ARTIFACTS, eventually, launchBrowser, metricSum, runLoadtest, startGateway } from "./lib.js";

const SESSIONS = 30;

test("the dashboard of a gateway under load matches /metrics", { timeout: 150_000 }, async (t) => {
  const gw = await startGateway({ workers: 2 });
  t.after(() => gw.stop());
  const metrics = async () => (await fetch(`${gw.ops}/metrics`)).text();

  // Read-only endpoints are open; the admin API stays behind the key.
  const stats = await fetch(`${gw.ops}/v1/stats`);
  assert.equal(stats.status, 200);
  assert.equal((await stats.json()).phase, "running");
  const publish = await fetch(`${gw.ops}/v1/publish`, { method: "POST", body: "{}" });
  assert.equal(publish.status, 401);

  const load = runLoadtest(["echo", "--url", gw.ws, "--sessions", String(SESSIONS), "--rate", "20",
    "--duration", "20", "--drain-timeout", "3"], 90_000);
  t.after(() => load.catch(() => {}));

  const browser = await launchBrowser();
  t.after(() => browser.close());
  const page = await browser.context.newPage();
  const external = [];
  page.on("request", (r) => { if (!r.url().startsWith(gw.ops)) external.push(r.url()); });
  await page.goto(`${gw.ops}/dashboard`, { waitUntil: "load" });
  const dom = (key) => page.textContent(`[data-key="${key}"]`);
  const updates = async () => Number(await page.getAttribute("body", "data-updates") || 0);

  // Every session of the load tester is attached, on the page and in /metrics.
  await eventually(async () => Number(await dom("sessions.attached")) === SESSIONS
    && metricSum(await metrics(), "ferry_sessions", { state: "attached" }) === SESSIONS,
  30_000, "all sessions attached");
  // 30 sessions × 20 msg/s = 600 publishes/s offered; the rate is over the
  // last 5 s, so it reaches half of that once the traffic fills the window
  // (a debug build on a shared machine may lag, but not by half).
  await eventually(async () => Number(await dom("rates.messages_in_per_s")) > 300
    && Number(await dom("rates.messages_out_per_s")) > 300, 20_000, "messages flowing at the offered rate");

  // One consistent look: /metrics before, a page refresh fetched after it,
  // /metrics after. Gauges are steady under this load; counters only grow.
  const before = await metrics();
  const seen = await updates();
  await eventually(async () => (await updates()) >= seen + 2, 10_000, "two more refreshes");
  const shown = {
    attached: Number(await dom("sessions.attached")),
    detached: Number(await dom("sessions.detached")),
    connections: Number(await dom("connections")),
    publishes: Number(await dom("totals.publishes")),
    sent: Number(await dom("totals.messages_sent")),
    inRate: Number(await dom("rates.messages_in_per_s")),
    outRate: Number(await dom("rates.messages_out_per_s")),
    ws: Number(await dom("transports.ws")),
    rss: await dom("memory.process_rss_bytes"),
  };
  const workers = await page.$$eval("#workers tbody tr", (rows) => rows.map((r) => ({
    worker: r.dataset.worker,
    attached: Number(r.querySelector("[data-col=sessions_attached]").textContent),
    connections: Number(r.querySelector("[data-col=connections]").textContent),
  })));
  const after = await metrics();

  assert.equal(shown.attached, SESSIONS);
  assert.equal(shown.attached, metricSum(after, "ferry_sessions", { state: "attached" }));
  assert.equal(shown.detached, metricSum(after, "ferry_sessions", { state: "detached" }));
  assert.equal(shown.connections, SESSIONS);
  assert.equal(shown.connections, metricSum(after, "ferry_worker_connections"));
  assert.equal(shown.ws, metricSum(after, "ferry_connections", { transport: "ws" }));
  assert.deepEqual(workers.map((w) => w.worker), ["0", "1"]);
  for (const w of workers) {
    assert.equal(w.attached, metricSum(after, "ferry_sessions", { state: "attached", worker: w.worker }));
    assert.equal(w.connections, metricSum(after, "ferry_worker_connections", { worker: w.worker }));
  }
  assert.equal(workers.reduce((a, w) => a + w.attached, 0), SESSIONS);
  for (const [key, name] of [["publishes", "ferry_publishes_total"], ["sent", "ferry_messages_sent_total"]]) {
    const lo = metricSum(before, name);
    const hi = metricSum(after, name);
    assert.ok(lo <= shown[key] && shown[key] <= hi, `${name}: ${lo} <= ${shown[key]} <= ${hi}`);
    assert.ok(shown[key] > 0, `${name} moved`);
  }
  // Never more than offered (give or take one worker flush in the window).
  assert.ok(shown.inRate > 0 && shown.inRate < 900, `messages in/s ${shown.inRate}`);
  assert.ok(shown.outRate > 0 && shown.outRate < 900, `messages out/s ${shown.outRate}`);
  assert.match(shown.rss, /^\d+\.\d MiB$/);
  assert.deepEqual(external, [], "the dashboard loads nothing from elsewhere");
  await page.screenshot({ path: path.join(ARTIFACTS, "dashboard.png"), fullPage: true });

  const run = await load;
  assert.equal(run.code, 0, `loadtest failed: ${run.stdout}${run.stderr}`);
  // The sessions closed: the page follows within a few refreshes.
  await eventually(async () => Number(await dom("connections")) === 0, 15_000, "connections back to 0");
});

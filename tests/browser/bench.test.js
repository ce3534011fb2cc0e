// bench/report.py --html: the page of a compare.sh run draws one bar per
// server and metric with the run's figures, and marks Ferry's ratio to
// each peer. Runs on a small made-up run directory (a real compare.sh run
// takes fifteen minutes).
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { ARTIFACTS, ROOT, launchBrowser, tempDir } from "./lib.js";

function run(scenario, throughput, p99, cpu, { rss = null, lost = 0 } = {}) {
  return {
    scenario, transport: "ws", sessions: { attempted: 10, established: 10, failed: 0 },
    messages: { sent: 100, delivered: 100 - lost, lost, duplicated: 0, reordered: 0 },
    throughput_msgs_per_s: throughput,
    latency_us: p99 === null ? null : { p50: p99 / 4, p90: p99 / 2, p99, p999: p99 * 2, max: p99 * 3 },
    errors: {}, gateway_rss_bytes_per_session: rss, server_cpu_us_per_msg: cpu,
    loadgen_cpu_percent: 50, duration_s: 10,
  };
}

test("the compare.sh page shows every server's figure and Ferry's ratios", { timeout: 60_000 }, async (t) => {
  const tmp = tempDir("ferry-bench-page-");
  t.after(() => tmp.remove());
  const dir = path.join(tmp.dir, "2026-01-01T000000Z");
  spawnSync("mkdir", ["-p", dir]);
  const runs = {
    "ferry-ws.fixed": run("echo", 10000, 3965, 6.3),
    "ferry-quic.fixed": run("echo", 9990, 175616, 6.9),
    "baseline-ws-4k.fixed": run("raw", 10000, 4280, 1.7),
    "node-ws.fixed": run("raw", 9999.5, 8120, 2.4, { lost: 1 }),
    "ferry-ws.idle": run("idle", 0, null, null, { rss: 8785 }),
    "baseline-ws-4k.idle": run("raw-idle", 0, null, null, { rss: 7001 }),
  };
  for (const [name, r] of Object.entries(runs)) {
    writeFileSync(path.join(dir, `${name}.json`), JSON.stringify(r));
    writeFileSync(path.join(dir, `${name}.json.load`), "1.00\n");
  }
  const html = path.join(tmp.dir, "page.html");
  const py = spawnSync("python3", [path.join(ROOT, "bench/report.py"), "--html", html, dir],
    { encoding: "utf8", timeout: 30_000 });
  assert.equal(py.status, 0, py.stderr);
  assert.match(py.stdout, /## Summary/, "the Markdown tables still go to stdout");

  const browser = await launchBrowser();
  t.after(() => browser.close());
  const page = await browser.context.newPage();
  const requests = [];
  page.on("request", (r) => requests.push(r.url()));
  await page.goto(pathToFileURL(html).href);

  const bars = async (metric) => page.$$eval(`figure[data-metric="${metric}"] rect.bar`, (rects) =>
    Object.fromEntries(rects.map((r) => [r.dataset.server, Number(r.dataset.value)])));
  assert.deepEqual(await bars("p99"), {
    "ferry-ws": 3965, "ferry-quic": 175616, "baseline-ws-4k": 4280, "node-ws": 8120,
  });
  assert.deepEqual(await bars("idle"), { "ferry-ws": 8785, "baseline-ws-4k": 7001 });
  assert.deepEqual(await bars("fixedcpu"), {
    "ferry-ws": 6.3, "ferry-quic": 6.9, "baseline-ws-4k": 1.7, "node-ws": 2.4,
  });
  // Ferry's ratio to each peer, on the peer's bar.
  const ratios = await page.$$eval('figure[data-metric="p99"] text.ratio', (ts) =>
    ts.map((t) => ({ ratios: t.dataset.ratios, text: t.textContent })));
  assert.equal(ratios.length, 2, "one ratio line per peer");
  const parsed = Object.fromEntries(ratios[0].ratios.split(";").map((kv) => kv.split("=")));
  assert.ok(Math.abs(Number(parsed["ferry-ws"]) - 3965 / 4280) < 1e-9);
  assert.ok(Math.abs(Number(parsed["ferry-quic"]) - 175616 / 4280) < 1e-9);
  assert.match(ratios[0].text, /Ferry WS = 0\.93× · Ferry QUIC = 41\.03×/);
  // A run whose checks failed is marked on its bar.
  const failed = await page.$$eval('figure[data-metric="p99"] text.value', (ts) => ts.map((t) => t.textContent));
  assert.ok(failed.includes("8,120 (checks FAILED)"), failed.join(" | "));
  assert.match(await page.textContent("#markdown"), /## Ferry ÷ peer/);
  assert.deepEqual(requests.filter((u) => !u.startsWith("file:")), []);
  await page.screenshot({ path: path.join(ARTIFACTS, "bench.png"), fullPage: true });
});

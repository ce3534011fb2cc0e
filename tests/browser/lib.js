// What the browser tests share: the binaries cargo built, a real gateway
// on free loopback ports, the load tester, and Debian's Chromium driven by
// playwright-core (never a browser download). Every wait is bounded.
import { spawn } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(here, "..", "..");
export const GATEWAY = process.env.FERRY_GATEWAY || path.join(ROOT, "target/debug/gateway");
export const LOADTEST = process.env.FERRY_LOADTEST || path.join(ROOT, "target/debug/loadtest");
export const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
export const ARTIFACTS = process.env.ARTIFACTS_DIR || path.join(here, "artifacts");
mkdirSync(ARTIFACTS, { recursive: true });

/** A fresh temporary directory, removed by the returned function. */
export function tempDir(prefix) {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Resolves with the first line of `stream` that matches `pattern`. */
function waitLine(child, pattern, ms, what) {
  return new Promise((resolve, reject) => {
    let seen = "";
    const timer = setTimeout(() => reject(new Error(`${what}: no line /${pattern.source}/ in ${ms} ms; got: ${seen}`)), ms);
    child.stdout.on("data", (chunk) => {
      seen += chunk.toString();
      const line = seen.split("\n").find((l) => pattern.test(l));
      if (line) {
        clearTimeout(timer);
        resolve(line);
      }
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited (${code}) before it was ready: ${seen}`));
    });
  });
}

/** Starts a gateway on free loopback ports; resolves once it is ready. */
export async function startGateway({ workers = 2, env = {} } = {}) {
  const tmp = tempDir("ferry-browser-gw-");
  const args = ["--workers", String(workers), "--ws", "127.0.0.1:0", "--quic", "127.0.0.1:0",
    "--ops", "127.0.0.1:0", "--data-dir", path.join(tmp.dir, "data"), "--drain-timeout", "1s"];
  const child = spawn(GATEWAY, args, {
    env: { ...process.env, FERRY_LOG_LEVEL: "warn", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (c) => { stderr = (stderr + c.toString()).slice(-4000); });
  const line = await waitLine(child, /^ferry gateway ready:/, 30_000, "gateway");
  const field = (k) => (line.match(new RegExp(`\\b${k}=(\\S+)`)) || [])[1];
  const gw = {
    ws: `ws://${field("ws")}/ws`,
    ops: `http://${field("ops")}`,
    pid: Number(field("pid")),
    stderr: () => stderr,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once("exit", r));
        child.kill("SIGTERM");
        const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
        await exited;
        clearTimeout(timer);
      }
      tmp.remove();
    },
  };
  return gw;
}

/** Runs the load tester; resolves with { code, stdout, stderr }. */
export function runLoadtest(args, ms = 60_000) {
  return new Promise((resolve, reject) => {
    const child = spawn(LOADTEST, args, { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c) => { stdout += c.toString(); });
    child.stderr.on("data", (c) => { stderr += c.toString(); });
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`loadtest did not finish within ${ms} ms: ${stdout}${stderr}`));
    }, ms);
    child.on("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/**
 * Debian's Chromium, headless, with a fresh profile; resolves with a
 * browser context and a close() that removes the profile.
 */
export async function launchBrowser() {
  const profile = tempDir("ferry-browser-profile-");
  const context = await chromium.launchPersistentContext(profile.dir, {
    executablePath: CHROMIUM,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    viewport: { width: 1100, height: 900 },
    timeout: 30_000,
  });
  context.setDefaultTimeout(15_000);
  return {
    context,
    async close() {
      await context.close();
      profile.remove();
    },
  };
}

/** Sums a metric of a Prometheus text page over the label sets that `match`. */
export function metricSum(text, name, match = {}) {
  let sum = 0;
  let found = false;
  for (const line of text.split("\n")) {
    if (!line.startsWith(name) || line.startsWith("#")) continue;
    const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+(\S+)/);
    if (!m || m[1] !== name) continue;
    const labels = Object.fromEntries([...(m[3] || "").matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1], l[2]]));
    if (Object.entries(match).every(([k, v]) => labels[k] === v)) {
      sum += Number(m[4]);
      found = true;
    }
  }
  return found ? sum : undefined;
}

/** Polls `check` every 200 ms until it returns a truthy value, at most `ms`. */
export async function eventually(check, ms, what) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    last = await check();
    if (last) return last;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${what}: not true within ${ms} ms (last: ${JSON.stringify(last)})`);
}

// Starting and stopping real gateway processes (the binary cargo built),
// every listener on 127.0.0.1 port 0. Mirrors tests/src/harness.rs.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, existsSync, openSync, readFileSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';

const repoRoot = resolve(fileURLToPath(new URL('../../../../', import.meta.url)));

/** The gateway binary: FERRY_GATEWAY_BIN, else the workspace's target/debug/gateway. */
export function gatewayBin() {
  const target = process.env.CARGO_TARGET_DIR ? resolve(repoRoot, process.env.CARGO_TARGET_DIR) : join(repoRoot, 'target');
  const bin = process.env.FERRY_GATEWAY_BIN ?? join(target, 'debug', 'gateway');
  if (!existsSync(bin)) throw new Error(`no gateway binary at ${bin}: run \`cargo build -p gateway\` (or set FERRY_GATEWAY_BIN)`);
  return bin;
}

// Gateways outlive nothing: killed when this test process ends, however it ends.
const children = new Set();
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => {
    for (const c of children) c.kill('SIGKILL');
    process.exit(130);
  });
}

/** A fresh temporary directory. */
export function tempDir(prefix = 'ferry-ts-') {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** Writes a gateway configuration file and returns its path. */
export function writeConfig(dir, toml) {
  const path = join(dir, 'gateway.toml');
  writeFileSync(path, toml);
  return path;
}

/** `gateway token ...`: a development token. */
export function mintToken(configPath, { sub, subscribe = [], publish = [], ttl = '1h' }) {
  const args = ['token', '--config', configPath, '--sub', sub, '--ttl', ttl];
  for (const p of subscribe) args.push('--subscribe', p);
  for (const p of publish) args.push('--publish', p);
  return execFileSync(gatewayBin(), args, { encoding: 'utf8', timeout: 10_000 }).trim();
}

/**
 * Starts a gateway and waits (at most 20 s) for its ready line.
 * Options: `config` (a file), `dataDir` (shared for a takeover), `takeover`,
 * `env`, `apiKey` (the ops API key), `workers`.
 */
export async function startGateway(options = {}) {
  const dataDir = options.dataDir ?? tempDir('ferry-ts-data-');
  const logPath = join(tempDir('ferry-ts-log-'), 'gateway.log');
  const args = [
    '--ws', '127.0.0.1:0', '--ops', '127.0.0.1:0', '--quic', '127.0.0.1:0',
    '--data-dir', dataDir, '--workers', String(options.workers ?? 2),
  ];
  if (options.config) args.push('--config', options.config);
  if (options.takeover) args.push('--takeover');
  // The gateway reads every FERRY_* variable as configuration (and refuses
  // unknown ones): the developer's and the test runner's must not leak in.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('FERRY_')));
  Object.assign(env, { RUST_LOG: 'info' }, options.env);
  if (options.apiKey) env.FERRY_OPS_API_KEY = options.apiKey;
  const logFd = openSync(logPath, 'w');
  const child = spawn(gatewayBin(), args, { env, stdio: ['ignore', 'pipe', logFd] });
  closeSync(logFd);
  children.add(child);
  const exited = new Promise((r) => child.once('exit', (code, signal) => {
    children.delete(child);
    r({ code, signal });
  }));
  const ready = await new Promise((resolveReady, reject) => {
    const timer = setTimeout(() => reject(new Error(`gateway not ready in 20 s; log:\n${readLog(logPath)}`)), 20_000);
    const lines = createInterface({ input: child.stdout });
    lines.on('line', (line) => {
      const rest = line.startsWith('ferry gateway ready: ') ? line.slice('ferry gateway ready: '.length) : null;
      if (rest === null) return;
      clearTimeout(timer);
      resolveReady(Object.fromEntries(rest.split(/\s+/).map((kv) => kv.split('=', 2))));
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`gateway exited (${code}) before ready; log:\n${readLog(logPath)}`));
    });
  });
  return {
    child,
    dataDir,
    ready,
    wsUrl: `ws://${ready.ws}/ws`,
    wsPort: Number(ready.ws.split(':').pop()),
    opsUrl: `http://${ready.ops}`,
    exited,
    log: () => readLog(logPath),
    /** Kills the process (SIGKILL unless told) and removes its files. */
    async stop({ keepDataDir = false, signal = 'SIGKILL' } = {}) {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
      if (!keepDataDir && !options.dataDir) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

function readLog(path) {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

/** POSTs JSON to the ops API. */
export async function opsPost(gateway, path, body, apiKey) {
  const res = await fetch(gateway.opsUrl + path, {
    method: 'POST',
    headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${path}: ${res.status} ${text}`);
  return JSON.parse(text);
}

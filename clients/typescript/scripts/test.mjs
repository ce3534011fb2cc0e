// Runs the test suites with node --test, one file at a time. Node 20 has a
// WebSocket only behind --experimental-websocket (Node 22+ by default), so
// the flag is added where it is needed. Arguments: test directories/files
// (default: test/unit/ test/e2e/).
import { spawnSync } from 'node:child_process';

const major = Number(process.versions.node.split('.')[0]);
const flags = major < 22 ? ['--experimental-websocket'] : [];
const targets = process.argv.slice(2);
const args = [...flags, '--test', '--test-concurrency=1', '--test-timeout=180000', ...(targets.length ? targets : ['test/unit/', 'test/e2e/'])];
const result = spawnSync(process.execPath, args, { stdio: 'inherit' });
process.exit(result.status ?? 1);

// Bundle size of the SDK as a page would ship it: one minified ESM file
// (esbuild), raw and gzipped. Prints one line; writes artifacts/bundle/.
import { build } from 'esbuild';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
mkdirSync(root + 'artifacts/bundle', { recursive: true });
const outfile = root + 'artifacts/bundle/ferry.min.js';
await build({
  entryPoints: [root + 'src/index.ts'],
  bundle: true,
  minify: true,
  format: 'esm',
  target: 'es2022',
  outfile,
  logLevel: 'warning',
});
const code = readFileSync(outfile);
const gz = gzipSync(code, { level: 9 });
const result = { minified_bytes: code.length, gzipped_bytes: gz.length };
writeFileSync(root + 'artifacts/bundle/size.json', JSON.stringify(result, null, 2) + '\n');
console.log(`bundle: ${code.length} bytes minified, ${gz.length} bytes gzipped (${(gz.length / 1024).toFixed(1)} KiB)`);

// Headless Chromium from Debian (no browser download), driven by
// playwright-core, with a fresh profile per launch.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium';

const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Launches Chromium; `close()` removes the profile too. */
export async function launchBrowser() {
  const profile = mkdtempSync(join(tmpdir(), 'ferry-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ARGS,
    viewport: { width: 900, height: 700 },
    timeout: 30_000,
  });
  return {
    context,
    async newPage(url) {
      const page = await context.newPage();
      page.on('pageerror', (e) => console.error('[page error]', e.message));
      page.on('console', (m) => {
        if (m.type() === 'error' || process.env.FERRY_PAGE_LOG) console.error(`[page ${m.type()}]`, m.text());
      });
      if (url) await page.goto(url);
      return page;
    },
    async close() {
      await context.close().catch(() => {});
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

// A gateway upgrade (`gateway --takeover`, docs/upgrade.md) while one page
// publishes and another streams: GOAWAY 502, resume on the new process,
// zero loss, no duplicate, every publish acknowledged once.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { launchBrowser } from '../support/browser.mjs';
import { startGateway } from '../support/gateway.mjs';
import { startStaticServer } from '../support/static-server.mjs';
import { openClient, subscribe, waitReceived, startPublishing, eventNames, range } from '../support/pages.mjs';

let web, browser;
const gateways = [];

before(async () => {
  web = await startStaticServer();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await web?.close();
  // The new process first: the old one owns (and removes) the data dir.
  for (const g of gateways.reverse()) await g.stop();
});

test('upgrade with --takeover while a page streams: zero loss', { timeout: 120_000 }, async () => {
  const old = await startGateway();
  gateways.push(old);
  const sub = await openClient(browser, web.url, old.wsUrl);
  const pub = await openClient(browser, web.url, old.wsUrl);
  await subscribe(sub, 'chat:upgrade');
  const N = 600;
  await startPublishing(pub, 'chat:upgrade', N, 5);
  await waitReceived(sub, 'chat:upgrade', 50);

  const next = await startGateway({ dataDir: old.dataDir, takeover: true });
  gateways.push(next);
  assert.equal(next.wsUrl, old.wsUrl, 'the new process serves the same address');
  const exit = await Promise.race([old.exited, sleep(30_000).then(() => 'timeout')]);
  assert.deepEqual(exit, { code: 0, signal: null }, 'the old process exits cleanly');

  const summary = await pub.evaluate(() => window.publishDone);
  assert.deepEqual(summary, { ok: N, failed: [] }, 'every publish acknowledged');
  await waitReceived(sub, 'chat:upgrade', N, 30_000);
  await sleep(300);
  const got = await sub.evaluate(() => window.received['chat:upgrade']);
  assert.deepEqual(got, range(N), 'every message once, in order, across the upgrade');
  for (const page of [sub, pub]) {
    const events = await page.evaluate(() => window.events);
    const goaway = events.find(([e]) => e === 'goaway');
    assert.ok(goaway, 'GOAWAY reached the page');
    assert.equal(JSON.parse(goaway[1]).code, 502);
    const names = await eventNames(page);
    assert.ok(names.indexOf('resumed') > names.indexOf('goaway'), names.join(','));
    assert.ok(!names.includes('gap'), names.join(','));
  }
  assert.match(next.log(), /took over from the previous process/);
  // The new process carries on.
  await pub.evaluate(() => window.client.publish('chat:upgrade', 'after'));
  assert.equal((await waitReceived(sub, 'chat:upgrade', N + 1)).at(-1), 'after');
});

// Real headless Chromium against a real gateway: two pages publish and
// subscribe; connections are cut under them and they resume with no loss;
// offline / hidden pauses and resumes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { launchBrowser } from '../support/browser.mjs';
import { startGateway, opsPost } from '../support/gateway.mjs';
import { startStaticServer } from '../support/static-server.mjs';
import { startProxy } from '../support/proxy.mjs';
import { openClient, subscribe, waitReceived, startPublishing, eventNames, range } from '../support/pages.mjs';

const API_KEY = 'ts-sdk-test-api-key-0123456789';
let gateway, web, browser;

before(async () => {
  gateway = await startGateway({ apiKey: API_KEY });
  web = await startStaticServer();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await web?.close();
  await gateway?.stop();
});

test('publish and subscribe between two pages', { timeout: 60_000 }, async () => {
  const alice = await openClient(browser, web.url, gateway.wsUrl);
  const bob = await openClient(browser, web.url, gateway.wsUrl);
  await subscribe(alice, 'chat:pair');
  await subscribe(bob, 'chat:pair');
  const ack = await alice.evaluate(() => window.client.publish('chat:pair', 'hello bob'));
  assert.deepEqual(ack, { channel: 'chat:pair', clientSeq: 1 });
  await bob.evaluate(() => window.client.publish('chat:pair', 'hello alice'));
  const atBob = await waitReceived(bob, 'chat:pair', 2);
  const atAlice = await waitReceived(alice, 'chat:pair', 2);
  assert.deepEqual(atBob, atAlice, 'one order per channel for every subscriber');
  assert.deepEqual(new Set(atBob), new Set(['hello bob', 'hello alice']));
  // A refused request is a typed error: an invalid channel never leaves the page.
  const err = await alice.evaluate(() => window.client.publish('no spaces', 'x').catch((e) => e.name));
  assert.equal(err, 'InvalidArgumentError');
  await alice.close();
  await bob.close();
});

test('connections cut three times while a page streams: resumed, nothing lost or duplicated', { timeout: 90_000 }, async () => {
  const proxy = await startProxy(gateway.wsPort);
  try {
    const sub = await openClient(browser, web.url, proxy.url);
    const pub = await openClient(browser, web.url, proxy.url);
    await subscribe(sub, 'chat:cut');
    const N = 400;
    await startPublishing(pub, 'chat:cut', N, 5);
    for (let cut = 0; cut < 3; cut++) {
      await sleep(400);
      const n = proxy.cutAll();
      assert.ok(n >= 1, 'a connection was cut');
      // Wait until both pages are back before the next cut (bounded).
      for (const page of [sub, pub]) {
        await page.waitForFunction((k) => window.events.filter(([e]) => e === 'resumed').length >= k, cut + 1, { timeout: 15_000 });
      }
    }
    const summary = await pub.evaluate(() => window.publishDone);
    assert.deepEqual(summary, { ok: N, failed: [] }, 'every publish acknowledged exactly once');
    const got = await waitReceived(sub, 'chat:cut', N);
    await sleep(300); // a duplicate would arrive now
    const final = await sub.evaluate(() => window.received['chat:cut']);
    assert.deepEqual(final, range(N), 'every message once, in order');
    for (const page of [sub, pub]) {
      const names = await eventNames(page);
      assert.equal(names.filter((e) => e === 'disconnected').length, 3, names.join(','));
      assert.equal(names.filter((e) => e === 'resumed').length, 3, names.join(','));
      assert.ok(!names.includes('gap'), 'no gap');
    }
    const stats = await sub.evaluate(() => window.client.stats());
    assert.equal(stats.messagesReceived, N);
    assert.equal(got.length >= N, true);
    await sub.close();
    await pub.close();
  } finally {
    await proxy.close();
  }
});

test('offline pauses the connection; online resumes it and delivers what was published meanwhile', { timeout: 60_000 }, async () => {
  const page = await openClient(browser, web.url, gateway.wsUrl);
  await subscribe(page, 'news:offline');
  await opsPost(gateway, '/v1/publish', { channel: 'news:offline', payload: 'before' }, API_KEY);
  await waitReceived(page, 'news:offline', 1);
  await browser.context.setOffline(true);
  await page.waitForFunction(() => window.client.state === 'paused', null, { timeout: 10_000 });
  for (let i = 1; i <= 20; i++) {
    await opsPost(gateway, '/v1/publish', { channel: 'news:offline', payload: `while offline ${i}` }, API_KEY);
  }
  await sleep(500);
  assert.equal((await page.evaluate(() => window.received['news:offline'].length)), 1, 'nothing arrives while offline');
  assert.equal(await page.evaluate(() => window.client.state), 'paused', 'no reconnect attempt while offline');
  await browser.context.setOffline(false);
  const got = await waitReceived(page, 'news:offline', 21);
  assert.deepEqual(got, ['before', ...Array.from({ length: 20 }, (_, i) => `while offline ${i + 1}`)]);
  const names = await eventNames(page);
  assert.deepEqual(names.slice(-4), ['disconnected', 'connecting', 'connected', 'resumed']);
  await page.close();
});

test('a page hidden longer than pauseWhenHiddenMs disconnects; visible again, it resumes', { timeout: 60_000 }, async () => {
  const page = await openClient(browser, web.url, gateway.wsUrl, { pauseWhenHiddenMs: 300 });
  await subscribe(page, 'news:hidden');
  const setVisibility = (state) =>
    page.evaluate((state) => {
      Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => state });
      document.dispatchEvent(new Event('visibilitychange'));
    }, state);
  await setVisibility('hidden');
  await page.waitForFunction(() => window.client.state === 'paused', null, { timeout: 5_000 });
  await opsPost(gateway, '/v1/publish', { channel: 'news:hidden', payload: 'while hidden' }, API_KEY);
  await setVisibility('visible');
  assert.deepEqual(await waitReceived(page, 'news:hidden', 1), ['while hidden']);
  assert.ok((await eventNames(page)).includes('resumed'));
  await page.close();
});

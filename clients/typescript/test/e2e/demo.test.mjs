// The demo chat page in Chromium: live messages between two pages, the
// connection state, and the gap banner after the gateway lost the session
// (a restart behind a proxy: the resume gets NewSessionExpired). The
// screenshot is saved to artifacts/ and its pixels are checked.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { launchBrowser } from '../support/browser.mjs';
import { startGateway, opsPost } from '../support/gateway.mjs';
import { startStaticServer } from '../support/static-server.mjs';
import { startProxy } from '../support/proxy.mjs';

const ARTIFACTS = fileURLToPath(new URL('../../artifacts/', import.meta.url));
const API_KEY = 'ts-sdk-demo-api-key-0123456789';
let web, browser, proxy;
const gateways = [];

before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  gateways.push(await startGateway({ apiKey: API_KEY }));
  web = await startStaticServer();
  browser = await launchBrowser();
  proxy = await startProxy(gateways[0].wsPort);
});

after(async () => {
  await browser?.close();
  await web?.close();
  await proxy?.close();
  for (const g of gateways) await g.stop();
});

const demoUrl = (ws, name) => `${web.url}/demo/index.html?ws=${encodeURIComponent(ws)}&channel=chat:demo&name=${name}`;

async function say(page, text) {
  await page.fill('#text', text);
  await page.press('#text', 'Enter');
}

/** Fraction of the pixels of `box` in the PNG whose colour is within `tol` of `rgb` (decoded by the browser). */
async function colourShare(page, png, box, rgb, tol = 24) {
  return page.evaluate(
    async ({ b64, box, rgb, tol }) => {
      const img = new Image();
      img.src = `data:image/png;base64,${b64}`;
      await img.decode();
      const canvas = document.createElement('canvas');
      canvas.width = img.width;
      canvas.height = img.height;
      const ctx = canvas.getContext('2d');
      ctx.drawImage(img, 0, 0);
      const { data } = ctx.getImageData(Math.round(box.x), Math.round(box.y), Math.round(box.width), Math.round(box.height));
      let hits = 0;
      for (let i = 0; i < data.length; i += 4) {
        if (Math.abs(data[i] - rgb[0]) <= tol && Math.abs(data[i + 1] - rgb[1]) <= tol && Math.abs(data[i + 2] - rgb[2]) <= tol) hits++;
      }
      return hits / (data.length / 4);
    },
    { b64: png.toString('base64'), box, rgb, tol },
  );
}

test('demo page: live chat, connection state, gap banner; screenshot checked', { timeout: 150_000 }, async () => {
  const alice = await browser.newPage(demoUrl(proxy.url, 'alice'));
  const bob = await browser.newPage(demoUrl(gateways[0].wsUrl, 'bob'));
  for (const p of [alice, bob]) {
    await p.waitForFunction(() => document.getElementById('state').dataset.state === 'connected', null, { timeout: 15_000 });
  }
  assert.equal(await alice.isHidden('#gap-banner'), true, 'no banner while nothing was lost');
  await say(alice, 'hi bob');
  await bob.waitForFunction(() => window.demo.received.length >= 1, null, { timeout: 10_000 });
  await say(bob, 'hello alice, the ferry leaves at noon');
  await alice.waitForFunction(() => window.demo.received.length >= 2, null, { timeout: 10_000 });
  assert.deepEqual(
    await bob.evaluate(() => window.demo.received.map((m) => `${m.who}: ${m.text}`)),
    ['alice: hi bob', 'bob: hello alice, the ferry leaves at noon'],
  );
  const before = await alice.screenshot({ fullPage: true });
  writeFileSync(ARTIFACTS + 'demo-connected.png', before);

  // The gateway dies behind alice's proxy; a new one knows nothing of her session.
  proxy.refuse(true);
  proxy.cutAll();
  await gateways[0].stop();
  await alice.waitForFunction(() => document.getElementById('state').dataset.state === 'reconnecting', null, { timeout: 10_000 });
  const fresh = await startGateway({ apiKey: API_KEY });
  gateways.push(fresh);
  proxy.retarget(fresh.wsPort);
  proxy.refuse(false);
  await alice.waitForSelector('#gap-banner:not([hidden])', { timeout: 45_000 });
  await alice.waitForFunction(() => document.getElementById('state').dataset.state === 'connected', null, { timeout: 10_000 });
  // The SDK subscribed again by itself in the new session.
  await alice.waitForFunction(() => window.demo.client.stats().pendingPublishes === 0);
  for (let i = 0; i < 100; i++) {
    await opsPost(fresh, '/v1/publish', { channel: 'chat:demo', payload: JSON.stringify({ name: 'ferry-bot', text: 'back after the restart' }) }, API_KEY);
    const n = await alice.evaluate(() => window.demo.received.length);
    if (n >= 3) break;
    await new Promise((r) => setTimeout(r, 100)); // the re-SUBSCRIBE may still be in flight
  }
  await alice.waitForFunction(() => window.demo.received.some((m) => m.who === 'ferry-bot'), null, { timeout: 10_000 });
  assert.match(await alice.textContent('#gap-detail'), /session expired/);

  const shot = await alice.screenshot({ fullPage: true });
  writeFileSync(ARTIFACTS + 'demo-gap.png', shot);
  const text = await alice.textContent('body');
  for (const s of ['Ferry chat', 'chat:demo', 'connected', 'Messages may have been missed', 'hi bob', 'the ferry leaves at noon', 'back after the restart']) {
    assert.ok(text.includes(s), `page shows ${JSON.stringify(s)}`);
  }
  // The pixels: the amber banner and the green state badge are on the screenshot where the DOM puts them.
  const bannerBox = await alice.locator('#gap-banner').boundingBox();
  const stateBox = await alice.locator('#state').boundingBox();
  const listBox = await alice.locator('#messages').boundingBox();
  assert.ok((await colourShare(alice, shot, bannerBox, [0xf5, 0x9e, 0x0b])) > 0.5, 'banner colour');
  assert.ok((await colourShare(alice, shot, stateBox, [0x1a, 0x7f, 0x37])) > 0.3, 'connected badge colour');
  assert.ok((await colourShare(alice, shot, listBox, [0x1f, 0x23, 0x28], 60)) > 0.005, 'text in the message list');
  assert.ok((await colourShare(alice, before, bannerBox, [0xf5, 0x9e, 0x0b])) < 0.05, 'no banner before the gap');
  await alice.close();
  await bob.close();
});

// Token refresh with auth.mode = "jwt" (docs/auth.md): the page's token
// provider answers REFRESH_TOKEN and the connection outlives the first
// token; without a provider the gateway closes with 409. Grants: 405/406
// are typed, non-fatal errors.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { launchBrowser } from '../support/browser.mjs';
import { startGateway, tempDir, writeConfig, mintToken, opsPost } from '../support/gateway.mjs';
import { startStaticServer } from '../support/static-server.mjs';
import { openClient, subscribe, waitReceived, eventNames } from '../support/pages.mjs';

let gateway, web, browser, config;
const API_KEY = 'ts-sdk-auth-api-key-0123456789';
const GRANT = { sub: 'alice', subscribe: ['chat:*'], publish: ['chat:*'] };

before(async () => {
  config = writeConfig(
    tempDir(),
    `[auth]
mode = "jwt"
refresh_before = "60s"
refresh_grace = "1s"

[[auth.keys]]
kid = "ts-test"
algorithm = "HS256"
secret = "ts-sdk-end-to-end-secret-of-more-than-32-bytes"
`,
  );
  gateway = await startGateway({ config, apiKey: API_KEY });
  web = await startStaticServer();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await web?.close();
  await gateway?.stop();
});

test('a token provider refreshes the token; the connection outlives the first token', { timeout: 60_000 }, async () => {
  // The first token lives 3 s (shorter than refresh_before: REFRESH_TOKEN
  // comes at once); later ones an hour.
  let minted = 0;
  const page = await openClient(browser, web.url, gateway.wsUrl, { tokenFromTest: true }, (p) =>
    p.exposeFunction('mintToken', () => mintToken(config, { ...GRANT, ttl: minted++ === 0 ? '3s' : '1h' })),
  );
  await page.waitForFunction(() => window.events.some(([e]) => e === 'token_refreshed'), null, { timeout: 10_000 });
  assert.equal(minted, 2, 'one token at connect, one on REFRESH_TOKEN');
  // Past the first token's expiry plus grace (3 s + 1 s): without the
  // refresh the gateway would have closed with 409 by now.
  await sleep(5_000);
  await subscribe(page, 'chat:auth');
  await page.evaluate(() => window.client.publish('chat:auth', 'still here'));
  assert.deepEqual(await waitReceived(page, 'chat:auth', 1), ['still here']);
  assert.equal(await page.evaluate(() => window.client.state), 'connected');
  assert.deepEqual(await eventNames(page), ['token_refreshed'], 'no disconnect, no reconnect');
  await page.close();
});

test('without a token provider the gateway closes with 409 and the client stops', { timeout: 60_000 }, async () => {
  const token = mintToken(config, { ...GRANT, ttl: '2s' });
  const page = await openClient(browser, web.url, gateway.wsUrl, { token });
  await page.waitForFunction(() => window.client.state === 'closed', null, { timeout: 15_000 });
  const closed = (await page.evaluate(() => window.events)).find(([e]) => e === 'closed');
  assert.ok(closed, 'closed event');
  const error = await page.evaluate(() => window.events.find(([e]) => e === 'error')?.[1]);
  assert.match(error, /409 token_refresh_timeout/);
  await page.close();
});

test('refused grants are typed, non-fatal errors; a bad token fails connect()', { timeout: 60_000 }, async () => {
  const token = mintToken(config, { ...GRANT, ttl: '1h' });
  const page = await openClient(browser, web.url, gateway.wsUrl, { token });
  const results = await page.evaluate(async () => {
    const c = window.client;
    const sub = await c.subscribe('secret:1', () => {}).ready.catch((e) => [e.name, e.code]);
    const pub = await c.publish('news:1', 'x').catch((e) => [e.name, e.code]);
    const ok = await c.publish('chat:ok', 'y');
    return { sub, pub, ok, state: c.state };
  });
  assert.deepEqual(results, { sub: ['ServerError', 405], pub: ['ServerError', 406], ok: { channel: 'chat:ok', clientSeq: 2 }, state: 'connected' });
  const refused = await page.evaluate((url) =>
    window.FerrySDK.Ferry.connect(url, { token: 'not-a-jwt' }).then(() => 'connected', (e) => [e.name, e.code]), gateway.wsUrl);
  assert.deepEqual(refused, ['ServerError', 401]);
  await page.close();
});

test('an operator disconnect (/v1/disconnect, ERROR 503) stops the client: no reconnect', { timeout: 60_000 }, async () => {
  const token = mintToken(config, { sub: 'carol', subscribe: ['chat:*'], publish: ['chat:*'], ttl: '1h' });
  const page = await openClient(browser, web.url, gateway.wsUrl, { token });
  assert.equal(await page.evaluate(() => window.client.publish('chat:op', 'x').then(() => 'acked')), 'acked');
  const answer = await opsPost(gateway, '/v1/disconnect', { user: 'carol', drop_sessions: true }, API_KEY);
  assert.equal(answer.sessions, 1);
  await page.waitForFunction(() => window.client.state === 'closed', null, { timeout: 10_000 });
  const error = await page.evaluate(() => window.events.find(([e]) => e === 'error')?.[1]);
  assert.match(error, /503 disconnected/);
  await sleep(1_000);
  const names = await eventNames(page);
  assert.ok(!names.includes('connecting'), `no reconnect after a stop: ${names.join(',')}`);
  const after = await page.evaluate(() => window.client.publish('chat:op', 'y').catch((e) => e.name));
  assert.equal(after, 'ClosedError');
  await page.close();
});

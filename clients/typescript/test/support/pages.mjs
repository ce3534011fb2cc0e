// Helpers that drive the SDK inside a page (test/e2e/pages/harness.html).

const EVENTS = ['state', 'connecting', 'connected', 'resumed', 'gap', 'disconnected', 'goaway', 'token_refreshed', 'closed', 'error'];

/**
 * Opens the harness page and connects a client as `window.client`.
 * `setup(page)` runs before connecting (e.g. page.exposeFunction).
 */
export async function openClient(browser, staticUrl, wsUrl, options = {}, setup = async () => {}) {
  const page = await browser.newPage(`${staticUrl}/test/e2e/pages/harness.html`);
  await page.waitForFunction(() => window.sdkReady === true, null, { timeout: 10_000 });
  await setup(page);
  await page.evaluate(
    async ({ wsUrl, options, events }) => {
      window.events = [];
      window.received = {};
      const opts = { ...options };
      if (options.tokenFromTest) {
        delete opts.tokenFromTest;
        // Exposed by the test with page.exposeFunction.
        opts.token = () => window.mintToken();
      }
      const client = await window.FerrySDK.Ferry.connect(wsUrl, opts);
      window.client = client;
      for (const e of events) {
        client.on(e, (p) => {
          const detail = e === 'state' ? p : e === 'error' ? String(p) : JSON.stringify(p, (k, v) => (v instanceof Uint8Array ? undefined : typeof v === 'bigint' ? String(v) : v));
          window.events.push([e, detail, Math.round(performance.now())]);
        });
      }
    },
    { wsUrl, options, events: EVENTS },
  );
  return page;
}

/** Subscribes the page's client; messages collect in `window.received[channel]` as text. */
export async function subscribe(page, channel) {
  return page.evaluate(async (channel) => {
    window.received[channel] = [];
    const sub = window.client.subscribe(channel, (m) => window.received[channel].push(m.text()));
    return (await sub.ready).channelOffset;
  }, channel);
}

/** Names of the events the page saw, in order. */
export async function eventNames(page, skipState = true) {
  const events = await page.evaluate(() => window.events);
  return events.filter(([e]) => !skipState || e !== 'state').map(([e]) => e);
}

/** Waits until the page received `count` messages on `channel` (bounded). */
export async function waitReceived(page, channel, count, timeout = 30_000) {
  await page.waitForFunction(
    ([ch, n]) => (window.received[ch]?.length ?? 0) >= n,
    [channel, count],
    { timeout, polling: 50 },
  );
  return page.evaluate((ch) => window.received[ch], channel);
}

/**
 * Starts publishing `count` messages "1".."count" to `channel`, one every
 * `intervalMs`; `window.publishDone` resolves to a summary when every publish settled.
 */
export async function startPublishing(page, channel, count, intervalMs) {
  await page.evaluate(
    ({ channel, count, intervalMs }) => {
      const results = [];
      window.publishDone = (async () => {
        for (let i = 1; i <= count; i++) {
          results.push(
            window.client.publish(channel, String(i)).then(
              (ack) => ({ ok: true, seq: ack.clientSeq }),
              (e) => ({ ok: false, error: `${e.name}: ${e.message}` }),
            ),
          );
          if (intervalMs > 0) await new Promise((r) => setTimeout(r, intervalMs));
        }
        const settled = await Promise.all(results);
        return { ok: settled.filter((r) => r.ok).length, failed: settled.filter((r) => !r.ok).map((r) => r.error) };
      })();
    },
    { channel, count, intervalMs },
  );
}

/** `[1..n]` as strings. */
export const range = (n) => Array.from({ length: n }, (_, i) => String(i + 1));

// A TCP proxy the test can cut: a transport loss the page does not see
// coming (no ERROR, no GOAWAY), like a dead network.
import { createServer, connect } from 'node:net';

/** Proxies 127.0.0.1:<free port> to 127.0.0.1:`targetPort`. */
export async function startProxy(targetPort) {
  let target = targetPort;
  let refusing = false;
  const pairs = new Set();
  const server = createServer((client) => {
    if (refusing) {
      client.destroy();
      return;
    }
    const upstream = connect(target, '127.0.0.1');
    const pair = { client, upstream };
    pairs.add(pair);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      pairs.delete(pair);
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const port = server.address().port;
  return {
    port,
    url: `ws://127.0.0.1:${port}/ws`,
    /** Connections open now. */
    get open() {
      return pairs.size;
    },
    /** Resets every connection (TCP RST), as a network failure would. */
    cutAll() {
      const n = pairs.size;
      for (const { client, upstream } of [...pairs]) {
        client.resetAndDestroy?.() ?? client.destroy();
        upstream.destroy();
      }
      pairs.clear();
      return n;
    },
    /** Refuse (close at once) new connections while true. */
    refuse(on) {
      refusing = on;
    },
    /** Send new connections elsewhere. */
    retarget(port2) {
      target = port2;
    },
    close: () => new Promise((r) => { for (const { client, upstream } of pairs) { client.destroy(); upstream.destroy(); } server.close(() => r()); }),
  };
}

// Node.js `ws` echo server: a peer in bench/compare.sh.
// Usage: node echo.js [--listen 127.0.0.1:9003]  (port 0: any free port, printed)
'use strict';
const { WebSocketServer } = require('ws');

const i = process.argv.indexOf('--listen');
const listen = i > 0 ? process.argv[i + 1] : '127.0.0.1:9003';
const sep = listen.lastIndexOf(':');
const host = listen.slice(0, sep);
const port = Number(listen.slice(sep + 1));

// Defaults as a team would ship them; compression stays off (ws default).
const wss = new WebSocketServer({ host, port, perMessageDeflate: false });
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('error', () => {});
});
wss.on('listening', () => console.error(`node-ws: echo on ws://${host}:${wss.address().port}`));
wss.on('error', (e) => {
  console.error(`node-ws: ${e.message}`);
  process.exit(1);
});

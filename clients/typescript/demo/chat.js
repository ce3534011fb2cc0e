// A chat page on the Ferry SDK, no framework. Query parameters:
//   ws      gateway WebSocket URL (default ws://<this host>:8080/ws)
//   channel channel name (default chat:demo)
//   name    your name (default guest-NNN)
//   token   a token, when the gateway requires one
import { Ferry } from '../dist/index.js';

const params = new URLSearchParams(location.search);
const url = params.get('ws') ?? `ws://${location.hostname || '127.0.0.1'}:8080/ws`;
const channel = params.get('channel') ?? 'chat:demo';
const name = params.get('name') ?? `guest-${Math.floor(Math.random() * 1000)}`;
const token = params.get('token') ?? '';

const $ = (id) => document.getElementById(id);
const list = $('messages');
const stateEl = $('state');
const banner = $('gap-banner');
$('channel').textContent = channel;

function setState(state) {
  stateEl.textContent = state;
  stateEl.dataset.state = state;
  stateEl.className = `state state-${state}`;
}

function addLine(who, text, offset, cls) {
  const li = document.createElement('li');
  if (cls) li.className = cls;
  const w = document.createElement('span');
  w.className = 'who';
  w.textContent = who;
  const t = document.createElement('span');
  t.className = 'text';
  t.textContent = text;
  li.append(w, t);
  if (offset !== undefined) {
    const o = document.createElement('span');
    o.className = 'off';
    o.textContent = `#${offset}`;
    li.append(o);
  }
  list.append(li);
  list.scrollTop = list.scrollHeight;
}

function showGap(detail) {
  $('gap-detail').textContent = detail;
  banner.hidden = false;
}
$('gap-dismiss').addEventListener('click', () => { banner.hidden = true; });

const demo = { received: [], client: null, error: null };
window.demo = demo;

try {
  const client = await Ferry.connect(url, { token });
  demo.client = client;
  setState(client.state);
  client.on('state', setState);
  client.on('gap', (g) => {
    const why = g.outcome === 'new_replay_unavailable' ? 'the server could not replay them' : 'the session expired';
    const lost = g.uncertain.length ? ` ${g.uncertain.length} message(s) you sent may not have arrived.` : '';
    const last = g.lastOffsets[channel];
    const since = last !== undefined ? ` Last message seen: #${last}.` : '';
    showGap(`Reconnected to a new session: ${why}.${since}${lost}`);
  });
  client.on('closed', ({ error }) => {
    if (error) addLine('system', `disconnected for good: ${error.message}`, undefined, 'failed');
  });
  client.subscribe(channel, (m) => {
    let who = '?';
    let text = m.text();
    try {
      const body = m.json();
      who = String(body.name);
      text = String(body.text);
    } catch {
      // not JSON: show the raw text
    }
    demo.received.push({ who, text, offset: m.offset });
    addLine(who, text, m.offset);
  });
  $('composer').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const input = $('text');
    const text = input.value;
    input.value = '';
    try {
      await client.publish(channel, JSON.stringify({ name, text }));
    } catch (e) {
      addLine('not sent', `${text} (${e.message})`, undefined, 'failed');
    }
  });
  const footer = () => { $('footer').textContent = `you are ${name} · session ${client.sessionId}`; };
  footer();
  client.on('connected', footer);
} catch (e) {
  demo.error = String(e);
  setState('closed');
  addLine('system', `cannot connect to ${url}: ${e.message}`, undefined, 'failed');
}

// The edge console's script: reads the console's JSON and the admin API, follows the feed
// (Server-Sent Events) and draws the charts as SVG. Every value from the edge (certificate
// fields, hostnames, addresses, reasons) becomes text through DOM calls, never markup.
'use strict';

// Days to expiry at which a CA is flagged (README "Edge console").
const WARNING_DAYS = 30;
const CRITICAL_DAYS = 7;
const DAY_MS = 86400000;
// Rows the feed table keeps (the edge's ring holds 500).
const FEED_ROWS = 200;
const SVG = 'http://www.w3.org/2000/svg';

// An element with attributes (names are this script's, values may be data) and children
// (nodes, or anything else as text).
function el(tag, attributes, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    element.setAttribute(name, String(value));
  }
  for (const child of children) {
    element.append(child instanceof Node ? child : document.createTextNode(String(child ?? '')));
  }
  return element;
}

function svg(tag, attributes) {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    element.setAttribute(name, String(value));
  }
  return element;
}

function say(message, isError) {
  const status = document.getElementById('status');
  status.textContent = message;
  status.classList.toggle('error', Boolean(isError));
}

// One call to the admin API (or the console's JSON); the API's refusal message on failure.
async function call(method, path, body, version) {
  const headers = {};
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (version !== undefined) headers['If-Match'] = '"' + version + '"';
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'same-origin',
  });
  const text = await response.text();
  const json = text ? JSON.parse(text) : null;
  if (!response.ok) {
    throw new Error((json && json.msg) || method + ' ' + path + ': HTTP ' + response.status);
  }
  return json;
}

// Every record of an API collection, page after page.
async function all(collection) {
  const records = [];
  let path = '/' + collection + '?limit=1000';
  for (let pages = 0; path && pages < 20; pages += 1) {
    const page = await call('GET', path);
    records.push(...page[collection]);
    path = page.next_page_uri;
  }
  return records;
}

function fill(tbodyId, emptyId, rows) {
  document.getElementById(tbodyId).replaceChildren(...rows);
  document.getElementById(emptyId).hidden = rows.length > 0;
}

// --- Agents ---------------------------------------------------------------------------------

async function loadAgents() {
  const { agents } = await call('GET', '/console/agents');
  fill('agent-rows', 'agents-empty', agents.map((agent) => {
    const endpoints = el('ul', { class: 'plain' }, ...agent.endpoints.map((endpoint) =>
      el('li', { 'data-hostname': endpoint.hostname },
        endpoint.hostname + ' (' + endpoint.kind + ', TLS at ' + endpoint.terminate_at +
        (endpoint.pool ? ', pool' : '') + ')')));
    return el('tr', { 'data-agent': agent.name },
      el('td', {}, agent.name), el('td', {}, agent.address),
      el('td', {}, shortTime(agent.connected_at)), el('td', {}, endpoints));
  }));
}

// --- Certificate authorities -------------------------------------------------------------------

// How near a CA is to its end: [class, words]. The words say it too, not only the colour.
function expiry(notAfter, now) {
  const days = Math.floor((Date.parse(notAfter) - now) / DAY_MS);
  if (days < 0) return ['expired', days, 'EXPIRED ' + -days + ' days ago'];
  if (days <= CRITICAL_DAYS) return ['critical', days, 'CRITICAL: ' + days + ' days left'];
  if (days <= WARNING_DAYS) return ['warning', days, 'WARNING: ' + days + ' days left'];
  return ['ok', days, days + ' days left'];
}

async function loadCas() {
  const now = Date.now();
  const cas = await all('certificate_authorities');
  fill('ca-rows', 'cas-empty', cas.map((ca) => {
    const [level, days, words] = expiry(ca.not_after, now);
    const remove = el('button', { type: 'button', class: 'danger' }, 'Delete');
    remove.setAttribute('aria-label', 'Delete CA ' + ca.subject_common_name);
    remove.addEventListener('click', () => change(
      () => call('DELETE', '/certificate_authorities/' + encodeURIComponent(ca.id), undefined, ca.version),
      'CA ' + ca.id + ' deleted', loadCas));
    return el('tr', { 'data-ca-id': ca.id, 'data-expiry': level, 'data-days': days },
      el('td', { class: 'ca-name' }, ca.subject_common_name),
      el('td', {}, ca.id),
      el('td', {}, ca.not_after),
      el('td', {}, el('span', { class: 'expiry expiry-' + level }, words)),
      el('td', {}, ca.description),
      el('td', {}, remove));
  }));
}

const KINDS = { server: 'server certificate', ca: 'client CA', crl: 'CRL' };

async function loadInUse() {
  const now = Date.now();
  const { certificates } = await call('GET', '/console/certificates');
  fill('in-use-rows', 'in-use-empty', certificates.map((item) => {
    const [level, days, words] = expiry(item.not_after, now);
    return el('tr', { 'data-endpoint': item.endpoint, 'data-kind': item.kind, 'data-expiry': level, 'data-days': days },
      el('td', {}, item.endpoint), el('td', {}, KINDS[item.kind] || item.kind),
      el('td', { class: 'subject' }, item.subject), el('td', {}, item.not_after),
      el('td', {}, el('span', { class: 'expiry expiry-' + level }, words)));
  }));
}

// --- Endpoint definitions -----------------------------------------------------------------------

async function loadEndpoints() {
  const endpoints = await all('endpoints');
  fill('endpoint-rows', 'endpoints-empty', endpoints.map((endpoint) => {
    const remove = el('button', { type: 'button', class: 'danger' }, 'Delete');
    remove.setAttribute('aria-label', 'Delete endpoint ' + endpoint.hostname);
    remove.addEventListener('click', () => change(
      () => call('DELETE', '/endpoints/' + encodeURIComponent(endpoint.id), undefined, endpoint.version),
      'endpoint ' + endpoint.hostname + ' deleted', loadEndpoints));
    return el('tr', { 'data-endpoint-id': endpoint.id },
      el('td', {}, endpoint.hostname), el('td', {}, endpoint.kind),
      el('td', {}, endpoint.terminate_at), el('td', {}, endpoint.pool ? 'yes' : 'no'),
      el('td', {}, endpoint.certificate_authority_ids.join(', ')), el('td', {}, remove));
  }));
}

// Runs one change through the API, says how it went, and reloads what it changed.
async function change(request, done, reload) {
  try {
    await request();
    say(done);
  } catch (error) {
    say(error.message, true);
  }
  await reload().catch((error) => say(error.message, true));
}

function wireForms() {
  document.getElementById('ca-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const pem = document.getElementById('ca-pem');
    const description = document.getElementById('ca-description');
    change(async () => {
      await call('POST', '/certificate_authorities',
        { ca_pem: pem.value, description: description.value });
      event.target.reset();
    }, 'CA added', loadCas);
  });
  document.getElementById('endpoint-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const value = (id) => document.getElementById(id).value;
    const cas = value('endpoint-cas').split(',').map((id) => id.trim()).filter((id) => id);
    change(async () => {
      await call('POST', '/endpoints', {
        hostname: value('endpoint-hostname').trim(),
        kind: value('endpoint-kind'),
        terminate_at: value('endpoint-terminate'),
        pool: document.getElementById('endpoint-pool').checked,
        certificate_authority_ids: cas,
      });
      event.target.reset();
    }, 'endpoint defined', loadEndpoints);
  });
}

// --- Live feed ------------------------------------------------------------------------------

const WHAT = {
  handshake: 'handshake accepted',
  refusal: 'handshake refused',
  agent_connected: 'agent connected',
  agent_disconnected: 'agent disconnected',
  endpoint_published: 'endpoint published',
  endpoint_removed: 'endpoint removed',
};

// An RFC 3339 time to the second (the edge sends microseconds).
function shortTime(time) {
  return String(time).replace(/\.\d+Z$/, 'Z');
}

function showEntry(entry) {
  const rows = document.getElementById('feed-rows');
  const who = entry.kind === 'handshake' || entry.kind === 'refusal'
    ? (entry.client || '(no certificate)') + ' from ' + entry.peer
    : 'agent ' + entry.agent + (entry.peer ? ' from ' + entry.peer : '');
  const row = el('tr', {
    class: 'kind-' + entry.kind,
    'data-kind': entry.kind,
    'data-reason': entry.reason || '',
    'data-seq': entry.seq,
  },
  el('td', {}, shortTime(entry.time)), el('td', {}, WHAT[entry.kind] || entry.kind),
  el('td', {}, entry.endpoint || entry.sni || ''), el('td', {}, who),
  el('td', {}, entry.reason ? entry.reason + (entry.detail ? ': ' + entry.detail : '') : ''));
  rows.prepend(row);
  while (rows.rows.length > FEED_ROWS) rows.deleteRow(-1);
  if (entry.kind.startsWith('agent_') || entry.kind.startsWith('endpoint_')) {
    refresh(loadAgents);
    // A publication or its end reloads the gateway: its certificates change.
    inUseSoon();
  }
  chartsSoon();
}

// `load` once, a second from the first call (once for a burst of feed entries).
function soon(load) {
  let timer = null;
  return () => {
    if (timer !== null) return;
    timer = setTimeout(() => {
      timer = null;
      refresh(load);
    }, 1000);
  };
}
const chartsSoon = soon(() => loadCharts());
const inUseSoon = soon(() => loadInUse());

function followFeed() {
  const state = document.getElementById('feed-state');
  const events = new EventSource('/console/events');
  events.addEventListener('open', () => { state.textContent = 'Live.'; });
  events.addEventListener('error', () => { state.textContent = 'Reconnecting…'; });
  events.addEventListener('message', (message) => showEntry(JSON.parse(message.data)));
  // Fell behind the edge: start again from what the ring holds.
  events.addEventListener('lagged', () => {
    events.close();
    document.getElementById('feed-rows').replaceChildren();
    followFeed();
  });
}

// --- Charts ---------------------------------------------------------------------------------

const WIDTH = 600;
const HEIGHT = 160;
const LEFT = 40;

// Stacked bars, one per bucket; `series` is [[name, values]]; the legend gives each series'
// total over the hour (`sum`) or its highest minute (a rate).
function chart(containerId, series, unit, minutes, sum) {
  const buckets = minutes.length;
  const totals = minutes.map((_, index) => series.reduce((sum, [, values]) => sum + values[index], 0));
  const top = Math.max(...totals, 0);
  const scale = top > 0 ? (HEIGHT - 20) / top : 0;
  const barWidth = (WIDTH - LEFT) / buckets;
  const image = svg('svg', { viewBox: '0 0 ' + WIDTH + ' ' + HEIGHT, role: 'img' });
  const label = series.map(([name, values]) => name + ' ' + values.reduce((a, b) => a + b, 0)).join(', ');
  const title = svg('title');
  title.textContent = (label || 'nothing yet') + ' in the last hour';
  image.append(title);
  for (const [y, text] of [[HEIGHT - 1, '0'], [12, (Math.round(top * 100) / 100) + ' ' + unit]]) {
    const axis = svg('text', { x: 2, y, 'font-size': 11, fill: '#4a5561' });
    axis.textContent = text;
    image.append(axis);
  }
  series.forEach(([, values], colour) => {
    values.forEach((value, index) => {
      if (value <= 0) return;
      const below = series.slice(0, colour).reduce((sum, [, other]) => sum + other[index], 0);
      image.append(svg('rect', {
        x: LEFT + index * barWidth, width: Math.max(barWidth - 1, 1),
        y: HEIGHT - (below + value) * scale, height: value * scale,
        class: 'c' + (colour % 6),
      }));
    });
  });
  const summary = (values) => (sum
    ? values.reduce((a, b) => a + b, 0)
    : 'peak ' + Math.round(Math.max(...values) * 100) / 100);
  const legend = el('ul', { class: 'legend' }, ...series.map(([name, values], colour) =>
    el('li', { 'data-series': name }, el('span', { class: 'swatch c' + (colour % 6) }),
      name + ': ' + summary(values))));
  document.getElementById(containerId).replaceChildren(image, legend);
}

async function loadCharts() {
  const hour = await call('GET', '/console/charts');
  chart('chart-requests', Object.entries(hour.requests), 'requests', hour.minutes, true);
  chart('chart-refusals', Object.entries(hour.refusals), 'refusals', hour.minutes, true);
  chart('chart-handshakes', [['handshakes/s', hour.handshakes_per_second]], '/s', hour.minutes, false);
}

// --- Start ----------------------------------------------------------------------------------

function refresh(load) {
  load().catch((error) => say(error.message, true));
}

document.addEventListener('DOMContentLoaded', () => {
  wireForms();
  followFeed();
  refresh(loadAgents);
  refresh(loadCas);
  refresh(loadInUse);
  refresh(loadEndpoints);
  refresh(loadCharts);
  // Agents also come and go by the feed; this catches a stream that was reconnecting.
  setInterval(() => refresh(loadAgents), 5000);
  setInterval(() => refresh(loadCharts), 10000);
});

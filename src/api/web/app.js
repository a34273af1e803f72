// storgo's web page: one ES module, no dependencies, nothing loaded from elsewhere.
//
// The page talks to the node's /api/v1 like any other client. Its session is an HttpOnly
// cookie set by /login (the page never sees a token); every request that changes something
// carries `X-Storgo-Page: 1`, which the node requires alongside the cookie. Live updates come
// from one EventSource on /api/v1/events: `status` (every 2 s), `items`, `job` and `collection`.
//
// Layout of this file: helpers → API → state → header and tabs → Items (uploads, list,
// replication health) → Fetch (jobs) → Peers → Network (routing map, who holds) →
// Collections (follow, publish, search, history) → events →
// start-up. Everything user-supplied (names, IDs) goes into the DOM as text, never as HTML.

/* ------------------------------------------------------------------ helpers */

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];
const SVG_NS = 'http://www.w3.org/2000/svg';

/** Makes an element. attrs: class, text, dataset {…}, on {event: fn}, or any attribute. */
function h(tag, attrs = {}, ...children) {
  const el = attrs.svg ? document.createElementNS(SVG_NS, tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false || k === 'svg') continue;
    if (k === 'class') el.setAttribute('class', v);
    else if (k === 'text') el.textContent = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'on') for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c != null && c !== false) el.append(c instanceof Node ? c : String(c));
  }
  return el;
}
/** An SVG element (same arguments as h). */
const s = (tag, attrs = {}, ...children) => h(tag, { ...attrs, svg: true }, ...children);

/** A small line icon from one path (24×24 grid, stroked). */
const ICONS = {
  file: 'M14 3H7a2 2 0 0 0-2 2v14a2 2 0 0 0 2 2h10a2 2 0 0 0 2-2V8zm0 0v5h5M9 13h6M9 17h4',
  dir: 'M3 7a2 2 0 0 1 2-2h4l2 2h8a2 2 0 0 1 2 2v8a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2z',
  replica: 'M12 3l8 4v5c0 4.5-3.4 8-8 9-4.6-1-8-4.5-8-9V7zm-3 9 2 2 4-4',
};
const icon = (name) => s('svg', { viewBox: '0 0 24 24', class: 'icon', 'aria-hidden': 'true' },
  s('path', { d: ICONS[name] }));

/** Bytes in SI units, as people read file sizes: 3000000 → "3.0 MB". */
function fmtBytes(n) {
  if (n == null || !Number.isFinite(n)) return '–';
  const units = ['B', 'kB', 'MB', 'GB', 'TB', 'PB'];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return i === 0 ? `${n} B` : `${n.toFixed(n < 100 ? 1 : 0)} ${units[i]}`;
}

/** A long ID cut to its ends; the full one goes in a title. */
const shortId = (id, head = 10, tail = 6) =>
  !id || id.length <= head + tail + 1 ? id || '' : `${id.slice(0, head)}…${id.slice(-tail)}`;
/** PeerIds all start "12D3KooW": the end tells them apart. */
const shortPeer = (p) => (p ? `${p.slice(0, 4)}…${p.slice(-6)}` : '');

/** "3 min ago" for a Unix time in seconds. */
function timeAgo(secs) {
  if (!secs) return '';
  const d = Math.max(0, Date.now() / 1000 - secs);
  if (d < 60) return 'just now';
  if (d < 3600) return `${Math.floor(d / 60)} min ago`;
  if (d < 86400) return `${Math.floor(d / 3600)} h ago`;
  return new Date(secs * 1000).toLocaleDateString();
}

/** IDs pasted from mail or a PDF carry spaces and line breaks; an ID has none. */
const cleanId = (text) => text.replace(/\s+/g, '');

/** A short notice at the bottom of the screen. level: info | good | error. */
function toast(message, level = 'info') {
  const t = h('div', { class: `toast ${level}`, role: level === 'error' ? 'alert' : 'status' }, message);
  const close = () => { t.classList.add('out'); setTimeout(() => t.remove(), 250); };
  t.addEventListener('click', close);
  $('#toasts').append(t);
  setTimeout(close, level === 'error' ? 8000 : 3500);
}

/** Copies text (the Clipboard API needs a secure context: a fallback for plain http on a LAN). */
async function copyText(text, button) {
  let ok = false;
  try { await navigator.clipboard.writeText(text); ok = true; } catch { /* fallback below */ }
  if (!ok) {
    const ta = h('textarea', { class: 'offscreen', readonly: true });
    ta.value = text;
    document.body.append(ta);
    ta.select();
    try { ok = document.execCommand('copy'); } catch { ok = false; }
    ta.remove();
  }
  if (!ok) toast('Could not copy: select the text and copy it by hand.', 'error');
  if (button) {
    button.dataset.label ??= button.textContent;
    button.textContent = ok ? 'Copied' : 'Failed';
    button.classList.toggle('copied', ok);
    clearTimeout(button._copyTimer);
    button._copyTimer = setTimeout(() => {
      button.textContent = button.dataset.label;
      button.classList.remove('copied');
    }, 1500);
  }
  return ok;
}
const copyButton = (text, label = 'Copy ID', cls = 'copy-id') => h('button', {
  type: 'button', class: `${cls} btn ghost small`, title: `Copy ${text}`,
  on: { click: (e) => copyText(text, e.currentTarget) },
}, label);

/* ---------------------------------------------------------------------- API */

class ApiError extends Error {
  constructor(status, code, detail) { super(detail); this.status = status; this.code = code; }
}

/** Calls /api/v1/PATH; answers the parsed JSON or throws an ApiError carrying `detail`. */
async function api(path, { method = 'GET', body } = {}) {
  const headers = {};
  if (method !== 'GET' && method !== 'HEAD') headers['X-Storgo-Page'] = '1';
  if (typeof body === 'string') headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(`/api/v1${path}`, { method, body, headers, credentials: 'same-origin' });
  } catch {
    throw new ApiError(0, 'unreachable', 'The node did not answer. Is it still running?');
  }
  if (res.status === 401) showLogin();
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  if (!res.ok) {
    throw new ApiError(res.status, data?.error ?? `http_${res.status}`,
      data?.detail ?? (text || res.statusText));
  }
  return data;
}
const enc = encodeURIComponent;
/** Runs an API call for a button; shows the error's detail if it fails. */
async function attempt(fn) {
  try { return await fn(); } catch (e) { if (e.status !== 401) toast(e.message, 'error'); return undefined; }
}

/* -------------------------------------------------------------------- state */

const state = {
  self: null,        // this node's PeerId
  info: null,        // the latest /id (or status event)
  status: null,      // the latest /status
  items: [],         // /ls: items pinned here
  replicas: [],      // /replicas: copies kept for other peers
  jobs: new Map(),   // job number → Job
  routing: null,     // /routing
  routingKey: '',    // its JSON, to redraw only on change
  holders: null,     // {id, peers: Set} highlighted on the map
  view: 'items',
  statusTicks: 0,
  collections: [],   // /collections: followed and published
  news: 0,           // new collection entries since the view was last opened
  history: new Map(),// collection ID → its /log, while shown
};
const wanted = (item) => item.replicas ?? state.status?.replication?.replication ?? 3;
const itemName = (id) => state.items.find((i) => i.id === id)?.name;

/* ------------------------------------------------------- header, tabs, login */

function renderInfo(info) {
  state.info = info;
  state.self = info.peer_id;
  const idBtn = $('#node-id');
  idBtn.textContent = shortPeer(info.peer_id);
  idBtn.title = `This node: ${info.peer_id} (click to copy)`;
  $('#peer-count').textContent = info.connected_peers;
  $('#peer-word').textContent = info.connected_peers === 1 ? 'peer' : 'peers';
  renderSelf();
}

function renderStored() {
  $('#stored-bytes').textContent = fmtBytes(state.status?.store?.bytes);
}

const VIEWS = ['items', 'fetch', 'peers', 'network', 'collections'];

/** Shows one view (the others hide) and loads what it needs. */
function showView(name) {
  if (!VIEWS.includes(name)) name = 'items';
  state.view = name;
  for (const v of VIEWS) $(`#view-${v}`).hidden = v !== name;
  for (const b of $$('[data-view]')) {
    b.classList.toggle('active', b.dataset.view === name);
    b.setAttribute('aria-current', b.dataset.view === name ? 'page' : 'false');
  }
  if (name === 'peers') attempt(loadPeers);
  if (name === 'network') { fillWhoSelect(); attempt(loadRouting); }
  if (name === 'collections') { state.news = 0; updateCounts(); attempt(loadCollections); }
}

function updateCounts() {
  const n = state.items.length + state.replicas.length;
  $('#count-items').textContent = n ? n : '';
  const running = [...state.jobs.values()].filter((j) => j.state === 'running').length;
  $('#count-jobs').textContent = running ? running : '';
  $('#count-news').textContent = state.news ? state.news : '';
}

/** No session: say how to get one, and stop. */
function showLogin() {
  $('#login-needed').hidden = false;
  for (const id of ['#main', '#tabs', '#footer']) $(id).hidden = true;
  $('.node-facts').hidden = true;
  events?.close();
  events = null;
}

/* ---------------------------------------------------------- Items: uploads */

const uploadQueue = [];
let uploading = false;

/** Queues files for upload, one request each, one after another. */
function addFiles(files) {
  if (!files.length) return;
  $('#uploads-box').hidden = false;
  for (const file of files) {
    const u = { file, xhr: null };
    u.row = uploadRow(u);
    $('#uploads').append(u.row.el);
    uploadQueue.push(u);
  }
  runUploads();
}

function uploadRow(u) {
  const bar = h('progress', { max: 1, value: 0 });
  const stat = h('span', { class: 'upload-stat muted small' }, 'waiting…');
  const actions = h('span', { class: 'upload-actions' });
  const cancel = h('button', {
    type: 'button', class: 'btn ghost small', on: {
      click: () => {
        if (u.xhr) u.xhr.abort();
        else { uploadQueue.splice(uploadQueue.indexOf(u), 1); finish('cancelled', 'Cancelled'); }
      },
    },
  }, 'Cancel');
  actions.append(cancel);
  const el = h('div', { class: 'upload', dataset: { state: 'waiting' } },
    h('div', { class: 'upload-head' },
      h('span', { class: 'upload-name', title: u.file.name }, u.file.name),
      h('span', { class: 'muted small' }, fmtBytes(u.file.size))),
    bar, h('div', { class: 'upload-foot' }, stat, actions));
  const finish = (st, text) => {
    el.dataset.state = st;
    stat.textContent = text;
    actions.replaceChildren();
  };
  return { el, bar, stat, actions, finish };
}

async function runUploads() {
  if (uploading) return;
  uploading = true;
  while (uploadQueue.length) await uploadOne(uploadQueue.shift());
  uploading = false;
}

/** One file as the raw request body (XMLHttpRequest: fetch() has no upload progress). */
function uploadOne(u) {
  return new Promise((resolve) => {
    const { row, file } = u;
    const xhr = new XMLHttpRequest();
    u.xhr = xhr;
    xhr.open('POST', `/api/v1/upload?name=${enc(file.name)}`);
    xhr.setRequestHeader('X-Storgo-Page', '1');
    xhr.setRequestHeader('Content-Type', 'application/octet-stream');
    row.el.dataset.state = 'sending';
    let last = { t: performance.now(), b: 0 };
    let speed = 0;
    xhr.upload.addEventListener('progress', (e) => {
      const total = e.lengthComputable ? e.total : file.size;
      const now = performance.now();
      if (now - last.t > 300) {           // smoothed bytes per second
        const inst = ((e.loaded - last.b) * 1000) / (now - last.t);
        speed = speed ? 0.7 * speed + 0.3 * inst : inst;
        last = { t: now, b: e.loaded };
      }
      row.bar.max = total || 1;
      row.bar.value = e.loaded;
      const pct = total ? Math.floor((100 * e.loaded) / total) : 0;
      row.stat.textContent = e.loaded >= total ? 'storing…'
        : `${pct}%${speed ? ` · ${fmtBytes(speed)}/s` : ''}`;
    });
    xhr.addEventListener('load', () => {
      let data = null;
      try { data = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
      if (xhr.status >= 200 && xhr.status < 300 && data?.id) {
        row.bar.max = 1; row.bar.value = 1;
        row.finish('done', `Added · ${fmtBytes(data.size)}`);
        row.actions.append(copyButton(data.id), h('a', { class: 'btn ghost small', href: `/c/${data.id}`, target: '_blank', rel: 'noopener' }, 'Open'));
        placing(data.id);
        scheduleLoadItems();
      } else {
        if (xhr.status === 401) showLogin();
        row.finish('failed', data?.detail ?? `Upload failed (HTTP ${xhr.status})`);
        toast(`${file.name}: ${data?.detail ?? 'upload failed'}`, 'error');
      }
      resolve();
    });
    xhr.addEventListener('error', () => {
      row.finish('failed', 'The node did not answer');
      resolve();
    });
    xhr.addEventListener('abort', () => { row.finish('cancelled', 'Cancelled'); resolve(); });
    xhr.send(file);
  });
}

function wireUploads() {
  const input = $('#upload-input');
  input.addEventListener('change', () => { addFiles([...input.files]); input.value = ''; });
  const drop = $('#drop');
  drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', (e) => {
    if (!drop.contains(e.relatedTarget)) drop.classList.remove('over');
  });
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    const items = [...(e.dataTransfer.items ?? [])];
    const files = [];
    let folders = 0;
    items.forEach((it, i) => {
      if (it.kind !== 'file') return;
      if (it.webkitGetAsEntry?.()?.isDirectory) { folders++; return; }
      const f = it.getAsFile() ?? e.dataTransfer.files[i];
      if (f) files.push(f);
    });
    if (!items.length) files.push(...e.dataTransfer.files);
    if (folders) toast('Folders cannot be uploaded from the page: add them with `storgo add -r FOLDER`.', 'error');
    addFiles(files);
  });
  // A file dropped beside the zone must not make the browser leave the page to show it.
  for (const ev of ['dragover', 'drop']) window.addEventListener(ev, (e) => e.preventDefault());
  $('#uploads-clear').addEventListener('click', () => {
    for (const el of $$('#uploads .upload')) if (/done|failed|cancelled/.test(el.dataset.state)) el.remove();
    if (!$('#uploads').children.length) $('#uploads-box').hidden = true;
  });
}

/* -------------------------------------------------- Items: replication health */

// Provider look-ups are slow (a DHT walk), so they run lazily: when an item's row comes into
// view, at most two at a time, with the answer kept for a minute (then asked again while the
// row is on screen; see `recheckHealth`).
const providers = new Map();   // id → {state: 'waiting'|'queued'|'pending'|'done'|'error', peers, at}
const providerQueue = [];
let providersRunning = 0;
const PROVIDER_TTL = 60_000;

/**
 * The replication health of an item or replica: {label, level, hint}, level one of
 * good | warn | bad | unknown. The one place that decides it: new fields go here.
 */
function health(item) {
  if (item.root) {
    return item.complete
      ? { label: 'held for the network', level: 'good', hint: 'A replica this node keeps for another peer' }
      : { label: 'arriving', level: 'warn', hint: 'This replica is still being copied here' };
  }
  if (item.partial) return { label: 'still arriving', level: 'warn', hint: 'Not all of it is here yet' };
  const want = wanted(item);
  const p = providers.get(item.id);
  if (p?.state === 'waiting') return { label: 'placing copies…', level: 'unknown', hint: 'Copies are being placed on peers' };
  if (p?.state === 'error') return { label: 'could not check', level: 'unknown', hint: p.error };
  // A striped item: its worst stripe's shards, from /replicas/{id}/health.
  if (p?.health) {
    const hh = p.health;
    const w = hh.worst_stripe;
    const hint = w === null || w === undefined
      ? `${hh.holders.length} holders. Click to check again.`
      : `Kept as ${hh.durability}: ${hh.stripes_alive.length} stripes; the worst, stripe ${w}, has ${hh.stripes_alive[w]} of its shards alive and needs ${hh.stripes_need[w]}. Click to check again.`;
    if (hh.margin < 0) return { label: 'cannot be read', level: 'bad', hint };
    const label = `${hh.durability} · ${hh.margin} to spare`;
    return { label, level: hh.margin > 0 ? 'good' : 'warn', hint };
  }
  // While a background re-check runs, the last answer stays up.
  if (!p?.peers) return { label: 'checking…', level: 'unknown', hint: 'Asking the network who holds it' };
  const others = p.peers.filter((id) => id !== state.self).length;
  const hint = `${others} other peer${others === 1 ? '' : 's'} hold it whole; the network aims for ${want} besides this node. Click to check again.`;
  if (want === 0) return { label: 'kept here only', level: 'good', hint };
  if (others > want) return { label: `${others} copies (${want} wanted)`, level: 'good', hint };
  if (others === want) return { label: `${want} of ${want} copies`, level: 'good', hint };
  if (others > 0) return { label: `${others} of ${want} copies`, level: 'warn', hint };
  return { label: 'only here', level: 'bad', hint };
}

/** How the holders list reads beside the item's copy count: this node's own pin is not one of
 * the copies the network keeps. */
function holdersNote(id, peers) {
  const item = state.items.find((i) => i.id === id);
  if (!item || !peers.includes(state.self)) return '';
  const others = peers.length - 1;
  return ` (this node, and ${others} of the ${wanted(item)} cop${wanted(item) === 1 ? 'y' : 'ies'} the network keeps)`;
}

/** Asks who holds `id`, unless a fresh answer is cached or a question is under way. A forced
 * check (a click) shows "checking…"; a background one keeps the last answer up meanwhile. */
function checkProviders(id, force = false) {
  const p = providers.get(id);
  const busy = p && p.state !== 'done' && p.state !== 'error';
  if (busy || (!force && p && Date.now() - p.at < PROVIDER_TTL)) return;
  providers.set(id, { state: 'queued', peers: force ? undefined : p?.peers });
  providerQueue.push(id);
  refreshHealth(id);
  pumpProviders();
}

function pumpProviders() {
  while (providersRunning < 2 && providerQueue.length) {
    const id = providerQueue.shift();
    providersRunning++;
    providers.set(id, { ...providers.get(id), state: 'pending' });
    const item = state.items.find((i) => i.id === id);
    const striped = (item?.durability ?? state.status?.replication?.durability ?? '').startsWith('ec:');
    const ask = striped
      ? api(`/replicas/${enc(id)}/health`).then((health) => ({ health, peers: health.holders.map((x) => x.peer) }))
      : api(`/providers/${enc(id)}?timeout_secs=10`).then((peers) => ({ peers }));
    ask
      .then((got) => providers.set(id, { state: 'done', ...got, at: Date.now() }))
      .catch((e) => providers.set(id, { state: 'error', error: e.message, at: Date.now() }))
      .finally(() => { providersRunning--; refreshHealth(id); pumpProviders(); });
  }
}

/** A new upload: its copies are being placed, so ask a little later. */
function placing(id) {
  providers.set(id, { state: 'waiting' });
  setTimeout(() => { providers.delete(id); checkProviders(id); }, 8000);
}

const healthObserver = new IntersectionObserver((entries) => {
  for (const e of entries) {
    if (!e.isIntersecting) continue;
    healthObserver.unobserve(e.target);
    checkProviders(e.target.dataset.for);
  }
});

/** Re-asks, when their answer is old, for the items on screen. */
function recheckHealth() {
  for (const b of $$('#items button.health')) healthObserver.observe(b);
}

function healthBadge(item) {
  const hl = health(item);
  if (item.root || item.partial) {
    return h('span', { class: `health ${hl.level}`, title: hl.hint }, h('i'), hl.label);
  }
  const b = h('button', {
    type: 'button', class: `health ${hl.level}`, title: hl.hint, dataset: { for: item.id },
    on: { click: () => checkProviders(item.id, true) },
  }, h('i'), hl.label);
  healthObserver.observe(b);
  return b;
}

function refreshHealth(id) {
  const row = $(`#items [data-id="${CSS.escape(id)}"]`);
  const item = state.items.find((i) => i.id === id);
  if (row && item) $('.health', row).replaceWith(healthBadge(item));
}

/* ------------------------------------------------------------ Items: list */

async function loadItems() {
  const [items, replicas] = await Promise.all([api('/ls'), api('/replicas')]);
  state.items = items.sort((a, b) => b.pinned_at - a.pinned_at || a.name.localeCompare(b.name));
  state.replicas = replicas.sort((a, b) => b.since - a.since);
  renderItems();
  fillWhoSelect();
  updateCounts();
}
async function loadStatus() {
  state.status = await api('/status');
  renderInfo(state.status.node);
  renderStored();
  renderItemsSummary();
}

// `items` events come in bursts (several uploads): reload once per burst.
let itemsTimer = null;
function scheduleLoadItems() {
  clearTimeout(itemsTimer);
  itemsTimer = setTimeout(() => { attempt(loadItems); attempt(loadStatus); }, 150);
}

function itemRow(item) {
  const kind = item.kind === 'dir' ? 'folder' : 'file';
  return h('article', { class: 'item', dataset: { id: item.id } },
    h('div', { class: `item-icon ${item.kind}` }, icon(item.kind === 'dir' ? 'dir' : 'file')),
    h('div', { class: 'item-main' },
      h('div', { class: 'item-name', title: item.name }, item.name || '(unnamed)'),
      h('div', { class: 'item-meta muted small' },
        `${fmtBytes(item.size)} · ${kind} · added ${timeAgo(item.pinned_at)}`),
      h('div', { class: 'item-id' },
        h('code', { class: 'mono', title: item.id }, shortId(item.id, 14, 8)),
        copyButton(item.id))),
    h('div', { class: 'item-badges' },
      h('span', { class: 'badge pinned', title: 'Kept here until you unpin it' }, 'pinned'),
      healthBadge(item)),
    h('div', { class: 'item-actions' },
      h('a', { class: 'open btn ghost small', href: `/c/${item.id}`, target: '_blank', rel: 'noopener' }, 'Open'),
      // A folder has no archive download: the gateway shows its index, file by file.
      item.kind === 'dir'
        ? h('a', { class: 'download btn ghost small', href: `/c/${item.id}?download`, target: '_blank', rel: 'noopener', title: 'Folders download file by file from their index page' }, 'Download')
        : h('a', { class: 'download btn ghost small', href: `/c/${item.id}?download` }, 'Download'),
      h('button', {
        type: 'button', class: 'unpin btn ghost small danger',
        on: { click: (e) => unpin(item, e.currentTarget) },
      }, 'Unpin')));
}

function replicaRow(r) {
  return h('article', { class: 'item replica', dataset: { root: r.root } },
    h('div', { class: 'item-icon replica' }, icon('replica')),
    h('div', { class: 'item-main' },
      h('div', { class: 'item-name', title: r.root }, `replica · ${shortId(r.root, 12, 6)}`),
      h('div', { class: 'item-meta muted small' },
        `${fmtBytes(r.bytes)} · encrypted blocks, no name or key · since ${timeAgo(r.since)}`)),
    h('div', { class: 'item-badges' },
      r.shard
        ? h('span', { class: 'badge replica', title: `One column (shard ${r.shard.column}) of ${r.replication}: the network keeps it as stripes` }, `column ${r.shard.column}`)
        : h('span', { class: 'badge replica', title: `The network keeps ${r.replication} copies of it` }, 'replica'),
      healthBadge(r)),
    // A holder has no key: nothing to open or download, only the block address.
    h('div', { class: 'item-actions' }, copyButton(r.root, 'Copy root')));
}

function renderItems() {
  const box = $('#items');
  const rows = state.items.map(itemRow);
  if (state.replicas.length) {
    rows.push(h('h3', { class: 'list-sub' }, 'Replicas held for other peers'),
      ...state.replicas.map(replicaRow));
  }
  if (!rows.length) {
    rows.push(h('div', { class: 'empty' },
      h('p', { class: 'empty-title' }, 'Nothing here yet'),
      h('p', {}, 'Drop a file here to add it. Its ID is what others fetch it by.')));
  }
  box.replaceChildren(...rows);
  renderItemsSummary();
}

function renderItemsSummary() {
  const r = state.status?.replication;
  const parts = [`${state.items.length} pinned`, `${state.replicas.length} replica${state.replicas.length === 1 ? '' : 's'}`];
  if (r) parts.push(`network keeps ${r.replication} copies`);
  $('#items-summary').textContent = parts.join(' · ');
}

async function unpin(item, button) {
  const ok = confirm(`Unpin “${item.name}”?\n\nThis node stops keeping it; its blocks go at the next clean-up.`);
  if (!ok) return;
  button.disabled = true;
  const done = await attempt(() => api(`/unpin/${enc(item.id)}`, { method: 'POST' }));
  if (done) { toast(`Unpinned ${item.name}`, 'good'); scheduleLoadItems(); } else button.disabled = false;
}

/* -------------------------------------------------------------------- Fetch */

async function loadJobs() {
  const jobs = await api('/jobs');
  state.jobs = new Map(jobs.map((j) => [j.job, j]));
  $('#jobs').replaceChildren();
  for (const j of [...state.jobs.values()].sort((a, b) => b.job - a.job)) renderJob(j);
  renderJobsEmpty();
  updateCounts();
}

function renderJobsEmpty() {
  const box = $('#jobs');
  const empty = $('.empty', box);
  if (state.jobs.size && empty) empty.remove();
  if (!state.jobs.size && !empty) {
    box.append(h('div', { class: 'empty' },
      h('p', { class: 'empty-title' }, 'No fetches yet'),
      h('p', {}, 'Paste an ID someone shared with you above; its progress shows here.')));
  }
}

/** Takes in a Job (from the API or an event): the list is updated in place. */
function upsertJob(job) {
  const before = state.jobs.get(job.job);
  // The POST's answer (running) can arrive after the event that says the job ended.
  if (before && before.state !== 'running' && job.state === 'running') return;
  state.jobs.set(job.job, job);
  renderJob(job);
  renderJobsEmpty();
  updateCounts();
  if (before?.state === 'running' && job.state === 'done') {
    toast(`Fetched ${job.report?.name ?? shortId(job.id)}`, 'good');
  }
}

/** A job's element is built once and then updated, so its buttons stay clickable. */
function renderJob(job) {
  const box = $('#jobs');
  let el = $(`[data-job="${job.job}"]`, box);
  if (!el) {
    el = h('article', { class: 'job', dataset: { job: job.job } },
      h('div', { class: 'job-head' },
        h('span', { class: 'job-name' }),
        h('span', { class: 'badge job-state' })),
      h('progress', { max: 1 }),
      h('div', { class: 'job-meta muted small' }),
      h('div', { class: 'job-error' }),
      h('div', { class: 'job-actions' }));
    const after = $$('[data-job]', box).find((o) => Number(o.dataset.job) < job.job);
    box.insertBefore(el, after ?? null);
  }
  el.dataset.state = job.state;
  const name = job.report?.name ?? itemName(job.id);
  const nameEl = $('.job-name', el);
  nameEl.textContent = name ?? shortId(job.id, 14, 8);
  nameEl.classList.toggle('mono', !name);
  nameEl.title = job.id;
  $('.job-state', el).textContent = job.state;
  $('.job-state', el).className = `badge job-state ${job.state}`;

  const { bytes_done: done, bytes_total: total, peers } = job.progress;
  const bar = $('progress', el);
  if (job.state === 'done') { bar.max = 1; bar.value = 1; }
  else if (total > 0) { bar.max = total; bar.value = done; }
  else if (job.state === 'running') bar.removeAttribute('value');   // indeterminate
  else { bar.max = 1; bar.value = 0; }

  const peersText = `${peers} peer${peers === 1 ? '' : 's'}`;
  let meta;
  if (job.state === 'running') {
    meta = total > 0
      ? `${fmtBytes(done)} of ${fmtBytes(total)} · ${Math.floor((100 * done) / total)}% · ${peersText}`
      : `looking for peers that hold it…${peers ? ` · ${peersText}` : ''}`;
  } else if (job.state === 'done' && job.report) {
    const r = job.report;
    const n = r.peers_used.length;
    const from = r.bytes_fetched ? `${fmtBytes(r.bytes_fetched)} fetched from ${n} peer${n === 1 ? '' : 's'}` : 'all of it was here already';
    meta = `${fmtBytes(r.size)} · ${r.kind === 'dir' ? 'folder' : 'file'} · ${from}${job.pin ? ' · pinned' : ''}`;
  } else {
    meta = total > 0 ? `${fmtBytes(done)} of ${fmtBytes(total)}` : '';
  }
  $('.job-meta', el).textContent = [meta, `started ${timeAgo(job.started)}`].filter(Boolean).join(' · ');
  $('.job-error', el).textContent = job.state === 'failed' ? (job.error?.detail ?? 'failed') : '';

  // The buttons change only with the state.
  if (el.dataset.drawn === job.state) return;
  el.dataset.drawn = job.state;
  const actions = $('.job-actions', el);
  actions.replaceChildren();
  if (job.state === 'running') {
    actions.append(h('button', {
      type: 'button', class: 'cancel btn ghost small danger',
      on: { click: (e) => { e.currentTarget.disabled = true; attempt(() => api(`/jobs/${job.job}/cancel`, { method: 'POST' })); } },
    }, 'Cancel'));
  } else if (job.state === 'done') {
    actions.append(
      h('a', { class: 'open btn ghost small', href: `/c/${job.id}`, target: '_blank', rel: 'noopener' }, 'Open'),
      h('a', {
        class: 'download btn primary small', href: `/c/${job.id}?download`,
        ...(job.report?.kind === 'dir' ? { target: '_blank', rel: 'noopener', title: 'Folders download file by file from their index page' } : {}),
      }, 'Download'),
      copyButton(job.id));
  } else {
    actions.append(h('button', {
      type: 'button', class: 'retry btn ghost small', on: { click: () => startFetch(job.id, job.pin) },
    }, 'Try again'));
  }
  if (job.state !== 'running') {
    // A finished job can be dismissed: the node forgets it, the card goes.
    actions.append(h('button', {
      type: 'button', class: 'dismiss btn ghost small', title: 'Remove from this list',
      on: {
        click: async (e) => {
          e.currentTarget.disabled = true;
          if (await attempt(() => api(`/jobs/${job.job}`, { method: 'DELETE' }))) el.remove();
        },
      },
    }, 'Dismiss'));
  }
}

async function startFetch(id, pin) {
  const job = await attempt(() => api(`/fetch/${enc(id)}?pin=${pin}`, { method: 'POST' }));
  if (job) upsertJob(job);
  return job;
}

function wireFetch() {
  const field = $('#fetch-id');
  $('#fetch-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const id = cleanId(field.value);
    if (!id) { toast('Paste a content ID first.', 'error'); field.focus(); return; }
    if (!id.startsWith('sg1')) {
      toast('That does not look like a content ID: storgo IDs start with “sg1”.', 'error');
      return;
    }
    const go = $('#fetch-go');
    go.disabled = true;
    if (await startFetch(id, $('#fetch-pin').checked)) field.value = '';
    go.disabled = false;
  });
  // Enter fetches; Shift+Enter is still a line break.
  field.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); $('#fetch-form').requestSubmit(); }
  });
}

/* -------------------------------------------------------------------- Peers */

const FOUND_BY = { bootstrap: 'bootstrap', mdns: 'LAN (mDNS)', dht: 'DHT', inbound: 'inbound' };

async function loadPeers() {
  const peers = (await api('/peers')).sort((a, b) => a.peer_id.localeCompare(b.peer_id));
  const body = $('#peers');
  $('.empty-row', body)?.remove();
  const seen = new Set();
  for (const p of peers) {
    seen.add(p.peer_id);
    let row = $(`[data-peer="${CSS.escape(p.peer_id)}"]`, body);
    if (!row) {
      row = h('tr', { dataset: { peer: p.peer_id } },
        h('td', { 'data-label': 'Peer' },
          h('code', { class: 'mono', title: p.peer_id }, shortPeer(p.peer_id)), ' ',
          copyButton(p.peer_id, 'Copy', 'copy-peer')),
        h('td', { 'data-label': 'Address', class: 'mono addr' }),
        h('td', { 'data-label': 'Latency', class: 'num' }),
        h('td', { 'data-label': 'Found by' }));
      body.append(row);
    }
    const [, addr, rtt, found] = row.children;
    addr.textContent = p.via === 'relayed' ? `${p.address} (relayed)` : p.address;
    rtt.textContent = p.rtt_ms == null ? '—' : `${p.rtt_ms < 10 ? p.rtt_ms.toFixed(1) : Math.round(p.rtt_ms)} ms`;
    found.replaceChildren(h('span', { class: `badge found-${p.found_by}` }, FOUND_BY[p.found_by] ?? p.found_by));
  }
  for (const row of $$('[data-peer]', body)) if (!seen.has(row.dataset.peer)) row.remove();
  if (!peers.length) {
    body.append(h('tr', { class: 'empty-row' }, h('td', { colspan: 4 },
      'Not connected to any peer yet. Start another node with --bootstrap and one of the addresses above.')));
  }
  $('#peers-summary').textContent = `${peers.length} connected`;
}

/** "This node" card: its full PeerId, addresses to join through and counters. */
function renderSelf() {
  const info = state.info;
  if (!info) return;
  $('#self-peer').textContent = info.peer_id;
  const list = $('#self-addrs');
  const key = info.listen_addrs.join(' ');
  if (list.dataset.key !== key) {
    list.dataset.key = key;
    list.replaceChildren(...info.listen_addrs.map((a) =>
      h('li', {}, h('code', { class: 'mono break' }, a), copyButton(a, 'Copy', 'copy-addr'))));
  }
  const stats = [
    ['Routing table', `${info.routing_table_size} peer${info.routing_table_size === 1 ? '' : 's'}`],
    ['DHT mode', info.dht_mode],
    ['Reachability', info.reachability ? info.reachability.status
      + (info.reachability.relays.length ? ` · through ${info.reachability.relays.length} relay${info.reachability.relays.length === 1 ? '' : 's'}` : '')
      + (info.reachability.relay_service ? ' · relays for others' : '') : '–'],
    ['Records provided', info.records_provided],
    ['Provider records held', info.provider_records_held],
    ['Served', fmtBytes(info.bytes_served)],
    ['Fetched', fmtBytes(info.bytes_fetched)],
    ['Connections made', info.connections_made],
  ];
  $('#self-stats').replaceChildren(...stats.map(([k, v]) =>
    h('div', {}, h('dt', {}, k), h('dd', {}, v ?? '–'))));
}

/* ------------------------------------------------------------------ Network */

async function loadRouting() {
  const r = await api('/routing');
  const key = JSON.stringify(r);
  if (key === state.routingKey) return;
  state.routingKey = key;
  state.routing = r;
  drawRouting();
}

/** Draws the routing table: this node in the centre, a ring per k-bucket (nearer inside). */
function drawRouting() {
  const svg = $('#routing');
  const r = state.routing;
  if (!r) return;
  const C = 300, INNER = 80, OUTER = 262;
  const buckets = r.buckets.filter((b) => b.peers.length).sort((a, b) => a.index - b.index);
  // One ring per bucket index from the nearest held (252 at least, so that a small network
  // still shows where nearer peers would go) out to 255, empty ones too; unless that would be
  // too many rings to tell apart: then one per bucket held.
  let rings = buckets.map((b) => b.index);
  const lo = Math.min(252, ...rings);
  if (255 - lo < 12) rings = Array.from({ length: 256 - lo }, (_, i) => lo + i);
  const radius = (idx) => {
    const i = rings.indexOf(idx);
    return rings.length === 1 ? (INNER + OUTER) / 2 : INNER + ((OUTER - INNER) * i) / (rings.length - 1);
  };
  const holders = state.holders?.peers ?? new Set();
  const total = buckets.reduce((n, b) => n + b.peers.length, 0);
  const back = s('g', { class: 'rings' });
  const links = s('g', { class: 'links' });
  const dots = s('g', { class: 'dots' });

  for (const idx of rings) {
    const rad = radius(idx);
    back.append(s('circle', { class: 'ring', cx: C, cy: C, r: rad }),
      s('text', { class: 'ring-label', x: C, y: C - rad - 5, 'text-anchor': 'middle' }, `bucket ${idx}`));
  }
  buckets.forEach((b, bi) => {
    const rad = radius(b.index);
    const peers = [...b.peers].sort((x, y) => x.peer_id.localeCompare(y.peer_id));
    // Spread the ring's peers evenly, each ring turned a little so they do not line up
    // (and none sits on the ring's label at the top).
    const start = -Math.PI / 2 + Math.PI / Math.max(peers.length, 2) + bi * 0.7;
    peers.forEach((p, j) => {
      const a = start + (2 * Math.PI * j) / peers.length;
      const x = C + rad * Math.cos(a), y = C + rad * Math.sin(a);
      const hold = holders.has(p.peer_id);
      if (p.connected || hold) links.append(s('line', { class: hold ? 'link hold' : 'link', x1: C, y1: C, x2: x, y2: y }));
      const g = s('g', {
        class: `peer ${p.connected ? 'on' : 'off'}${hold ? ' hold' : ''}`, 'data-peer': p.peer_id,
        transform: `translate(${x.toFixed(1)} ${y.toFixed(1)})`, tabindex: 0,
      },
      s('title', {}, `${p.peer_id}\nbucket ${b.index} · ${p.connected ? 'connected' : 'not connected'}${hold ? ' · holds the item' : ''}`),
      s('circle', { r: hold ? 12 : 9 }));
      if (total <= 16) g.append(s('text', { y: 26, 'text-anchor': 'middle', class: 'peer-label' }, p.peer_id.slice(-6)));
      g.addEventListener('click', () => showPeerDetail(p, b.index));
      dots.append(g);
    });
  });
  const selfHold = holders.has(r.local_peer_id);
  const self = s('g', { class: `self${selfHold ? ' hold' : ''}`, 'data-peer': r.local_peer_id, transform: `translate(${C} ${C})` },
    s('title', {}, `This node: ${r.local_peer_id}`),
    s('circle', { r: selfHold ? 22 : 19 }),
    s('text', { y: 5, 'text-anchor': 'middle' }, 'you'));
  const note = total ? null
    : s('text', { class: 'ring-label', x: C, y: C + 60, 'text-anchor': 'middle' }, 'No peers in the routing table yet');
  svg.replaceChildren(back, links, dots, self, ...(note ? [note] : []));
}

function showPeerDetail(p, bucket) {
  const d = $('#peer-detail');
  d.replaceChildren(h('code', { class: 'mono break' }, p.peer_id), ` · bucket ${bucket} · ${p.connected ? 'connected' : 'not connected'}`,
    ...(p.addresses.length ? [h('br'), h('span', { class: 'mono break' }, p.addresses[0])] : []));
}

/** The "Who holds an item?" select lists the items pinned here. */
function fillWhoSelect() {
  const sel = $('#who-item');
  const keep = sel.value;
  sel.replaceChildren(h('option', { value: '' }, state.items.length ? 'Choose an item…' : 'No items pinned here'),
    ...state.items.map((i) => h('option', { value: i.id }, `${i.name} (${fmtBytes(i.size)})`)));
  if (state.items.some((i) => i.id === keep)) sel.value = keep;
}

function wireNetwork() {
  $('#who-item').addEventListener('change', () => { $('#who-id').value = ''; });
  $('#who-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const id = cleanId($('#who-id').value) || $('#who-item').value;
    if (!id) { toast('Choose an item or paste a content ID.', 'error'); return; }
    const go = $('#who-go');
    const out = $('#who-result');
    go.disabled = true;
    out.replaceChildren(h('p', { class: 'muted small' }, 'Asking the network… (up to 10 s)'));
    const peers = await attempt(() => api(`/providers/${enc(id)}?timeout_secs=10`));
    go.disabled = false;
    if (!peers) { out.replaceChildren(); return; }
    state.holders = { id, peers: new Set(peers) };
    // One answer for both views: the item's copy count is this list, counted the same way.
    providers.set(id, { state: 'done', peers, at: Date.now() });
    refreshHealth(id);
    if (state.routing) drawRouting();
    const known = new Set((state.routing?.buckets ?? []).flatMap((b) => b.peers.map((p) => p.peer_id)));
    const name = itemName(id) ?? shortId(id, 12, 6);
    const clear = h('button', {
      type: 'button', class: 'linkish small', on: {
        click: () => { state.holders = null; out.replaceChildren(); drawRouting(); },
      },
    }, 'Clear');
    out.replaceChildren(
      h('p', { class: 'small row-between' }, h('span', {}, peers.length
        ? `${peers.length} peer${peers.length === 1 ? ' holds' : 's hold'} “${name}” whole${holdersNote(id, peers)}:`
        : `No peer says it holds “${name}” whole (yet).`), clear),
      h('ul', { class: 'holders' }, ...peers.map((p) => h('li', { dataset: { peer: p } },
        h('code', { class: 'mono', title: p }, shortPeer(p)),
        p === state.self ? h('span', { class: 'badge pinned' }, 'this node')
          : known.has(p) ? null : h('span', { class: 'badge', title: 'Found through the DHT, not in this node\'s routing table' }, 'not in table')))));
  });
}

/* -------------------------------------------------------------- Collections */

async function loadCollections() {
  state.collections = await api('/collections') ?? [];
  renderCollections();
}

/** Entries grouped by their first tag (untagged last), newest first within a group. */
function groupByTag(entries) {
  const groups = new Map();
  for (const e of [...entries].sort((a, b) => b.added - a.added)) {
    const tag = e.tags[0] ?? '';
    if (!groups.has(tag)) groups.set(tag, []);
    groups.get(tag).push(e);
  }
  return [...groups.entries()].sort(([a], [b]) => (a === '') - (b === '') || a.localeCompare(b));
}

function entryRow(e, isNew) {
  return h('article', { class: `entry${isNew ? ' new' : ''}`, dataset: { id: e.id } },
    h('div', { class: 'entry-main' },
      h('div', { class: 'entry-title' }, e.title || '(untitled)', isNew ? h('span', { class: 'badge new-badge' }, 'new') : null),
      e.note ? h('div', { class: 'entry-note muted small' }, e.note) : null,
      h('div', { class: 'entry-meta muted small' },
        `added ${timeAgo(e.added)}`,
        ...e.tags.map((t) => h('button', { type: 'button', class: 'tag', on: { click: () => searchTag(t) } }, t)))),
    h('div', { class: 'item-actions' },
      copyButton(e.id),
      h('a', { class: 'btn ghost small', href: `/c/${e.id}`, target: '_blank', rel: 'noopener' }, 'Open')));
}

function collectionCard(c) {
  const card = h('article', { class: 'card collection', dataset: { id: c.id } });
  const head = h('div', { class: 'collection-head' },
    h('div', {},
      h('h3', { class: 'collection-name' }, c.name || c.local_name || '(no version yet)'),
      h('div', { class: 'muted small' },
        c.seq ? `version ${c.seq} · published ${timeAgo(c.published)} · ${c.entries.length} items` : 'looking for its first version…',
        c.private ? ' · private' : '')),
    h('div', { class: 'item-badges' },
      c.local_name ? h('span', { class: 'badge pinned', title: `Published from this node as ${c.local_name}` }, 'yours') : null,
      c.auto_fetch ? h('span', { class: 'badge', title: 'Every item is kept on this node' }, 'auto-fetch') : null));
  const actions = h('div', { class: 'collection-actions' },
    copyButton(c.id, 'Copy collection ID'),
    h('button', { type: 'button', class: 'btn ghost small', on: { click: () => toggleHistory(c, card) } }, 'History'));
  card.append(head, actions);
  if (c.sealed) card.append(h('p', { class: 'muted small' }, 'Private: this ID has no read key, so the listing is sealed.'));
  if (c.can_publish) card.append(publisherBox(c));
  const groups = groupByTag(c.entries);
  for (const [tag, entries] of groups) {
    card.append(h('h4', { class: 'group-tag' }, tag || 'untagged'),
      h('div', { class: 'list' }, entries.map((e) => entryRow(e, c.new_entries.includes(e.id)))));
  }
  const hist = state.history.get(c.id);
  if (hist) card.append(historyList(hist));
  return card;
}

/** Drop files on a collection you publish: each is uploaded and added to its draft. */
function publisherBox(c) {
  const input = h('input', { type: 'file', multiple: true, class: 'visually-hidden', id: `pub-${c.local_name}` });
  const box = h('div', { class: 'drop small-drop' },
    h('p', { class: 'small' }, 'Drop files here to add them to this collection'),
    input, h('label', { class: 'btn ghost small', for: input.id }, 'Choose files'),
    h('div', { class: 'row-between wrap' },
      h('span', { class: 'muted small' }, c.pending ? `${c.pending} changes not yet published` : 'Everything is published'),
      h('button', { type: 'button', class: 'btn primary small', disabled: !c.pending,
        on: { click: (e) => publish(c, e.currentTarget) } }, 'Publish')));
  const add = (files) => attempt(() => addToCollection(c, files));
  input.addEventListener('change', () => { add([...input.files]); input.value = ''; });
  box.addEventListener('dragover', (e) => { e.preventDefault(); box.classList.add('over'); });
  box.addEventListener('dragleave', () => box.classList.remove('over'));
  box.addEventListener('drop', (e) => { e.preventDefault(); box.classList.remove('over'); add([...e.dataTransfer.files]); });
  return box;
}

async function addToCollection(c, files) {
  for (const file of files) {
    const res = await fetch(`/api/v1/upload?name=${enc(file.name)}`, {
      method: 'POST', body: file, credentials: 'same-origin',
      headers: { 'X-Storgo-Page': '1', 'Content-Type': 'application/octet-stream' },
    });
    const data = await res.json().catch(() => null);
    if (!res.ok || !data?.id) throw new ApiError(res.status, data?.error, data?.detail ?? `${file.name}: upload failed`);
    const title = file.name.replace(/\.[^.]+$/, '');
    await api(`/collections/${enc(c.local_name)}/entries`, {
      method: 'POST', body: JSON.stringify({ id: data.id, title, tags: [], note: '' }),
    });
    toast(`${file.name} added to ${c.name || c.local_name}`, 'good');
  }
  await loadCollections();
}

async function publish(c, button) {
  button.disabled = true;
  const p = await attempt(() => api(`/collections/${enc(c.local_name)}/publish`, { method: 'POST' }));
  if (p) toast(`Published version ${p.seq} of ${c.name || c.local_name}`, 'good');
  await attempt(loadCollections);
}

async function toggleHistory(c) {
  if (state.history.has(c.id)) state.history.delete(c.id);
  else {
    const log = await attempt(() => api(`/collections/${enc(c.id)}/log`));
    if (!log) return;
    state.history.set(c.id, log);
  }
  renderCollections();
}

function historyList(log) {
  return h('div', { class: 'history' },
    h('h4', { class: 'group-tag' }, 'History (every signature and link verified)'),
    h('ol', { class: 'history-list' }, log.map((v) => h('li', {},
      h('b', {}, `version ${v.seq}`), ` · ${timeAgo(v.published)} · ${v.signer}`,
      v.entries != null ? ` · ${v.entries} items` : ' · sealed'))));
}

function renderCollections() {
  const box = $('#collections');
  box.replaceChildren(...state.collections.map(collectionCard));
  if (!state.collections.length) {
    box.append(h('p', { class: 'muted empty' }, 'No collections yet: follow one by its ID, or publish your own.'));
  }
  const items = state.collections.reduce((n, c) => n + c.entries.length, 0);
  $('#collections-summary').textContent = state.collections.length
    ? `${state.collections.length} collections · ${items} items` : '';
}

async function runSearch() {
  const q = $('#search-words').value.trim();
  const tag = $('#search-tag').value.trim();
  const box = $('#search-results');
  if (!q && !tag) { box.replaceChildren(); return; }
  const hits = await attempt(() => api(`/collections/search?q=${enc(q)}${tag ? `&tag=${enc(tag)}` : ''}`));
  if (!hits) return;
  box.replaceChildren(
    h('div', { class: 'row-between section-head' }, h('h2', { class: 'h-small' }, `${hits.length} found`),
      h('button', { type: 'button', class: 'btn ghost small', on: { click: () => { $('#search-words').value = ''; $('#search-tag').value = ''; box.replaceChildren(); } } }, 'Clear')),
    ...hits.map((hit) => {
      const row = entryRow(hit.entry, false);
      row.querySelector('.entry-meta').prepend(h('span', {}, `${hit.name} · version ${hit.seq} · `));
      return row;
    }));
}

function searchTag(t) {
  $('#search-tag').value = t;
  $('#search-words').value = '';
  attempt(runSearch);
}

/** A followed collection has a new version: toast, count, and a notification if allowed. */
function onCollectionNews(ev) {
  const titles = ev.new_entries.map((e) => e.title).filter(Boolean);
  const what = titles.length ? `${titles.slice(0, 3).join(', ')}${titles.length > 3 ? '…' : ''}` : `version ${ev.seq}`;
  toast(`New in ${ev.name || 'a collection'}: ${what}`, 'good');
  if (state.view === 'collections') attempt(loadCollections);
  else { state.news += ev.new_entries.length || 1; updateCounts(); }
  if ('Notification' in window && Notification.permission === 'granted' && document.hidden) {
    new Notification(`storgo: ${ev.name || 'collection'} updated`, { body: what, icon: '/assets/icon.svg' });
  }
}

function wireCollections() {
  $('#follow-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const id = cleanId($('#follow-id').value);
    if (!id) return;
    const button = $('#follow-go');
    button.disabled = true;
    const v = await attempt(() => api(`/collections/${enc(id)}/follow`, {
      method: 'POST', body: JSON.stringify({ auto_fetch: $('#follow-auto').checked }),
    }));
    button.disabled = false;
    if (v) {
      $('#follow-id').value = '';
      toast(v.seq ? `Following ${v.name}: version ${v.seq}` : 'Following; no version found yet', 'good');
      await attempt(loadCollections);
    }
  });
  $('#new-collection-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const name = $('#new-collection-name').value.trim();
    if (!name) return;
    const made = await attempt(() => api('/collections', {
      method: 'POST', body: JSON.stringify({ name, private: $('#new-collection-private').checked }),
    }));
    if (made) {
      $('#new-collection-name').value = '';
      toast(`Created ${name}: add files, then publish`, 'good');
      await attempt(loadCollections);
    }
  });
  $('#search-form').addEventListener('submit', (e) => { e.preventDefault(); attempt(runSearch); });
  if ('Notification' in window && Notification.permission === 'default') {
    const b = $('#notify-me');
    b.hidden = false;
    b.addEventListener('click', async () => { await Notification.requestPermission(); b.hidden = true; });
  }
}

/* ------------------------------------------------------------------- events */

let events = null;
let everOpened = false;
let lastProvided = null;

/** Follows /api/v1/events; EventSource reconnects on its own after a dropped connection. */
function connectEvents() {
  const es = new EventSource('/api/v1/events');
  events = es;
  es.addEventListener('open', () => {
    $('#live-dot').className = 'dot live';
    $('#live-dot').parentElement.title = 'Peers connected now (live)';
    if (everOpened) resync();          // events may have been missed while away
    everOpened = true;
  });
  es.addEventListener('error', () => {
    $('#live-dot').className = 'dot';
    $('#live-dot').parentElement.title = 'Reconnecting to the node…';
    // A refused connection (401, node restarted) is not retried by the browser: do it here.
    if (es.readyState === EventSource.CLOSED && events === es) {
      events = null;
      setTimeout(async () => {
        try { await api('/id'); connectEvents(); } catch (e) { if (e.status !== 401) setTimeout(connectEvents, 5000); }
      }, 3000);
    }
  });
  es.addEventListener('status', (e) => {
    const info = JSON.parse(e.data);
    renderInfo(info);
    if (info.store) {
      state.status = { ...(state.status || {}), store: info.store };
      renderStored();
    }
    // Replicas taken in or handed off send no `items` event: read them again when the count
    // of records provided moves, and /status every 30 s anyway.
    const tick = ++state.statusTicks % 15 === 0;
    if (lastProvided !== null && info.records_provided !== lastProvided) scheduleLoadItems();
    else if (tick) attempt(loadStatus);
    lastProvided = info.records_provided;
    if (tick && state.view === 'items') recheckHealth();
    if (state.view === 'peers') attempt(loadPeers);
    if (state.view === 'network') attempt(loadRouting);
  });
  es.addEventListener('items', () => scheduleLoadItems());
  es.addEventListener('job', (e) => upsertJob(JSON.parse(e.data)));
  es.addEventListener('collection', (e) => onCollectionNews(JSON.parse(e.data)));
}

/** Reads everything afresh (after a reconnect). */
function resync() {
  attempt(loadStatus);
  attempt(loadItems);
  attempt(loadJobs);
  showView(state.view);
}

/* ----------------------------------------------------------------- start-up */

async function start() {
  wireUploads();
  wireFetch();
  wireNetwork();
  wireCollections();
  $('#node-id').addEventListener('click', () => state.self && copyText(state.self, null).then((ok) => ok && toast('PeerId copied', 'good')));
  for (const b of $$('[data-view]')) b.addEventListener('click', () => { location.hash = b.dataset.view; });
  window.addEventListener('hashchange', () => showView(location.hash.slice(1)));
  $('#logout').addEventListener('click', async () => {
    await fetch('/logout', { method: 'POST', headers: { 'X-Storgo-Page': '1' } }).catch(() => {});
    showLogin();
  });

  let info;
  try { info = await api('/id'); } catch (e) {
    if (e.status !== 401) toast(e.message, 'error');
    return;
  }
  renderInfo(info);
  for (const id of ['#main', '#tabs', '#footer']) $(id).hidden = false;
  showView(location.hash.slice(1));
  renderJobsEmpty();
  await Promise.all([attempt(loadStatus), attempt(loadItems), attempt(loadJobs)]);
  connectEvents();
}

start();

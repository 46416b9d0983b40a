// promptdex page: image -> prompt, and prompt search as you type. No framework, no build step.
'use strict';

const $ = (id) => document.getElementById(id);

// An element with attributes and children (strings become text nodes, never HTML).
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === 'class') node.className = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child == null) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

// fetch + JSON; throws an Error carrying the server's {error, detail}.
async function api(url, options) {
  const response = await fetch(url, options);
  let data = null;
  try { data = await response.json(); } catch (_) { /* not JSON */ }
  if (!response.ok) {
    const detail = data && data.detail ? data.detail : response.statusText;
    const err = new Error(detail || ('HTTP ' + response.status));
    err.status = response.status;
    err.retryAfter = response.headers.get('Retry-After');
    throw err;
  }
  return data;
}

const fmt = (x, digits = 3) => (typeof x === 'number' ? x.toFixed(digits) : '–');
const thumbUrl = (id) => '/api/images/' + encodeURIComponent(id) + '?thumb=1';
const imageUrl = (id) => '/api/images/' + encodeURIComponent(id);

function setState(state) { document.body.dataset.state = state; }

function setStatus(node, text, isError) {
  node.textContent = text || '';
  node.classList.toggle('error', !!isError);
}

function errorText(err) {
  if (err.status === 503 && err.retryAfter) return err.message + ' (busy: try again in ' + err.retryAfter + ' s)';
  return err.message;
}

// ---- statistics line ----
api('/api/stats').then((s) => {
  const mb = (s.index.bytes / 1e6).toFixed(1);
  const models = [s.models.text, s.models.image].filter(Boolean).join(', ');
  $('stats').textContent = s.index.records.toLocaleString() + ' records · ' +
    s.index.images.toLocaleString() + ' images · ' + mb + ' MB index · ' + models;
}).catch(() => {});

// ---- image -> prompt ----
let job = 0;

async function handleFile(file) {
  if (!file) return;
  const mine = ++job;
  setState('working');
  setStatus($('status'), 'Working on ' + file.name + '…');
  $('result').hidden = true;
  const preview = $('preview');
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.src = URL.createObjectURL(file);

  const form = () => { const f = new FormData(); f.append('image', file, file.name); return f; };
  const metadata = $('use-metadata').checked ? '1' : '0';
  const started = performance.now();
  const generated = api('/api/generate?metadata=' + metadata, { method: 'POST', body: form() });
  const neighbours = api('/api/search/image?k=12', { method: 'POST', body: form() });
  try {
    const g = await generated;
    if (mine !== job) return;
    showGenerated(g);
    $('result').hidden = false;
    setStatus($('status'), 'Done in ' + Math.round(performance.now() - started) + ' ms.');
  } catch (err) {
    if (mine !== job) return;
    setStatus($('status'), 'Could not generate a prompt: ' + errorText(err), true);
    setState('error');
    return;
  }
  try {
    const found = await neighbours;
    if (mine !== job) return;
    showNeighbours(found);
  } catch (err) {
    if (mine !== job) return;
    $('neighbours').replaceChildren();
    $('neighbours-note').textContent = err.status === 404 ? 'The index holds no images.' : errorText(err);
  }
  setState('done');
}

function showGenerated(g) {
  $('prompt').textContent = g.prompt;
  $('copy').textContent = 'Copy';
  if (g.source === 'embedded') {
    const where = g.embedded && g.embedded.location ? ' (' + g.embedded.location + ')' : '';
    $('source').textContent = 'Stored in the file' + where + '.';
  } else {
    $('source').textContent = 'Ensemble of ' + g.parts.length + ' candidates · cosine to the ensemble ' +
      fmt(g.cosine_to_ensemble) + ' · ' + Math.round(g.timings_ms.total) + ' ms';
  }
  const chips = [];
  if (g.tags && g.tags.phrase) chips.push(el('span', { class: 'chip tag', title: 'ImageNet tags' }, g.tags.phrase));
  for (const m of g.modifiers || []) chips.push(el('span', { class: 'chip', title: m.category }, m.phrase));
  for (const note of g.missing || []) chips.push(el('span', { class: 'chip', title: 'missing' }, 'note: ' + note));
  $('chips').replaceChildren(...chips);

  const rows = (g.parts || []).filter((p) => p.text).map((p) => el('tr', {},
    el('td', {}, p.kind),
    el('td', {}, fmt(p.weight)),
    el('td', {}, fmt(p.similarity)),
    el('td', { class: 'text' }, p.text)));
  $('parts').tBodies[0].replaceChildren(...rows);
  $('parts-count').textContent = rows.length + ' candidates';
}

function showNeighbours(found) {
  const cards = (found.images || []).map((hit) => el('a', { class: 'card', href: imageUrl(hit.id), target: '_blank', rel: 'noopener' },
    el('img', { src: thumbUrl(hit.id), alt: hit.prompt || 'indexed image', loading: 'lazy' }),
    el('div', { class: 'score' }, 'similarity ' + fmt(hit.similarity)),
    el('div', { class: 'text' }, hit.prompt || '(no prompt)')));
  $('neighbours').replaceChildren(...cards);
  $('neighbours-note').textContent = cards.length ? '' : 'No indexed images.';
}

$('file').addEventListener('change', (e) => handleFile(e.target.files[0]));

const drop = $('drop');
for (const name of ['dragenter', 'dragover']) {
  drop.addEventListener(name, (e) => { e.preventDefault(); drop.classList.add('over'); });
}
for (const name of ['dragleave', 'drop']) {
  drop.addEventListener(name, () => drop.classList.remove('over'));
}
drop.addEventListener('drop', (e) => {
  e.preventDefault();
  handleFile(e.dataTransfer.files[0]);
});
// A file dropped beside the target must not navigate away from the page.
window.addEventListener('dragover', (e) => e.preventDefault());
window.addEventListener('drop', (e) => e.preventDefault());

$('copy').addEventListener('click', async () => {
  const text = $('prompt').textContent;
  try {
    await navigator.clipboard.writeText(text);
  } catch (_) {
    const range = document.createRange();
    range.selectNodeContents($('prompt'));
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    document.execCommand('copy');
  }
  $('copy').textContent = 'Copied';
});

// ---- prompt search as you type ----
let timer = null;
let inflight = null;

function searchSoon() {
  clearTimeout(timer);
  timer = setTimeout(search, 250);
}

async function search() {
  const q = $('q').value.trim();
  if (inflight) inflight.abort();
  if (!q) {
    $('hits').replaceChildren();
    setStatus($('search-status'), '');
    return;
  }
  inflight = new AbortController();
  const started = performance.now();
  const url = '/api/search?k=20&mode=' + encodeURIComponent($('mode').value) + '&q=' + encodeURIComponent(q);
  try {
    const hits = await api(url, { signal: inflight.signal });
    const items = hits.map((h) => {
      const isImage = h.metadata && h.metadata.kind === 'image';
      return el('li', {}, el('div', { class: 'hit' },
        isImage ? el('img', { src: thumbUrl(h.id), alt: '', loading: 'lazy' }) : null,
        el('div', {}, el('span', { class: 'score' }, fmt(h.score, 4) + ' '), h.prompt)));
    });
    $('hits').replaceChildren(...items);
    setStatus($('search-status'), hits.length + ' results in ' + Math.round(performance.now() - started) + ' ms');
  } catch (err) {
    if (err.name === 'AbortError') return;
    setStatus($('search-status'), errorText(err), true);
  }
}

$('q').addEventListener('input', searchSoon);
$('mode').addEventListener('change', search);
setState('ready');

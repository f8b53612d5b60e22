"""The labelling page's static HTML, CSS and JavaScript (kept in Python so no package data is needed).

Model text is only ever put into the page with ``textContent`` (never
``innerHTML``), and the server sends a Content-Security-Policy that allows
no inline script, so a response containing HTML or ``<script>`` renders as
text.
"""

HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>frugalign labelling</title>
<link rel="stylesheet" href="/app.css">
</head>
<body>
<header>
  <strong>frugalign</strong> &middot; which response is better?
  <span id="progress-text">loading&hellip;</span>
  <div id="progress-bar"><div id="progress-fill"></div></div>
</header>
<main id="labeller">
  <section id="prompt-box">
    <div class="caption">Prompt <span id="item-id"></span></div>
    <div id="prompt"></div>
  </section>
  <section id="responses">
    <article class="resp" id="card-a"><h2>A <kbd>1</kbd>/<kbd>a</kbd></h2><div class="text" id="resp-a"></div></article>
    <article class="resp" id="card-b"><h2>B <kbd>2</kbd>/<kbd>b</kbd></h2><div class="text" id="resp-b"></div></article>
  </section>
  <section id="controls">
    <button id="btn-a" data-label="A">A is better <kbd>1</kbd></button>
    <button id="btn-tie" data-label="tie">Tie <kbd>3</kbd>/<kbd>t</kbd></button>
    <button id="btn-b" data-label="B">B is better <kbd>2</kbd></button>
    <input id="comment" type="text" placeholder="optional comment (saved with the next answer)">
    <span class="nav"><kbd>&larr;</kbd>/<kbd>&rarr;</kbd> previous/next</span>
  </section>
  <div id="status" role="status"></div>
</main>
<section id="done" hidden>
  <h1>All pairs labelled &mdash; thank you.</h1>
  <p>Every answer is already saved to <code id="labels-file"></code>.
  Press <kbd>&larr;</kbd> to review or change an answer.</p>
</section>
<script src="/app.js"></script>
</body>
</html>
"""

CSS = """
body { font-family: system-ui, sans-serif; margin: 0; background: #f6f6f4; color: #222; }
header { padding: .6rem 1rem; background: #233; color: #fff; display: flex; gap: 1rem; align-items: center; }
#progress-bar { flex: 1; height: .5rem; background: #566; border-radius: .25rem; overflow: hidden; }
#progress-fill { height: 100%; width: 0; background: #7c7; }
main, #done { padding: 1rem; max-width: 1400px; margin: auto; }
.caption { font-size: .8rem; color: #666; margin-bottom: .3rem; }
#prompt { background: #fff; border: 1px solid #ccc; padding: .6rem; border-radius: .4rem; }
.turn { white-space: pre-wrap; margin: .2rem 0; }
.role { font-size: .75rem; color: #888; text-transform: uppercase; margin-right: .4rem; }
#responses { display: grid; grid-template-columns: 1fr 1fr; gap: 1rem; margin: 1rem 0; }
.resp { background: #fff; border: 2px solid #ccc; border-radius: .4rem; padding: .6rem; }
.resp h2 { margin: 0 0 .4rem 0; font-size: 1rem; }
.resp .text { white-space: pre-wrap; overflow-wrap: anywhere; font-family: ui-monospace, monospace; font-size: .9rem; }
.resp.chosen { border-color: #3a3; background: #f3fff3; }
.resp.tie { border-color: #aa3; }
#controls { display: flex; gap: .6rem; align-items: center; flex-wrap: wrap; }
button { font-size: 1rem; padding: .4rem .9rem; cursor: pointer; }
button.current { outline: 3px solid #3a3; }
#comment { flex: 1; min-width: 12rem; padding: .4rem; }
kbd { background: #eee; color: #222; border: 1px solid #bbb; border-radius: 3px; padding: 0 .3rem; font-size: .8rem; }
.nav { color: #666; font-size: .85rem; }
#status { margin-top: .6rem; min-height: 1.2rem; color: #363; }
#status.error { color: #a22; }
"""

JS = """
'use strict';
let state = null, cur = 0, item = null, busy = false;
const $ = (id) => document.getElementById(id);

// A request lost to a reset connection or a busy server (5xx, 429) is sent again after these
// pauses (ms); saving an answer twice is harmless. A 4xx is the page's mistake: shown, not retried.
const RETRY_DELAYS = [250, 500, 1000, 2000];
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function api(path, body) {
  const opts = body === undefined ? {} : {method: 'POST', headers: {'Content-Type': 'application/json'},
                                         body: JSON.stringify(body)};
  for (let attempt = 0; ; attempt++) {
    const last = attempt >= RETRY_DELAYS.length;
    let r;
    try {
      r = await fetch(path, opts);
    } catch (e) {                       // no response at all (connection reset or refused)
      if (last) throw e;
      await sleep(RETRY_DELAYS[attempt]);
      continue;
    }
    if ((r.status >= 500 || r.status === 429) && !last) {
      await sleep(RETRY_DELAYS[attempt]);
      continue;
    }
    const data = await r.json();
    if (!r.ok) throw new Error(data.error || r.statusText);
    return data;
  }
}

function showProgress() {
  $('progress-text').textContent = state.done + ' / ' + state.total + ' labelled';
  $('progress-fill').style.width = (100 * state.done / Math.max(state.total, 1)) + '%';
  $('labels-file').textContent = state.labels_file;
}

function turn(role, text) {
  const div = document.createElement('div');
  div.className = 'turn';
  const r = document.createElement('span');
  r.className = 'role';
  r.textContent = role;
  div.appendChild(r);
  div.appendChild(document.createTextNode(text));   // text, never HTML
  return div;
}

function render() {
  $('done').hidden = true;
  $('labeller').hidden = false;
  $('item-id').textContent = '#' + (item.index + 1) + ' of ' + item.total;
  const box = $('prompt');
  box.replaceChildren(...item.prompt.map((m) => turn(m.role, m.content)));
  $('resp-a').textContent = item.shown_a;
  $('resp-b').textContent = item.shown_b;
  $('comment').value = item.comment || '';
  $('card-a').className = 'resp' + (item.label === 'A' ? ' chosen' : item.label === 'tie' ? ' tie' : '');
  $('card-b').className = 'resp' + (item.label === 'B' ? ' chosen' : item.label === 'tie' ? ' tie' : '');
  for (const b of document.querySelectorAll('#controls button'))
    b.classList.toggle('current', b.dataset.label === item.label);
  showProgress();
}

async function go(i) {
  if (i < 0 || i >= state.total) return;
  item = await api('/api/item/' + i);
  cur = i;
  render();
}

function showDone() {
  $('labeller').hidden = true;
  $('done').hidden = false;
  showProgress();
}

async function choose(label) {
  if (busy || !item) return;
  busy = true;
  try {
    const r = await api('/api/label', {index: cur, pair_id: item.pair_id, label: label,
                                       comment: $('comment').value});
    state = r.state;
    $('status').className = '';
    $('status').textContent = 'saved #' + (cur + 1) + ': ' + label;
    if (state.next === null) { showDone(); } else { await go(r.next_after); }
  } catch (e) {
    $('status').className = 'error';
    $('status').textContent = 'NOT saved: ' + e.message;
  } finally { busy = false; }
}

document.addEventListener('keydown', (ev) => {
  if (ev.target.tagName === 'INPUT' || ev.target.tagName === 'TEXTAREA') {
    if (ev.key === 'Escape') ev.target.blur();
    return;
  }
  if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const k = ev.key.toLowerCase();
  if (!$('done').hidden) { if (k === 'arrowleft') go(state.total - 1); return; }
  if (k === '1' || k === 'a') choose('A');
  else if (k === '2' || k === 'b') choose('B');
  else if (k === '3' || k === 't') choose('tie');
  else if (k === 'arrowleft') go(cur - 1);
  else if (k === 'arrowright') go(cur + 1);
  else return;
  ev.preventDefault();
});

for (const b of document.querySelectorAll('#controls button'))
  b.addEventListener('click', () => choose(b.dataset.label));

(async () => {
  state = await api('/api/state');
  if (state.next === null) { showDone(); } else { await go(state.next); }
  document.body.dataset.ready = '1';   // for tests: the first item is on screen
})();
"""

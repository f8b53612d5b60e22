"""The labelling page's script under Node with a stub DOM and a stub ``fetch`` (no browser):
a post lost to a reset connection or a busy server is sent again with growing pauses; a 4xx is not.

tests/test_label_browser.py runs the page end to end in a real Chromium.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from frugalign.labeling.page import JS

# Runs the page's script in a vm context, then posts one answer through its api() against
# a scripted server: each step is "reset" (fetch rejects) or [status, body].
HARNESS = r"""
const vm = require('vm'), fs = require('fs');
const plan = JSON.parse(process.argv[3]);
const elements = {};
const element = () => ({style: {}, dataset: {}, classList: {toggle() {}}, replaceChildren() {}, appendChild() {}});
const document = {
  getElementById: (id) => (elements[id] = elements[id] || element()),
  createElement: element, createTextNode: () => ({}), body: element(),
  querySelectorAll: () => [], addEventListener() {},
};
const response = (status, body) => ({status, ok: status < 300, statusText: 'status ' + status, json: async () => body});
let posts = 0;
async function fetch(path, opts) {
  if (!opts || opts.method !== 'POST') return response(200, {total: 1, done: 1, next: null, labels_file: 'l'});
  posts++;
  const step = plan.shift();
  if (step === 'reset') throw new TypeError('Failed to fetch');
  return response(step[0], step[1]);
}
const delays = [];
const ctx = {document, fetch, console, setTimeout: (f, ms) => { delays.push(ms); setImmediate(f); }};
vm.createContext(ctx);
vm.runInContext(fs.readFileSync(process.argv[2], 'utf8'), ctx);
setImmediate(async () => {
  let result = null, error = null;
  try { result = await ctx.api('/api/label', {index: 0, pair_id: 'p', label: 'A'}); }
  catch (e) { error = e.message; }
  console.log(JSON.stringify({result, error, posts, delays}));
});
"""


@pytest.mark.parametrize("plan,expected", [
    (["reset", "reset", [503, {"error": "busy"}], [200, {"ok": True}]],
     {"result": {"ok": True}, "error": None, "posts": 4, "delays": [250, 500, 1000]}),
    ([[400, {"error": "field 'index': missing"}]],
     {"result": None, "error": "field 'index': missing", "posts": 1, "delays": []}),
    (["reset"] * 5, {"result": None, "error": "Failed to fetch", "posts": 5, "delays": [250, 500, 1000, 2000]}),
    ([[500, {"error": "could not save: disk full"}]] * 5,
     {"result": None, "error": "could not save: disk full", "posts": 5, "delays": [250, 500, 1000, 2000]}),
], ids=["resets-then-saved", "4xx-not-retried", "gives-up-after-resets", "gives-up-after-5xx"])
def test_a_failed_post_is_retried_with_backoff(tmp_path, plan, expected):
    node = shutil.which("node")
    if node is None:
        pytest.skip("node not installed (apt-get install -y nodejs)")
    (tmp_path / "app.js").write_text(JS, encoding="utf-8")
    (tmp_path / "harness.js").write_text(HARNESS, encoding="utf-8")
    out = subprocess.run([node, str(tmp_path / "harness.js"), str(tmp_path / "app.js"), json.dumps(plan)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == expected

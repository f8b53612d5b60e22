"""The Label Studio round trip against a real Label Studio server on 127.0.0.1.

`frugalign label export ... to=label-studio` -> create a project with our
labelling config through the REST API -> import the tasks -> submit A / B /
tie annotations (and one skip) through the API -> export JSON ->
`frugalign label import` -> every label is un-flipped to the pair's original
orientation.

Needs Label Studio in its own virtualenv: ``scripts/setup-label-studio.sh``
(``.venv-label-studio/bin/label-studio``; FRUGALIGN_LABEL_STUDIO overrides the
binary). Skips without it, unless FRUGALIGN_REQUIRE_LABEL_STUDIO=1 (CI), where
a missing server fails the test.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from frugalign.cli import main
from frugalign.data import read_annotations, read_records, write_records
from frugalign.records import PreferencePair

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # a server start takes ~30 s

REPO = Path(__file__).resolve().parents[1]
DEFAULT_BINARY = REPO / ".venv-label-studio" / "bin" / "label-studio"
USER, PASSWORD = "frugalign-test@example.com", "not-a-secret-7"
START_TIMEOUT_S = 300   # first start applies all migrations to an empty SQLite database


def _skip_or_fail(reason: str):
    # CI sets FRUGALIGN_REQUIRE_LABEL_STUDIO=1 so a missing server fails there instead of skipping.
    if os.environ.get("FRUGALIGN_REQUIRE_LABEL_STUDIO", "") not in ("", "0"):
        pytest.fail(f"Label Studio test required but {reason}")
    pytest.skip(reason)


def _binary() -> str:
    explicit = os.environ.get("FRUGALIGN_LABEL_STUDIO")
    if explicit:
        if not os.access(explicit, os.X_OK):
            pytest.fail(f"FRUGALIGN_LABEL_STUDIO={explicit}: not an executable file")
        return explicit
    if not os.access(DEFAULT_BINARY, os.X_OK):
        _skip_or_fail(f"no {DEFAULT_BINARY.relative_to(REPO)}; install it with scripts/setup-label-studio.sh")
    return str(DEFAULT_BINARY)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server_env(data: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABEL_STUDIO_", "HEARTEX_"))}
    env.update(LABEL_STUDIO_BASE_DATA_DIR=str(data), SECRET_KEY=secrets.token_hex(32),
               # Offline and quiet: no PyPI version check, no Sentry, no usage analytics.
               LATEST_VERSION_CHECK="false", SENTRY_DSN="", FRONTEND_SENTRY_DSN="", COLLECT_ANALYTICS="false")
    return env


class Client:
    """The few REST calls the test makes, with legacy token auth."""

    def __init__(self, url: str, token: str):
        self.url, self.token = url, token

    def call(self, method: str, path: str, body=None):
        req = urllib.request.Request(self.url + path, method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Authorization": f"Token {self.token}",
                                              "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                return json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            pytest.fail(f"{method} {path}: HTTP {e.code}: {e.read()[:500]!r}")


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"label-studio exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=5) as r:
                if json.loads(r.read()).get("status") == "UP":
                    return
        except (OSError, ValueError):
            pass
        time.sleep(0.5)
    pytest.fail(f"label-studio not healthy after {START_TIMEOUT_S}s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory):
    binary = _binary()
    data = tmp_path_factory.mktemp("label-studio")
    port, token = _free_port(), secrets.token_hex(20)
    log = data / "server.log"
    # --user-token sets the user's legacy API token; --enable-legacy-api-token lets the
    # organisation (created on this first start) accept it as `Authorization: Token ...`.
    cmd = [binary, "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(port),
           "--username", USER, "--password", PASSWORD, "--user-token", token, "--enable-legacy-api-token"]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=data, env=_server_env(data), stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_healthy(f"http://127.0.0.1:{port}", proc, log)
        yield Client(f"http://127.0.0.1:{port}", token)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # its own session: the server and anything it started
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _pairs(n: int = 10) -> list[PreferencePair]:
    # response_a is recognisable as "the original A" however the pair is shown.
    chat = [{"role": "user", "content": "Hi!"}, {"role": "assistant", "content": "Hello."}]
    return [PreferencePair(f"q{k}:0-1", chat + [{"role": "user", "content": f"Question {k}?"}] if k % 3 == 0
                           else f"Question {k}?", f"ORIGINAL-A {k}\n    indented", f"ORIGINAL-B {k}",
                           prompt_id=f"q{k}", system="Be brief." if k == 0 else None) for k in range(n)]


def _as_shown(intended: str, shown_a: str) -> str:
    """What a labeller clicks to say `intended` (original orientation) about the pair as shown."""
    if intended == "tie":
        return "tie"
    original_a_shown_first = shown_a.startswith("ORIGINAL-A")
    return intended if original_a_shown_first else {"A": "B", "B": "A"}[intended]


def _choice(label: str, comment: str = "") -> list[dict]:
    result = [{"from_name": "preferred", "to_name": "prompt", "type": "choices", "value": {"choices": [label]}}]
    if comment:
        result.append({"from_name": "comment", "to_name": "prompt", "type": "textarea", "value": {"text": [comment]}})
    return result


def test_label_studio_round_trip_unflips(label_studio, tmp_path, capsys):
    write_records(tmp_path / "pairs.jsonl", _pairs())
    assert main(["label", "export", str(tmp_path / "pairs.jsonl"), f"output={tmp_path / 'b'}",
                 "to=label-studio", "seed=5"]) == 0
    assert "label-studio.json" in capsys.readouterr().out
    key = {rec["pair_id"]: rec for _, rec in read_records(tmp_path / "b.jsonl")}
    tasks = json.loads((tmp_path / "b.label-studio.json").read_text())

    project = label_studio.call("POST", "/api/projects", {
        "title": "frugalign round trip", "label_config": (tmp_path / "b.label-studio.xml").read_text()})
    pid = project["id"]
    assert label_studio.call("POST", f"/api/projects/{pid}/import", tasks)["task_count"] == len(tasks)
    listed = label_studio.call("GET", f"/api/tasks?project={pid}&page_size=100")["tasks"]
    task_id = {t["data"]["pair_id"]: t["id"] for t in listed}
    assert set(task_id) == set(key)

    # Original-orientation intents; q8 is skipped (cancelled) and q9 left unlabelled.
    intended = dict(zip([f"q{k}:0-1" for k in range(8)], ["A", "B", "tie", "A", "B", "tie", "A", "B"]))
    decided = [p for p, v in intended.items() if v != "tie"]
    assert {key[p]["flipped"] for p in decided} == {True, False}, "need flipped and unflipped A/B labels"
    for pair_id, want in intended.items():
        shown = _as_shown(want, key[pair_id]["shown_a"])
        label_studio.call("POST", f"/api/tasks/{task_id[pair_id]}/annotations",
                          {"result": _choice(shown, f"said {shown}"), "was_cancelled": False})
    label_studio.call("POST", f"/api/tasks/{task_id['q8:0-1']}/annotations", {"result": [], "was_cancelled": True})

    exported = label_studio.call("GET", f"/api/projects/{pid}/export?exportType=JSON&download_all_tasks=true")
    assert len(exported) == len(key)
    assert all("flipped" not in t["data"] for t in exported)  # the key never went to Label Studio
    (tmp_path / "export.json").write_text(json.dumps(exported))
    user_id = label_studio.call("GET", "/api/current-user/whoami")["id"]

    out = tmp_path / "human.jsonl"
    assert main(["label", "import", str(tmp_path / "b.jsonl"), str(tmp_path / "export.json"), f"output={out}"]) == 0
    assert "2 batch pairs unlabelled" in capsys.readouterr().out
    anns = {a.pair_id: a for a in read_annotations(out)}
    assert {p: a.preferred for p, a in anns.items()} == intended
    for pair_id, ann in anns.items():
        vote = ann.details["votes"][0]
        assert vote["flipped"] == key[pair_id]["flipped"] and vote["comment"] == f"said {vote['shown']}"
        assert vote["annotator"] == f"label-studio-user-{user_id}" and vote["batch"] == "b"

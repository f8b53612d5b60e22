"""``frugalign label serve BATCH``: a small local labelling page (standard library only).

The page shows a prompt and the two responses side by side; the labeller
answers with keys (``1``/``a`` = A, ``2``/``b`` = B, ``3``/``t`` = tie,
arrows to move). Every answer is written to the labels file before the
page moves on: the whole file is rewritten to a temp file, fsynced and
renamed (see :func:`~frugalign.labeling.export.write_labels`), so a crash
loses nothing and a restart continues at the first unlabelled pair.

The page posts an answer as ``{"index", "pair_id", "label", "comment"}`` (either of
index and pair_id finds the pair; given both, they must agree); a wrong one is a 4xx whose
``error`` names the field and the pair. The page retries a post lost to a reset or a 5xx.

Safety: it binds 127.0.0.1 by default, rejects requests whose ``Host`` is
not the address it serves (DNS rebinding), accepts answers only as JSON
(no cross-site form posts), and the page renders model text with
``textContent`` under a strict Content-Security-Policy.
"""

from __future__ import annotations

import json
import re
import socket
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from ..errors import ConfigError, DataError
from .export import LabelRecord, check_labels, parse_label, read_batch, read_labels, write_labels
from .page import CSS, HTML, JS


@dataclass
class ServeConfig:
    """``frugalign label serve``: the local labelling page for one batch."""

    batch: str = field(default="", metadata={"help": "the batch key file (BATCH.jsonl)"})
    labels: str | None = field(default=None, metadata={"help": "labels file (default: BATCH[.annotator].labels.jsonl)"})
    host: str = field(default="127.0.0.1", metadata={"help": "address to bind (keep it local)"})
    port: int = field(default=8765, metadata={"help": "port (0: any free port)"})
    annotator: str = field(default="", metadata={"help": "your id, stored with every label"})
    verbose: bool = False

    def validate(self) -> None:
        if not self.batch:
            raise ConfigError("label serve needs BATCH")

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
LOOPBACK = ("127.0.0.1", "localhost", "::1")
MAX_BODY = 64 * 1024
MAX_COMMENT = 2000


def default_labels_path(batch_path: str | Path, annotator: str = "") -> Path:
    """``BATCH.labels.jsonl`` beside the batch (``BATCH.<annotator>.labels.jsonl`` when named)."""
    p = Path(batch_path)
    stem = p.name[: -len(p.suffix)] if p.suffix else p.name
    tag = f".{re.sub(r'[^A-Za-z0-9_.-]', '_', annotator)}" if annotator else ""
    return p.with_name(f"{stem}{tag}.labels.jsonl")


class BadAnswer(ValueError):
    """A posted answer the page cannot save, with its HTTP status (4xx) and which field is wrong."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def parse_answer(raw: bytes, store: LabelStore) -> tuple[int, str, str]:
    """A posted ``{index | pair_id, label[, comment]}`` as (batch position, label, comment)."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
        raise BadAnswer(400, f"request body: not JSON ({e})") from None
    if not isinstance(body, dict):
        raise BadAnswer(400, f"request body: expected a JSON object, got {type(body).__name__}")
    index = store.resolve(body.get("index"), body.get("pair_id"))
    try:
        label = parse_label(body.get("label"), f"pair {store.batch[index].pair_id!r}: field 'label'")
    except DataError as e:
        raise BadAnswer(400, str(e)) from None
    return index, label, str(body.get("comment") or "")


class LabelStore:
    """The batch, this session's labels, and the atomic save (thread-safe)."""

    def __init__(self, batch_path: str | Path, labels_path: str | Path | None = None, annotator: str = ""):
        self.batch_path = Path(batch_path)
        self.batch = read_batch(batch_path)
        self.annotator = annotator
        self.path = Path(labels_path) if labels_path else default_labels_path(batch_path, annotator)
        self.lock = threading.Lock()
        self.position = {it.pair_id: i for i, it in enumerate(self.batch)}
        self.labels: dict[str, LabelRecord] = {}
        if self.path.exists():  # restart: continue where the last session stopped
            existing = read_labels(self.path)
            check_labels(self.batch, existing, str(self.batch_path))
            for _, rec in existing:
                self.labels[rec.pair_id] = rec

    def state(self) -> dict:
        """Progress: total, done and the first unlabelled index (``next``, None when all are done)."""
        done = sum(it.pair_id in self.labels for it in self.batch)
        nxt = next((it.index for it in self.batch if it.pair_id not in self.labels), None)
        return {"total": len(self.batch), "done": done, "next": nxt, "annotator": self.annotator,
                "batch": self.batch[0].batch, "labels_file": str(self.path)}

    def resolve(self, index, pair_id) -> int:
        """The batch position a posted answer is for, from ``index`` and/or ``pair_id``;
        :class:`BadAnswer` names the wrong field (a stale page, a client of another batch)."""
        n = len(self.batch)
        if pair_id is not None:
            if not isinstance(pair_id, str):
                raise BadAnswer(400, f"field 'pair_id': expected a string, got {type(pair_id).__name__}")
            if pair_id not in self.position:
                raise BadAnswer(404, f"field 'pair_id': unknown pair {pair_id!r} (not in batch "
                                     f"{self.batch[0].batch!r} of {self.batch_path.name})")
            if index is None:
                return self.position[pair_id]
        if index is None:
            raise BadAnswer(400, f"field 'index': missing (the pair's position in the batch, 0 to {n - 1}, "
                                 "or its pair_id)")
        if not isinstance(index, int) or isinstance(index, bool):
            raise BadAnswer(400, f"field 'index': expected an integer, got {type(index).__name__}")
        if not 0 <= index < n:
            raise BadAnswer(404, f"field 'index': no pair {index} in this batch of {n} (0 to {n - 1})")
        if pair_id is not None and self.batch[index].pair_id != pair_id:
            raise BadAnswer(409, f"field 'pair_id': pair {index} is {self.batch[index].pair_id!r}, not "
                                 f"{pair_id!r} (the page shows another batch: reload it)")
        return index

    def item(self, index: int) -> dict:
        """One pair as the page shows it (prompt turns, shown A/B, current label); never ``flipped``."""
        it = self.batch[index]
        msgs = [{"role": "user", "content": it.prompt}] if isinstance(it.prompt, str) else list(it.prompt)
        if it.system:
            msgs = [{"role": "system", "content": it.system}] + msgs
        rec = self.labels.get(it.pair_id)
        return {"index": index, "total": len(self.batch), "pair_id": it.pair_id, "prompt": msgs,
                "shown_a": it.shown_a, "shown_b": it.shown_b,
                "label": rec.label if rec else None, "comment": rec.comment if rec else ""}

    def save(self, index: int, label: str, comment: str = "") -> dict:
        """Record one answer and rewrite the labels file before returning."""
        it = self.batch[index]
        rec = LabelRecord(it.pair_id, label, self.annotator, comment[:MAX_COMMENT],
                          datetime.now(timezone.utc).isoformat(timespec="seconds"))
        with self.lock:
            self.labels[it.pair_id] = rec
            # Batch order keeps the file stable and diffable between saves.
            ordered = [self.labels[b.pair_id] for b in self.batch if b.pair_id in self.labels]
            write_labels(self.path, ordered)
            state = self.state()
        after = next((b.index for b in self.batch[index + 1:] + self.batch[:index + 1]
                      if b.pair_id not in self.labels), min(index + 1, len(self.batch) - 1))
        return {"ok": True, "state": state, "next_after": after}


class Handler(BaseHTTPRequestHandler):
    server_version = "frugalign-label"
    store: LabelStore  # set on the subclass made by make_server
    allowed_hosts: frozenset | None = None
    quiet = True

    # ------------------------------------------------------------ plumbing
    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, obj) -> None:
        self._send(status, json.dumps(obj, ensure_ascii=False).encode("utf-8"), "application/json; charset=utf-8")

    def _host_ok(self) -> bool:
        return self.allowed_hosts is None or (self.headers.get("Host") or "").lower() in self.allowed_hosts

    def log_message(self, fmt, *args) -> None:
        if not self.quiet:
            super().log_message(fmt, *args)

    # ------------------------------------------------------------ routes
    def do_GET(self) -> None:
        if not self._host_ok():
            return self._json(403, {"error": "unexpected Host header"})
        path = self.path.split("?", 1)[0]
        static = {"/": (HTML, "text/html; charset=utf-8"), "/app.js": (JS, "text/javascript; charset=utf-8"),
                  "/app.css": (CSS, "text/css; charset=utf-8")}
        if path in static:
            text, ctype = static[path]
            return self._send(200, text.encode("utf-8"), ctype)
        if path == "/api/state":
            return self._json(200, self.store.state())
        m = re.fullmatch(r"/api/item/(\d+)", path)
        if m and int(m.group(1)) < len(self.store.batch):
            return self._json(200, self.store.item(int(m.group(1))))
        self._json(404, {"error": "not found"})

    def do_POST(self) -> None:
        if not self._host_ok():
            return self._json(403, {"error": "unexpected Host header"})
        if self.path != "/api/label":
            return self._json(404, {"error": "not found"})
        # JSON only: a cross-site form cannot send it without a CORS preflight we never grant.
        if not (self.headers.get("Content-Type") or "").startswith("application/json"):
            return self._json(415, {"error": "expected application/json"})
        length = int(self.headers.get("Content-Length") or 0)
        if length <= 0 or length > MAX_BODY:
            return self._json(400, {"error": "bad request size"})
        try:
            index, label, comment = parse_answer(self.rfile.read(length), self.store)
        except BadAnswer as e:
            return self._json(e.status, {"error": str(e)})
        try:
            result = self.store.save(index, label, comment)
        except OSError as e:  # disk full, permissions: tell the page it was NOT saved
            return self._json(500, {"error": f"could not save: {e}"})
        self._json(200, result)


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a stuck browser connection never blocks shutdown
    # listen() backlog: with the default 5, a burst of 200 simultaneous posts had connections reset;
    # the kernel caps it at net.core.somaxconn (4096 on current Linux, 128 on old kernels).
    request_queue_size = 1024


class _Server6(_Server):
    address_family = socket.AF_INET6


def make_server(batch_path, labels_path=None, *, host: str = "127.0.0.1", port: int = 8765,
                annotator: str = "", quiet: bool = True) -> ThreadingHTTPServer:
    """A ready (not yet serving) server; ``port=0`` picks a free port (see ``server_address``)."""
    store = LabelStore(batch_path, labels_path, annotator)
    handler = type("BoundHandler", (Handler,), {"store": store, "quiet": quiet})
    try:
        server = (_Server6 if ":" in host else _Server)((host, port), handler)
    except OSError as e:
        raise ConfigError(f"cannot listen on {host}:{port} ({e.strerror or e}); try port=0 for a free port") from None
    real_port = server.server_address[1]
    if host in LOOPBACK:
        handler.allowed_hosts = frozenset(f"{h}:{real_port}" for h in ("127.0.0.1", "localhost", "[::1]"))
    server.store = store
    return server


def serve(batch_path, labels_path=None, *, host: str = "127.0.0.1", port: int = 8765,
          annotator: str = "", quiet: bool = True) -> None:
    """Serve until interrupted; prints the URL (first line) and where labels go."""
    server = make_server(batch_path, labels_path, host=host, port=port, annotator=annotator, quiet=quiet)
    st = server.store.state()
    shown_host = f"[{host}]" if ":" in host else host
    print(f"labelling page: http://{shown_host}:{server.server_address[1]}/", flush=True)
    print(f"{st['done']} of {st['total']} pairs labelled; answers saved to {server.store.path} "
          "(Ctrl-C to stop; restart to continue)", flush=True)
    if host not in LOOPBACK:
        print(f"warning: listening on {host}, reachable from other machines; there is no login", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()

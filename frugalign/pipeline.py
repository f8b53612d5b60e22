"""A run directory whose stages are skipped when already done and resumed when killed.

Each stage is a plain function ``fn(ctx) -> summary dict`` that writes its
files into ``ctx.out`` (a temporary directory). On success the directory is
renamed to ``<run>/<stage>/`` and the manifest records the stage's *key* — a
hash of its settings and of its inputs' keys. Re-running a stage whose key is
unchanged and whose directory exists does nothing; a stage whose settings or
inputs changed is redone, and so is everything downstream (their input keys
changed). A run killed mid-stage leaves only a ``.<stage>.tmp*`` directory,
which the next run removes.

The manifest (``manifest.json``, written atomically) holds the configuration,
package versions, seeds, per-stage timings and summaries, and the human
labels spent.

A directory that must not mix two runs (a training run, SPA's rounds) also
records an *identity* (:meth:`RunDir.claim`): the settings that make two runs
the same. Reopening it with other settings is a one-line error; a setting added
since, left at its default, is no difference, so an older directory resumes.
"""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .data import write_json
from .errors import ConfigError
from .faults import kill_point


def _versions() -> dict:
    import importlib.metadata as md

    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for pkg in ("frugalign", "torch", "transformers", "accelerate", "peft", "datasets", "trl"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def config_difference(old: dict, new: dict, ignore=(), defaults: dict | None = None) -> str | None:
    """``"key: old -> new, ..."`` for the first settings that differ (``ignore`` left out), or None.

    The one guard for "this directory holds a run with other settings" (training,
    SPA rounds, a study summary). A key ``old`` lacks reads as its value in
    ``defaults``: a setting added after the run, left at its default, changes nothing.
    """
    old = {**{k: v for k, v in (defaults or {}).items() if k not in old}, **old}
    # compared as stored (JSON): a tuple default equals the list a summary file holds
    old, new = (json.loads(json.dumps(d, default=str)) for d in (old, new))
    keys = sorted(k for k in set(old) | set(new) if k not in ignore and old.get(k) != new.get(k))
    return ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys[:3]) if keys else None


def stage_key(name: str, settings: dict, input_keys: dict[str, str]) -> str:
    blob = json.dumps({"stage": name, "settings": settings, "inputs": input_keys}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class RunLock:
    """One writer per run directory: ``<dir>/.lock`` holds the writer's pid under an exclusive flock.

    A second process on the same directory gets a one-line error naming the first.
    The kernel drops the flock when its process dies (even by SIGKILL), so a lock
    left by a dead process is simply taken over, with a notice.
    """

    def __init__(self, path: str | Path, log: Callable[[str], None] = print):
        self.dir, self.log, self.file = Path(path), log, None

    def __enter__(self) -> RunLock:
        import fcntl
        import os

        self.created = not self.dir.exists()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.file = open(self.dir / ".lock", "a+")
        self.file.seek(0)
        previous = self.file.read().strip()
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.close()
            raise ConfigError(f"{self.dir} is in use by process {previous or '(unknown)'}; wait for it to finish "
                              "or stop it, then rerun") from None
        if previous and previous != str(os.getpid()):
            self.log(f"note: {self.dir} was locked by process {previous}, which is no longer running; taking over")
        self.file.seek(0)
        self.file.truncate()
        self.file.write(f"{os.getpid()}\n")
        self.file.flush()
        return self

    def __exit__(self, *exc) -> bool:
        self.file.seek(0)
        self.file.truncate()  # released cleanly: no "stale lock" notice next time
        if self.created and [p.name for p in self.dir.iterdir()] == [".lock"]:
            (self.dir / ".lock").unlink()  # a run that failed before writing anything leaves no directory
            self.dir.rmdir()
        self.file.close()     # closing drops the flock
        return False


@dataclass
class StageContext:
    run: RunDir
    name: str
    out: Path                      # write outputs here (a temp dir, renamed on success)
    settings: dict
    inputs: dict[str, Path]        # name of an upstream stage -> its finished directory

    def input(self, stage: str, filename: str) -> Path:
        if stage not in self.inputs:
            raise ConfigError(f"stage {self.name!r} did not declare input stage {stage!r}")
        return self.inputs[stage] / filename


@dataclass
class Stage:
    name: str
    fn: Callable[[StageContext], dict]
    settings: dict = field(default_factory=dict)
    inputs: tuple[str, ...] = ()


class RunDir:
    """A run directory and its manifest; ``readonly``: only look (the other processes of a multi-process run)."""

    def __init__(self, path: str | Path, config: dict | None = None, *, readonly: bool = False):
        self.path, self.readonly = Path(path), readonly
        if not readonly:
            self.path.mkdir(parents=True, exist_ok=True)
        self.manifest_path = self.path / "manifest.json"
        self.manifest = self._load()
        if config is not None:
            self.manifest["config"] = config
        self.manifest["versions"] = _versions()
        if not readonly:
            self._clean_partial()

    def claim(self, identity: dict, *, defaults: dict | None = None, what: str = "a run") -> bool:
        """Make this directory ``identity``'s; True when it already was (resume), False when new.

        A directory that records another identity is refused with a one-line error;
        ``defaults`` (the identity of default settings) fills keys the recorded one
        lacks, so settings added since at their defaults change nothing. Recorded
        on the next :meth:`save`.
        """
        old = self.manifest.get("identity")
        diff = config_difference(old, identity, defaults=defaults) if old is not None else None
        if diff:
            raise ConfigError(f"{self.path} holds {what} with a different config ({diff}); use another output_dir")
        self.manifest["identity"] = identity
        return old is not None

    def _load(self) -> dict:
        if self.manifest_path.exists():
            try:
                return json.loads(self.manifest_path.read_text())
            except json.JSONDecodeError:
                raise ConfigError(f"{self.manifest_path}: corrupt manifest; delete the run directory") from None
        return {"created": time.strftime("%Y-%m-%dT%H:%M:%S"), "stages": {}}

    def _clean_partial(self) -> None:
        """Remove what a killed run left half-written: stage temp dirs and temp files of atomic writes."""
        for tmp in self.path.glob(".*.tmp*"):
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)

    def save(self) -> None:
        if self.readonly:
            raise RuntimeError(f"{self.path}: opened read-only")
        write_json(self.manifest_path, self.manifest)

    def stage_dir(self, name: str) -> Path:
        return self.path / name

    def is_done(self, name: str, key: str) -> bool:
        rec = self.manifest["stages"].get(name, {})
        return rec.get("status") == "done" and rec.get("key") == key and self.stage_dir(name).is_dir()

    def run(self, stage: Stage, *, log: Callable[[str], None] = print) -> dict:
        """Run ``stage`` unless an identical finished copy exists; return its summary."""
        stages = self.manifest["stages"]
        missing = [s for s in stage.inputs if stages.get(s, {}).get("status") != "done"]
        if missing:
            raise ConfigError(f"stage {stage.name!r} needs finished stages {missing}")
        input_keys = {s: stages[s]["key"] for s in stage.inputs}
        key = stage_key(stage.name, stage.settings, input_keys)
        if self.is_done(stage.name, key):
            log(f"[{stage.name}] up to date, skipped")
            return stages[stage.name].get("summary", {})
        tmp = Path(tempfile.mkdtemp(prefix=f".{stage.name}.tmp", dir=self.path))
        ctx = StageContext(self, stage.name, tmp, stage.settings,
                           {s: self.stage_dir(s) for s in stage.inputs})
        stages[stage.name] = {"status": "running", "key": key, "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
        self.save()
        kill_point(f"stage:{self.path.name}/{stage.name}:start")
        t0 = time.time()
        try:
            summary = stage.fn(ctx) or {}
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            stages[stage.name]["status"] = "failed"
            self.save()
            raise
        final = self.stage_dir(stage.name)
        kill_point(f"stage:{self.path.name}/{stage.name}:commit")  # outputs complete, not yet renamed into place
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        kill_point(f"stage:{self.path.name}/{stage.name}:renamed")  # in place, the manifest not yet updated
        stages[stage.name].update(status="done", seconds=round(time.time() - t0, 2), summary=summary,
                                  settings=stage.settings, inputs=list(stage.inputs))
        self.save()
        log(f"[{stage.name}] done in {time.time() - t0:.1f}s")
        return summary

    def summary(self, name: str) -> dict[str, Any]:
        return self.manifest["stages"].get(name, {}).get("summary", {})

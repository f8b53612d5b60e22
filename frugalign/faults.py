"""Named kill points, so tests can crash a run at an exact place and prove it resumes.

Long-running code calls :func:`kill_point` at the places where a crash matters
(a stage starting, an atomic write about to rename its file, a checkpoint just
written, a study arm or an SPA round finishing). Normally this does nothing.
When the environment variable ``FRUGALIGN_KILL_AT`` names the point, the
process sends itself SIGKILL there: no cleanup, no ``finally``, exactly what a
power cut or the OOM killer does.

``FRUGALIGN_KILL_AT`` is a shell-style pattern (``stage:train:*``), optionally
followed by ``@N`` to kill at the N-th matching point of the process
(``write:*@3``). Points passed are appended to ``$FRUGALIGN_KILL_LOG`` when set,
so a test can list every point a run goes through.
"""

from __future__ import annotations

import fnmatch
import os
import signal

ENV, LOG_ENV = "FRUGALIGN_KILL_AT", "FRUGALIGN_KILL_LOG"
_seen = {"count": 0}


def kill_point(name: str) -> None:
    """SIGKILL this process if ``$FRUGALIGN_KILL_AT`` names ``name`` (a test hook; a no-op otherwise)."""
    log = os.environ.get(LOG_ENV)
    if log:
        with open(log, "a", encoding="utf-8") as f:
            f.write(name + "\n")
    target = os.environ.get(ENV)
    if not target:
        return
    pattern, _, nth = target.partition("@")
    if fnmatch.fnmatchcase(name, pattern):
        _seen["count"] += 1
        if _seen["count"] >= int(nth or 1):
            os.kill(os.getpid(), signal.SIGKILL)

#!/usr/bin/env bash
# Re-resolve frugalign's dependencies to the newest releases its floors allow
# (torch stays 2.13.0), run the tests against them, and only if they pass
# rewrite constraints.txt, the exact versions scripts/setup.sh installs.
#
#   scripts/refresh-lock.sh        # or: make lock
#   LOCK_TESTS=fast scripts/refresh-lock.sh   # -m "not integration" (default: full suite)
#   LOCK_TESTS=skip scripts/refresh-lock.sh   # resolve + freeze only (no tests: check by hand!)
#   LOCK_OUT=/tmp/c.txt ...                   # write there instead of constraints.txt
#   LOCK_KEEP=1 ...                           # keep the temporary venv (path printed)
set -euo pipefail
cd "$(dirname "$0")/.."
LOCK_TESTS=${LOCK_TESTS:-full}
out=${LOCK_OUT:-constraints.txt}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/frugalign-lock.XXXXXX")
venv="$tmp/venv"
if [ -z "${LOCK_KEEP:-}" ]; then
  trap 'rm -rf "$tmp"' EXIT
else
  echo "lock: temporary venv kept in $venv"
fi

# 1. Resolve with the floors only (pyproject.toml), torch pinned first.
FRUGALIGN_CONSTRAINTS= VENV="$venv" scripts/setup.sh

# 2. Test against exactly that set.
case "$LOCK_TESTS" in
  full) HF_HUB_OFFLINE=1 "$venv/bin/python" -m pytest -q -x ;;
  fast) HF_HUB_OFFLINE=1 "$venv/bin/python" -m pytest -q -x -m "not integration" ;;
  skip) echo "lock: LOCK_TESTS=skip: tests NOT run against the new versions" >&2 ;;
  *) echo "lock: LOCK_TESTS must be full, fast or skip" >&2; exit 2 ;;
esac

# 3. Freeze it (without frugalign itself and the installer) and swap the file in.
{
  echo "# Exact versions scripts/setup.sh installs: what the tests passed with"
  echo "# (LOCK_TESTS=$LOCK_TESTS, Python $("$venv/bin/python" -c 'import platform; print(platform.python_version())'), $(date -u +%F))."
  echo "# Regenerate with: make lock   (scripts/refresh-lock.sh); do not edit by hand."
  "$venv/bin/python" -m pip --disable-pip-version-check freeze --all --exclude-editable \
    | grep -v -E '^(#|-e |frugalign==|uv==)' \
    | sed -E 's/^(torch==[^+]+)\+.*/\1/'
} > "$out.tmp"
grep -qx 'torch==2.13.0' "$out.tmp" || { echo "lock: torch is not 2.13.0 in the new set" >&2; rm -f "$out.tmp"; exit 1; }
mv "$out.tmp" "$out"
echo "lock: $out rewritten ($(grep -vc '^#' "$out") packages)"

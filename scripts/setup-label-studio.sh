#!/usr/bin/env bash
# Install Label Studio into its own virtualenv, .venv-label-studio. frugalign never
# imports it: tests/test_label_studio_server.py only runs it as a server, and its
# ~160 pinned dependencies (Django, ...) must not disturb frugalign's .venv.
# Exact versions: scripts/label-studio-constraints.txt. Safe to re-run: it does
# nothing when the stamp for this script and those constraints exists.
#
#   scripts/setup-label-studio.sh
#   PYTHON=python3.12 LABEL_STUDIO_VENV=/tmp/ls scripts/setup-label-studio.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${LABEL_STUDIO_VENV:-.venv-label-studio}
VERSION=1.23.2
UV_VERSION=0.13.9
CONSTRAINTS=scripts/label-studio-constraints.txt
stamp="$VENV/.label-studio-setup-$(cat scripts/setup-label-studio.sh "$CONSTRAINTS" | sha256sum | cut -c1-16)"
if [ -f "$stamp" ]; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip="$VENV/bin/python -m pip --disable-pip-version-check -q"
# uv installs this tree several times faster than pip; pip is the fallback.
uv=$(command -v uv || true)
[ -n "$uv" ] || [ ! -x .venv/bin/uv ] || uv=.venv/bin/uv   # frugalign's setup may have one
if [ -z "$uv" ] && $pip install "uv==$UV_VERSION" >/dev/null 2>&1; then
  uv="$VENV/bin/uv"
fi
if [ -n "$uv" ] && "$uv" pip install --quiet --python "$VENV/bin/python" -c "$CONSTRAINTS" "label-studio==$VERSION"; then
  :
else
  # e.g. no uv, or an index only pip is configured for (uv does not read pip.conf)
  [ -z "$uv" ] || echo "setup-label-studio: uv install failed; installing with pip" >&2
  $pip install -c "$CONSTRAINTS" "label-studio==$VERSION"
fi
# Not `label-studio --version`: that starts a server.
"$VENV/bin/python" -c "import label_studio as m; assert m.__version__ == '$VERSION', m.__version__"
rm -f "$VENV"/.label-studio-setup-*
touch "$stamp"
echo "label-studio $VERSION set up in $VENV"

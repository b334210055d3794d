#!/usr/bin/env bash
# Edit → running for a local directory: the agent's daemon (`run --desired-state`) beside a
# user's `docker-compose up -d` after the same edit (tests/bench/edit_latency.py says how).
#   tests/bench/edit-latency.sh [BIN]      (ROUNDS=10; TRACE=file keeps the daemon's log)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
# shellcheck source=tests/bench/lib.sh
source "$ROOT/tests/bench/lib.sh"
python3 "$ROOT/tests/bench/edit_latency.py" "$BIN"

#!/usr/bin/env bash
# Push-to-running latency, webhook path and local-commit path (median/p95 over PUSHES pushes).
#   tests/bench/push-latency.sh            (PUSHES=10)
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo run -q --release -p macula-gitops --example push_latency

#!/usr/bin/env bash
# The local cluster loop: local commit → new artifact digest in the registry (flux.source: oci),
# beside the same daemon's local commit → host container recreated (median/p95 over RUNS commits).
#   tests/bench/oci-latency.sh            (RUNS=10; needs docker-registry, see tests/run.sh)
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo run -q --release -p macula-gitops --example oci_latency

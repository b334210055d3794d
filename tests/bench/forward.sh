#!/usr/bin/env bash
# Side-by-side benchmark of the agent's forwarders against socat, loopback only, bounded in time.
#
#   tests/bench/forward.sh            # MIB=2048 SECS=5 LAT_N=20000 REPS=3 by default
#
# Same servers (agent/examples/routing_load.rs) behind: socat (fork per connection, the
# design's hand-run scripts), the agent with buffered copy (--no-splice) and the agent with
# splice(2). Prints a markdown table; each figure is the median of REPS runs.
set -euo pipefail
cd "$(dirname "$0")/../.."
MIB=${MIB:-2048}
SECS=${SECS:-5}
LAT_N=${LAT_N:-20000}
REPS=${REPS:-3}
TARGET=${CARGO_TARGET_DIR:-target}

cargo build --release -q -p macula-gitops --example routing_run --example routing_load
LOAD=$TARGET/release/examples/routing_load
RUN=$TARGET/release/examples/routing_run
command -v socat >/dev/null || { echo "socat is required" >&2; exit 1; }

tmp=$(mktemp -d)
pids=()
cleanup() {
  # socat forks a child per client; those outlive their parent unless killed by parent id.
  for p in "${pids[@]}"; do
    for c in $(pgrep -P "$p" 2>/dev/null); do kill "$c" 2>/dev/null || true; done
    kill "$p" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

B=$((30000 + ($$ % 500) * 20))   # a block of 20 ports per run
SINK=$B ECHO=$((B+1)) UECHO=$((B+2))
S_SINK=$((B+3)) S_ECHO=$((B+4)) S_UDP=$((B+5))
A_SINK=$((B+6)) A_ECHO=$((B+7)) A_UDP=$((B+8))
N_SINK=$((B+9)) N_ECHO=$((B+10))

"$LOAD" sink 127.0.0.1:$SINK & pids+=($!)
"$LOAD" echo 127.0.0.1:$ECHO & pids+=($!)
"$LOAD" udp-echo 127.0.0.1:$UECHO & pids+=($!)

socat TCP-LISTEN:$S_SINK,bind=127.0.0.1,reuseaddr,fork TCP:127.0.0.1:$SINK & pids+=($!)
socat TCP-LISTEN:$S_ECHO,bind=127.0.0.1,reuseaddr,fork TCP:127.0.0.1:$ECHO & pids+=($!)
socat -lf /dev/null UDP-LISTEN:$S_UDP,bind=127.0.0.1,reuseaddr,fork UDP:127.0.0.1:$UECHO & pids+=($!)

cat > "$tmp/splice.yaml" <<YAML
forwards:
  - {name: sink, listen: 127.0.0.1:$A_SINK/tcp, target: {address: 127.0.0.1:$SINK}}
  - {name: echo, listen: 127.0.0.1:$A_ECHO/tcp, target: {address: 127.0.0.1:$ECHO}}
  - {name: udp, listen: 127.0.0.1:$A_UDP/udp, target: {address: 127.0.0.1:$UECHO}}
YAML
cat > "$tmp/buffered.yaml" <<YAML
forwards:
  - {name: sink, listen: 127.0.0.1:$N_SINK/tcp, target: {address: 127.0.0.1:$SINK}}
  - {name: echo, listen: 127.0.0.1:$N_ECHO/tcp, target: {address: 127.0.0.1:$ECHO}}
YAML
RUST_LOG=warn "$RUN" "$tmp/splice.yaml" --no-dns & pids+=($!)
RUST_LOG=warn "$RUN" "$tmp/buffered.yaml" --no-dns --no-splice & pids+=($!)
sleep 1

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
run() { for _ in $(seq "$REPS"); do "$LOAD" "$@"; done | median; }
run_col() { local col=$1; shift; for _ in $(seq "$REPS"); do "$LOAD" "$@" | awk -v c="$col" '{print $c}'; done | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

tp_s=$(run throughput 127.0.0.1:$S_SINK "$MIB")
tp_b=$(run throughput 127.0.0.1:$N_SINK "$MIB")
tp_a=$(run throughput 127.0.0.1:$A_SINK "$MIB")
rate_s=$(run rate 127.0.0.1:$S_ECHO "$SECS")
rate_b=$(run rate 127.0.0.1:$N_ECHO "$SECS")
rate_a=$(run rate 127.0.0.1:$A_ECHO "$SECS")
lat_d50=$(run_col 1 latency 127.0.0.1:$ECHO "$LAT_N"); lat_d99=$(run_col 2 latency 127.0.0.1:$ECHO "$LAT_N")
lat_s50=$(run_col 1 latency 127.0.0.1:$S_ECHO "$LAT_N"); lat_s99=$(run_col 2 latency 127.0.0.1:$S_ECHO "$LAT_N")
lat_b50=$(run_col 1 latency 127.0.0.1:$N_ECHO "$LAT_N"); lat_b99=$(run_col 2 latency 127.0.0.1:$N_ECHO "$LAT_N")
lat_a50=$(run_col 1 latency 127.0.0.1:$A_ECHO "$LAT_N"); lat_a99=$(run_col 2 latency 127.0.0.1:$A_ECHO "$LAT_N")
udp_s=$(run udp 127.0.0.1:$S_UDP "$SECS")
udp_a=$(run udp 127.0.0.1:$A_UDP "$SECS")

# Idle footprint: 50 TCP forwards in one agent vs 50 socat listeners.
{
  echo "forwards:"
  for i in $(seq 1 50); do
    echo "  - {name: f$i, listen: 127.0.1.$i:$((B+11))/tcp, target: {address: 127.0.0.1:$ECHO}}"
  done
} > "$tmp/fifty.yaml"
RUST_LOG=warn "$RUN" "$tmp/fifty.yaml" --no-dns & fifty=$!; pids+=($fifty)
socat_pids=()
for i in $(seq 1 50); do
  socat TCP-LISTEN:$((B+11)),bind=127.0.2.$i,reuseaddr,fork TCP:127.0.0.1:$ECHO & socat_pids+=($!); pids+=($!)
done
sleep 2
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
rss_a=$(rss_kb "$fifty")
rss_s=0; for p in "${socat_pids[@]}"; do rss_s=$((rss_s + $(rss_kb "$p"))); done

added() { awk -v x="$1" -v d="$2" 'BEGIN { printf "%.1f", x - d }'; }
cat <<MD
| measure | socat | agent (buffered) | agent (splice) | agent/socat (buffered, splice) |
|---|---|---|---|---|
| TCP throughput, ${MIB} MiB (MiB/s) | $tp_s | $tp_b | $tp_a | $(ratio "$tp_b" "$tp_s"), $(ratio "$tp_a" "$tp_s") |
| short connections/s (${SECS}s) | $rate_s | $rate_b | $rate_a | $(ratio "$rate_b" "$rate_s"), $(ratio "$rate_a" "$rate_s") |
| round trip p50 (µs; direct: $lat_d50) | $lat_s50 | $lat_b50 | $lat_a50 | $(ratio "$lat_b50" "$lat_s50"), $(ratio "$lat_a50" "$lat_s50") |
| round trip p99 (µs; direct: $lat_d99) | $lat_s99 | $lat_b99 | $lat_a99 | $(ratio "$lat_b99" "$lat_s99"), $(ratio "$lat_a99" "$lat_s99") |
| added latency p50 (µs over direct) | $(added "$lat_s50" "$lat_d50") | $(added "$lat_b50" "$lat_d50") | $(added "$lat_a50" "$lat_d50") | |
| added latency p99 (µs over direct) | $(added "$lat_s99" "$lat_d99") | $(added "$lat_b99" "$lat_d99") | $(added "$lat_a99" "$lat_d99") | |
| UDP round trips/s (64 B, 32 in flight) | $udp_s | | $udp_a | $(ratio "$udp_a" "$udp_s") |
| RSS, 50 idle TCP forwards (KiB) | $rss_s (50 processes) | | $rss_a (1 process) | $(ratio "$rss_a" "$rss_s") |
MD

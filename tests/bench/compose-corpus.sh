#!/usr/bin/env bash
# Loads every corpus file (agent/tests/fixtures/corpus/<name>/compose.yaml, real compose files
# taken unchanged from public projects) with Debian's docker-compose 1.29 (`config -q`) and with
# the agent (`validate` on a desired state holding only that stack), and prints per file: loaded
# or not by each, the time each took, and the agent's first problem; then loaded/total for both,
# and the agent's validate time for the whole corpus at once at 1/4, 1/2 and all of it, to show
# the time per file stays flat (linear) as the corpus grows. The agent runs with a strict host
# policy (`policy: {}`), and each failing file again with every policy rule granted.
#
# Usage: tests/bench/compose-corpus.sh [BIN]   (default: target/release or target/debug binary;
# CARGO_TARGET_DIR is honoured). Needs docker-compose on PATH; no engine access is needed.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
CORPUS="$ROOT/agent/tests/fixtures/corpus"
# shellcheck source=tests/bench/lib.sh
source "$ROOT/tests/bench/lib.sh"

now() { date +%s.%N; }
ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", (b - a) * 1000 }'; }

# A desired state whose hosts.yaml selects the given stacks (copies of corpus dirs).
desired() {
  local dir="$1"; shift
  mkdir -p "$dir/stacks"
  local list=""
  for n in "$@"; do
    cp -r "$CORPUS/$n" "$dir/stacks/$n"
    list="${list:+$list, }$n"
  done
  printf 'hosts:\n  default: {stacks: [%s]}\n' "$list" > "$dir/hosts.yaml"
}

# Host agent configs: one allowing nothing beyond the defaults, one granting every policy rule.
printf 'policy: {}\n' > "$TMP/strict.yaml"
printf 'policy:\n  host_paths: ["/:rw"]\n  docker_socket: true\n  privileged: true\n  network_host: true\n  pid_host: true\n  ipc_host: true\n  cap_add: [ALL]\n  security_opt: ["label=disable"]\n' > "$TMP/grant.yaml"

validate() {
  MACULA_GITOPS_CONFIG="${2:-$TMP/strict.yaml}" MACULA_GITOPS_LOG=error "$BIN" \
    --desired-state "$1" --host corpus-bench --state-dir "$TMP/state" validate
}

names=()
for d in "$CORPUS"/*/; do
  [ -f "$d/compose.yaml" ] && names+=("$(basename "$d")")
done
total=${#names[@]}
agent_ok=0 granted_ok=0 compose_ok=0 agent_ms=0 compose_ms=0

printf '| file | docker-compose | ms | agent | ms | agent: first problem |\n|---|---|---|---|---|---|\n'
for n in "${names[@]}"; do
  ds="$TMP/one-$n"
  desired "$ds" "$n"

  t0=$(now)
  if (cd "$CORPUS/$n" && docker-compose -p corpusbench -f compose.yaml config -q) >"$TMP/c.out" 2>&1; then
    c=yes; compose_ok=$((compose_ok + 1))
  else
    c=no
  fi
  t1=$(now)
  if validate "$ds" >"$TMP/a.out" 2>&1; then
    a=yes; agent_ok=$((agent_ok + 1)); why=""
  else
    a=no
    why="$(grep -m1 '^error: ' "$TMP/a.out" | sed "s|^error: ||; s|$ds/||g; s/|/\\\\|/g" | cut -c1-160)"
  fi
  t2=$(now)
  if [ "$a" = yes ] || validate "$ds" "$TMP/grant.yaml" >/dev/null 2>&1; then
    granted_ok=$((granted_ok + 1))
  fi
  cm=$(ms "$t0" "$t1"); am=$(ms "$t1" "$t2")
  compose_ms=$((compose_ms + cm)); agent_ms=$((agent_ms + am))
  printf '| %s | %s | %s | %s | %s | %s |\n' "$n" "$c" "$cm" "$a" "$am" "$why"
done

echo
echo "docker-compose 1.29 config -q: $compose_ok/$total loaded, ${compose_ms} ms in total"
echo "agent validate:                $agent_ok/$total loaded, ${agent_ms} ms in total (one process per file)"
echo "agent validate, every host-policy rule granted in the agent config: $granted_ok/$total loaded"

# Whole corpus in one desired state: time per file must not grow with the number of files.
echo
echo "| stacks in one validate | ms | ms per stack |"
echo "|---|---|---|"
for k in $((total / 4)) $((total / 2)) "$total"; do
  ds="$TMP/all-$k"
  desired "$ds" "${names[@]:0:$k}"
  best=""
  for _ in 1 2 3; do
    t0=$(now); validate "$ds" >/dev/null 2>&1 || true; t1=$(now)
    m=$(ms "$t0" "$t1")
    if [ -z "$best" ] || [ "$m" -lt "$best" ]; then best=$m; fi
  done
  printf '| %s | %s | %s |\n' "$k" "$best" "$(awk -v a="$best" -v b="$k" 'BEGIN { printf "%.1f", a / b }')"
done

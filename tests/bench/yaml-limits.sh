#!/usr/bin/env bash
# Hostile and large YAML against the reader's limits (issue 9, "one reader"): generates
#   big-10mb      a valid compose file just under 10 MiB (one service, a 10 MB `x-data` list)
#   services-10mb a valid compose file just under 10 MiB (one service per ~500 bytes)
#   over-10mib    the same plus one byte over 10 MiB (refused by size before it is read)
#   bomb-260kb    a 260 KB file of nested aliases ("billion laughs")
#   bomb-1mb      the same at 1 MB
# and runs `macula-gitops validate` on a desired state holding each as its only stack, and
# Debian's docker-compose 1.29 `config -q` on the same file, each under `/usr/bin/time -v`:
# prints wall time, max RSS and exit status side by side.
#
# With READER=<binary> set, also runs that binary on each compose file: a release build of the
# reader alone (agent/src/input + diag.rs, see BENCHMARKS.md), for figures without debug overhead
# when only a debug agent binary is at hand.
#
# Usage: [READER=bin] tests/bench/yaml-limits.sh [BIN]   (default: target/release, else
# target/debug binary; CARGO_TARGET_DIR is honoured). Needs python3, /usr/bin/time, docker-compose.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
# shellcheck source=tests/bench/lib.sh
source "$ROOT/tests/bench/lib.sh"

python3 - "$TMP" <<'EOF'
import os, sys
tmp = sys.argv[1]
MIB10 = 10 * 1024 * 1024

def stack(name, text):
    d = os.path.join(tmp, name, "stacks", "app")
    os.makedirs(d)
    with open(os.path.join(d, "compose.yaml"), "w") as f:
        f.write(text)
    with open(os.path.join(tmp, name, "hosts.yaml"), "w") as f:
        f.write("hosts:\n  default: {stacks: [app]}\n")

head = "services:\n  app:\n    image: busybox:1.36\nx-data:\n"
line = "  - " + "item-0123456789 " * 6 + "\n"
n = (MIB10 - 1 - len(head)) // len(line)
big = head + line * n
stack("big-10mb", big)

svc = "  s{i}:\n    image: busybox:1.36\n    environment: {{A: '1', B: '2', C: three}}\n    labels: {{com.example.role: worker, com.example.index: '{i}'}}\n    command: [sleep, '3600']\n    restart: unless-stopped\n    healthcheck: {{test: [CMD, 'true'], interval: 30s, retries: 3}}\n    x-note: padding padding padding padding padding padding padding padding padding padding\n"
parts, size, i = ["services:\n"], 10, 0
while True:
    s = svc.format(i=i)
    if size + len(s) > MIB10 - 1:
        break
    parts.append(s)
    size += len(s)
    i += 1
stack("services-10mb", "".join(parts))
stack("over-10mib", big + "#" * (MIB10 + 1 - len(big)))

def bomb(target):
    # Ten lol's, then levels of ten aliases of the level below; pad each level's line with
    # more aliases of level 0 until the file has the target size.
    lines = ["x-a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"]
    level = 1
    while sum(map(len, lines)) < target:
        refs = ", ".join([f"*a{level - 1}"] * 10)
        lines.append(f"x-a{level}: &a{level} [{refs}]\n")
        level += 1
        if level > 12:
            pad = ", ".join(["*a0"] * 1000)
            while sum(map(len, lines)) < target:
                lines.append(f"x-p{len(lines)}: [{pad}]\n")
    return "services:\n  app:\n    image: busybox:1.36\n" + "".join(lines)

stack("bomb-260kb", bomb(260 * 1024))
stack("bomb-1mb", bomb(1024 * 1024))
EOF

measure() { # label, command...
  local out="$TMP/time.out" rc=0
  /usr/bin/time -v "${@:2}" >/dev/null 2>"$out" || rc=$?
  local wall rss
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$out")
  rss=$(awk -F': ' '/Maximum resident set size/ {printf "%.0f", $2 / 1024}' "$out")
  printf '%s | %s s | %s MB | exit %s' "$1" "${wall#0:}" "$rss" "$rc"
  grep -m1 -E '^(error|ERROR)' "$out" | cut -c1-110 | sed 's/^/ | /' || printf ' | '
}

printf '| file | bytes | tool | wall | max RSS | status | says |\n|---|---|---|---|---|---|---|\n'
for name in big-10mb services-10mb over-10mib bomb-260kb bomb-1mb; do
  ds="$TMP/$name"
  bytes=$(stat -c %s "$ds/stacks/app/compose.yaml")
  a=$(measure "agent \`validate\` ($(basename "$(dirname "$BIN")"))" env MACULA_GITOPS_LOG=error "$BIN" --desired-state "$ds" --host bench \
      --state-dir "$TMP/state" validate)
  c=$(cd "$ds/stacks/app" && measure 'docker-compose 1.29 `config -q`' timeout 120 docker-compose -p yamlbench -f compose.yaml config -q)
  printf '| %s | %s | %s |\n' "$name" "$bytes" "$a"
  if [ -n "${READER:-}" ]; then
    r=$(measure 'reader alone (release)' "$READER" "$ds/stacks/app/compose.yaml")
    printf '| %s | %s | %s |\n' "$name" "$bytes" "$r"
  fi
  printf '| %s | %s | %s |\n' "$name" "$bytes" "$c"
done

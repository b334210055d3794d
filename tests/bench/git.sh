#!/usr/bin/env bash
# gix (the agent's fetch, via the hidden `macula-gitops source-sync`) vs the git CLI on the same
# repositories: clone of a generated N-commit repo, and a no-op fetch. file:// and smart HTTP
# (git http-backend behind busybox httpd). Prints medians and gix/git ratios (lower is better).
#
#   cargo build --release -p macula-gitops && tests/bench/git.sh
#   BIN=path/to/macula-gitops N=5000 RUNS=7 tests/bench/git.sh
set -euo pipefail

BIN=${BIN:-target/release/macula-gitops}
N=${N:-5000}
RUNS=${RUNS:-7}
[ -x "$BIN" ] || { echo "build first: cargo build --release -p macula-gitops ($BIN missing)" >&2; exit 1; }
BIN=$(realpath "$BIN")

work=$(mktemp -d)
httpd_pid=
cleanup() { [ -n "$httpd_pid" ] && kill "$httpd_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
export GIT_CONFIG_NOSYSTEM=1 HOME=$work

# --- a repo with N commits, each touching one of 200 files under desired-state/ -------------
gen() {
  local t=1700000000
  for ((i = 1; i <= N; i++)); do
    printf 'commit refs/heads/main\ncommitter bench <bench@example.invalid> %d +0000\n' $((t + i))
    printf 'data <<EOM\ncommit %d\nEOM\n' "$i"
    body="service-$((i % 200)) revision $i $(printf '%0200d' "$i")"
    printf 'M 100644 inline desired-state/stack-%d/compose.yaml\ndata %d\n%s\n' $((i % 200)) ${#body} "$body"
  done
}
git init -q --bare -b main "$work/srv/lab.git"
gen | git -C "$work/srv/lab.git" fast-import --quiet
git -C "$work/srv/lab.git" gc -q
echo "repo: $N commits, $(du -sh "$work/srv/lab.git" | cut -f1) packed"

# --- smart HTTP ------------------------------------------------------------------------------
mkdir -p "$work/httpd/cgi-bin"
cat > "$work/httpd/cgi-bin/git" <<CGI
#!/bin/sh
export GIT_PROJECT_ROOT='$work/srv' GIT_HTTP_EXPORT_ALL=1
exec /usr/lib/git-core/git-http-backend
CGI
chmod +x "$work/httpd/cgi-bin/git"
port=$(( (RANDOM % 20000) + 30000 ))
busybox httpd -f -p "127.0.0.1:$port" -h "$work/httpd" & httpd_pid=$!
sleep 0.3

now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.3f", m}'; }

bench() { # $1 = label, $2 = url
  local label=$1 url=$2 i s
  local gix_clone=() git_clone=() git_checkout=() gix_noop=() git_noop=()
  for ((i = 0; i < RUNS; i++)); do
    rm -rf "$work/gix" "$work/git.git"
    s=$(now); "$BIN" source-sync --url "$url" --ref main --state-dir "$work/gix" >/dev/null
    gix_clone+=("$(echo "$(now) - $s" | bc)")
    s=$(now); git clone -q --bare "$url" "$work/git.git"
    git_clone+=("$(echo "$(now) - $s" | bc)")
    rm -rf "$work/git-wt"
    s=$(now); git clone -q "$url" "$work/git-wt"
    git_checkout+=("$(echo "$(now) - $s" | bc)")
    s=$(now); "$BIN" source-sync --url "$url" --ref main --state-dir "$work/gix" >/dev/null
    gix_noop+=("$(echo "$(now) - $s" | bc)")
    s=$(now); git -C "$work/git.git" fetch -q "$url" '+refs/heads/*:refs/remotes/origin/*' '+refs/tags/*:refs/tags/*'
    git_noop+=("$(echo "$(now) - $s" | bc)")
  done
  local gc gt gw gn tn
  gc=$(printf '%s\n' "${gix_clone[@]}" | median); gt=$(printf '%s\n' "${git_clone[@]}" | median)
  gw=$(printf '%s\n' "${git_checkout[@]}" | median)
  gn=$(printf '%s\n' "${gix_noop[@]}" | median); tn=$(printf '%s\n' "${git_noop[@]}" | median)
  printf '| %-10s | clone (%d commits) vs `git clone --bare` | %s s | %s s | %.2f× |\n' "$label" "$N" "$gc" "$gt" "$(echo "$gc / $gt" | bc -l)"
  printf '| %-10s | clone (%d commits) vs `git clone` (checkout) | %s s | %s s | %.2f× |\n' "$label" "$N" "$gc" "$gw" "$(echo "$gc / $gw" | bc -l)"
  printf '| %-10s | no-op fetch | %s s | %s s | %.2f× |\n' "$label" "$gn" "$tn" "$(echo "$gn / $tn" | bc -l)"
}

echo "runs per figure: $RUNS (median); gix = macula-gitops source-sync (fetch + snapshot of the tree)"
echo "| transport  | operation | gix (agent) | git CLI | ratio |"
echo "|------------|-----------|-------------|---------|-------|"
bench "file://" "file://$work/srv/lab.git"
bench "smart-http" "http://127.0.0.1:$port/cgi-bin/git/lab.git"

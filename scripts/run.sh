#!/usr/bin/env bash
# Builds Bulwark (release) and runs it on its embedded store.
#   ./scripts/run.sh [DATA_DIR]        (default ./data, or $BULWARK_DIR)
# A missing data directory is initialised first for $BULWARK_DOMAIN (default
# example.test) and $BULWARK_HOSTNAME (default mail.$BULWARK_DOMAIN). As root the
# standard ports are used on all addresses; otherwise 127.0.0.1 with ports + 10000
# (SMTP 10025, submission 10587, IMAPS 10993, …).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/ensure-deps.sh build
cargo build --release --locked -p bulwark
dir=${1:-${BULWARK_DIR:-./data}}
if [ ! -f "$dir/bulwark.toml" ]; then
  domain=${BULWARK_DOMAIN:-example.test}
  host=${BULWARK_HOSTNAME:-mail.$domain}
  if [ "$(id -u)" = 0 ]; then where=(); else where=(--listen 127.0.0.1 --port-base 10000); fi
  target/release/bulwark --dir "$dir" init --domain "$domain" --hostname "$host" "${where[@]}"
fi
exec target/release/bulwark --dir "$dir" serve

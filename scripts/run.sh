#!/usr/bin/env bash
# Builds Bulwark (release) and runs it on its embedded store.
#
#   ./scripts/run.sh [--port-base N] [--listen ADDR] [DATA_DIR]
#
# DATA_DIR (relative to where you are) defaults to $BULWARK_DIR, then ./data in the
# checkout (git-ignored). A directory without a configuration is initialised for
# $BULWARK_DOMAIN (default example.test) and $BULWARK_HOSTNAME (default
# mail.$BULWARK_DOMAIN).
#
# Ports: every listener at its standard port + N (--port-base N, or $BULWARK_PORT_BASE)
# on ADDR (--listen ADDR, or $BULWARK_LISTEN). Defaults: as root the standard ports on
# every address; otherwise 127.0.0.1 with ports + 10000 (SMTP 10025, submission 10587,
# IMAPS 10993, POP3S 10995, metrics 19425 on loopback). Given for a directory that is
# already initialised, they rewrite the `bind` lines of its bulwark.toml (the old file
# is kept as bulwark.toml.bak), so a port clash is fixed by running the script again.
#
# As root the server binds its ports and then runs as the unprivileged user
# $BULWARK_USER (default bulwark): the script creates that system user if it is
# missing, writes it to [server] user at init, and gives it the data directory.
# $BULWARK_BIN runs that binary instead of building one.
set -euo pipefail
# A DIR given relative is relative to where the script was started; the default
# ./data is inside the checkout.
caller=$(pwd)
cd "$(dirname "$0")/.."
# Whatever the script writes (a rewritten bulwark.toml) is private, like init's files.
umask 077

usage() {
  sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

port_base=${BULWARK_PORT_BASE:-}
listen=${BULWARK_LISTEN:-}
dir=${BULWARK_DIR:-}
while (($#)); do
  case $1 in
  --port-base) [ $# -ge 2 ] || usage; port_base=$2; shift ;;
  --port-base=*) port_base=${1#*=} ;;
  --listen) [ $# -ge 2 ] || usage; listen=$2; shift ;;
  --listen=*) listen=${1#*=} ;;
  -h | --help) usage ;;
  -*) echo "run.sh: unknown option $1" >&2; usage ;;
  *) dir=$1 ;;
  esac
  shift
done
if [ -z "$dir" ]; then dir=./data; elif [[ $dir != /* ]]; then dir=$caller/$dir; fi
if [ -n "$port_base" ] && ! [[ $port_base =~ ^[0-9]+$ ]]; then
  echo "run.sh: --port-base must be a number (e.g. 10000), not '$port_base'" >&2
  exit 2
fi
explicit=0
[ -n "$port_base$listen" ] && explicit=1
if [ "$(id -u)" = 0 ]; then
  port_base=${port_base:-0}
else
  port_base=${port_base:-10000}
  listen=${listen:-127.0.0.1}
fi

if [ -n "${BULWARK_BIN:-}" ]; then
  # A binary built elsewhere (the integration tests run this script with theirs).
  bulwark=$BULWARK_BIN
else
  ./scripts/ensure-deps.sh build
  cargo build --release --locked -p bulwark
  bulwark=target/release/bulwark
fi

run_as=()
if [ "$(id -u)" = 0 ]; then
  user=${BULWARK_USER:-bulwark}
  if ! getent passwd "$user" >/dev/null; then
    echo "run.sh: creating the system user $user (the server runs as it after binding its ports)" >&2
    useradd --system --user-group --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin "$user"
  fi
  run_as=(--user "$user")
fi

where=()
[ -n "$listen" ] && where+=(--listen "$listen")
[ "$port_base" != 0 ] && where+=(--port-base "$port_base")

if [ ! -f "$dir/bulwark.toml" ]; then
  domain=${BULWARK_DOMAIN:-example.test}
  host=${BULWARK_HOSTNAME:-mail.$domain}
  "$bulwark" --dir "$dir" init --domain "$domain" --hostname "$host" "${where[@]}" "${run_as[@]}"
elif ((explicit)); then
  # Move every listener of the existing configuration: the bind line of each
  # [listeners.NAME] table becomes ADDR:(standard port + N). Metrics stays on
  # loopback unless ADDR is loopback (beyond it, it would need a bearer token).
  cp -p "$dir/bulwark.toml" "$dir/bulwark.toml.bak"
  awk -v base="$port_base" -v listen="$listen" '
    BEGIN {
      split("smtp 25 submission 587 submissions 465 imap 143 imaps 993 pop3 110 pop3s 995 http 80 https 443 metrics 9425", a, " ")
      for (i = 1; i in a; i += 2) std[a[i]] = a[i + 1]
    }
    /^\[/ { section = $0; gsub(/^\[listeners\.|\][ \t]*$/, "", section); if ($0 !~ /^\[listeners\./) section = "" }
    section in std && /^bind[ \t]*=/ {
      ip = listen
      if (section == "metrics" && ip != "127.0.0.1" && ip != "::1") ip = (ip ~ /:/ ? "::1" : "127.0.0.1")
      if (ip == "") ip = (section == "metrics" ? "127.0.0.1" : "0.0.0.0")
      host = (ip ~ /:/ ? "[" ip "]" : ip)
      print "bind = [\"" host ":" (std[section] + base) "\"]"
      next
    }
    { print }
  ' "$dir/bulwark.toml.bak" >"$dir/bulwark.toml"
  echo "run.sh: listeners moved to ${listen:-all addresses} with port base $port_base (previous file: $dir/bulwark.toml.bak)" >&2
  "$bulwark" --dir "$dir" config check >/dev/null
fi

if [ "$(id -u)" = 0 ]; then
  # The server writes the store, logs and run state as that user.
  chown -R "$user:" "$dir"
fi
echo "run.sh: the CLI works while the server runs, e.g. $bulwark --dir $dir user add alice@${BULWARK_DOMAIN:-example.test}" >&2
exec "$bulwark" --dir "$dir" serve

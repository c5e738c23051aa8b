#!/usr/bin/env bash
# Installs the Debian packages Bulwark's build and tests need, if they are missing.
#   ensure-deps.sh build   C compiler for ring and the bundled SQLite
#   ensure-deps.sh test    build + the independent clients tests use (python3, curl, openssl,
#                          msmtp, and dkimpy — python3-dkim — as an independent DKIM verifier)
# Runs apt-get as root, or through sudo; never touches anything already installed.
set -euo pipefail
what=${1:-build}
need=()
command -v cc >/dev/null 2>&1 || need+=(gcc libc6-dev)
if [ "$what" = test ]; then
  command -v python3 >/dev/null 2>&1 || need+=(python3)
  command -v curl >/dev/null 2>&1 || need+=(curl)
  command -v openssl >/dev/null 2>&1 || need+=(openssl)
  # msmtp: a real submission client that cannot declare BODY=8BITMIME (8-bit tests).
  command -v msmtp >/dev/null 2>&1 || need+=(msmtp)
  # Debian's python3-dkim lives in the system interpreter (/usr/bin/python3), which a
  # python3 earlier on PATH (pyenv, venv) may not see: tests call /usr/bin/python3 for it.
  /usr/bin/python3 -c 'import dkim' >/dev/null 2>&1 || need+=(python3-dkim)
fi
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ]; then sudo=(); elif command -v sudo >/dev/null 2>&1; then sudo=(sudo); else
  echo "missing packages: ${need[*]} — install them (apt-get install ${need[*]}) and retry" >&2
  exit 1
fi
echo "installing: ${need[*]}" >&2
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null

#!/usr/bin/env bash
# Stops the reference peer started by bench/peers/setup.sh (only that instance: it is
# addressed by its own config directories), waiting until its processes are gone.
set -uo pipefail

if [[ $(id -u) -ne 0 ]]; then
    exec sudo -E "$0" "$@"
fi

PEER_DIR=${PEER_DIR:-/var/lib/bulwark-bench-peer}
pf=$PEER_DIR/postfix/etc
conf=$PEER_DIR/dovecot/dovecot.conf

pids=()
if [[ -f $pf/main.cf ]] && postfix -c "$pf" status >/dev/null 2>&1; then
    pid=$(tr -d ' \n' <"$PEER_DIR/postfix/spool/pid/master.pid" 2>/dev/null || true)
    postfix -c "$pf" stop >/dev/null 2>&1 || true
    [[ -n $pid ]] && pids+=("$pid")
fi
if [[ -f $PEER_DIR/run/dovecot/master.pid ]]; then
    pid=$(cat "$PEER_DIR/run/dovecot/master.pid")
    if kill -0 "$pid" 2>/dev/null; then
        doveadm -c "$conf" stop >/dev/null 2>&1 || kill -TERM "$pid" 2>/dev/null || true
        pids+=("$pid")
    fi
fi
for pid in "${pids[@]}"; do
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "process $pid did not stop" >&2
        exit 1
    fi
done
echo "reference peer stopped"

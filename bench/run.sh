#!/usr/bin/env bash
# Runs every benchmark scenario against Bulwark and the Postfix + Dovecot reference in
# the same run, on loopback, and writes bench/results/<date>.md (the table with the
# ratios Bulwark/reference and the targets) next to <date>.jsonl (the raw results).
#
#   bench/run.sh                 everything (about 15 minutes on 2 cores)
#   bench/run.sh --quick         smaller counts, a couple of minutes (for development)
#   bench/run.sh --only REGEX    only scenarios whose name matches (e.g. 'imap-|pop3-')
#   bench/run.sh --target bulwark|reference   one side only
#
# Needs root (the reference is installed with apt-get and runs as a system service in
# its own directories; see bench/peers/setup.sh). Bulwark is built in release mode and
# runs from a fresh data directory under $BENCH_WORK (default /var/tmp/bulwark-bench).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

QUICK=0
ONLY=.
TARGETS="bulwark reference"
while (($#)); do
    case $1 in
    --quick) QUICK=1 ;;
    --only) ONLY=$2; shift ;;
    --target) TARGETS=$2; shift ;;
    *) echo "usage: $0 [--quick] [--only REGEX] [--target bulwark|reference]" >&2; exit 2 ;;
    esac
    shift
done

if [[ $(id -u) -ne 0 ]]; then
    exec sudo -E "$0" "$@"
fi

# The IDLE scenario holds thousands of sockets in the client and in the servers.
ulimit -n "$(ulimit -Hn)"
if (($(ulimit -n) < 12000)); then
    echo "warning: ulimit -n is $(ulimit -n); the IDLE scenario needs about 11000" >&2
fi

export BENCH_PASSWORD=${BENCH_PASSWORD:-bench-password}
DOMAIN=example.test
HOST=mail.$DOMAIN
USERS="inbound submit fetch body big idle pop"
WORK=${BENCH_WORK:-/var/tmp/bulwark-bench}
B_PORT_BASE=${BENCH_BULWARK_PORT_BASE:-30000}
B_SINK_PORT=$((B_PORT_BASE + 2525))
DATE=$(date -u +%Y-%m-%d)
mkdir -p bench/results "$WORK"
JSONL=bench/results/$DATE.jsonl
MD=bench/results/$DATE.md
# A partial run (--only/--target) adds to the day's results; the report takes the
# latest run of each scenario and side.
[[ $ONLY == . && $TARGETS == "bulwark reference" ]] && : >"$JSONL"

# Scale of each scenario (full / --quick).
if ((QUICK)); then
    N_C1=50 N_C50=500 N_BIG_C1=30 N_BIG_C50=200 N_SUB=500 N_RELAY=500
    N_FETCH=2000 N_BODY=200 N_SELECT=10000 N_IDLE=500 N_POP=200 N_SPACE=10000 REPEAT=2
else
    N_C1=300 N_C50=3000 N_BIG_C1=100 N_BIG_C50=1000 N_SUB=2000 N_RELAY=2000
    N_FETCH=10000 N_BODY=1000 N_SELECT=100000 N_IDLE=5000 N_POP=1000 N_SPACE=100000 REPEAT=3
fi

# The IDLE user's hash is cheap on both servers (m = 1 MiB, t = 1 instead of 19 MiB,
# t = 2): its 5,000 logins are set-up, and at Argon2's full cost they alone take
# minutes on 2 cores. Login cost is measured by the submission scenarios.
IDLE_HASH=
log() { printf '\n== %s: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
want() { [[ $1 =~ $ONLY ]]; }
side() { [[ " $TARGETS " == *" $1 "* ]]; }

log "building release binaries"
pkgs=(-p bulwark-bench)
side bulwark && pkgs+=(-p bulwark)
cargo build --release --locked "${pkgs[@]}" 2>&1 | tail -n 3 >&2
BENCH=$root/target/release/bulwark-bench
BULWARK=$root/target/release/bulwark

IDLE_HASH=$(printf '%s\n' "$BENCH_PASSWORD" | "$BENCH" hash-password --cheap)

# ---- reference peer ------------------------------------------------------------------
if side reference; then
    log "setting up the reference (Postfix + Dovecot)"
    hash=$(printf '%s\n' "$BENCH_PASSWORD" | "$BENCH" hash-password)
    PEER_RESET=1 BENCH_PASSWORD_HASH=$hash BENCH_IDLE_PASSWORD_HASH=$IDLE_HASH BENCH_USERS=$USERS \
        PEER_MAX_CONNECTIONS=$((N_IDLE + 1000)) bench/peers/setup.sh >"$WORK/peer.env"
    # shellcheck disable=SC1091
    source "$WORK/peer.env"
    owner="$(id -u "$PEER_MAIL_USER"):$(id -g "$PEER_MAIL_USER")"
    seed_ref() { # user count size
        "$BENCH" seed-maildir --maildir "$PEER_MAIL_DIR/$1/Maildir" --user "$1@$DOMAIN" \
            --count "$2" --size "$3" --owner "$owner"
        # Let Dovecot index the new files before anything is timed.
        doveadm -c "$PEER_DOVECOT_CONF" index -u "$1@$DOMAIN" INBOX
    }
    log "seeding the reference's Maildirs"
    seed_ref fetch "$N_FETCH" 4096
    seed_ref body "$N_BODY" 102400
    seed_ref big "$N_SELECT" 1024
    seed_ref pop "$N_POP" 102400
    REF_ARGS=(--target reference --pid-file "$PEER_POSTFIX_PID" --pid-file "$PEER_DOVECOT_PID"
        --ca "$PEER_DIR/tls/cert.pem" --out "$JSONL")
fi

# ---- Bulwark ---------------------------------------------------------------------------
B_PID=
stop_bulwark() {
    if [[ -n $B_PID ]] && kill -0 "$B_PID" 2>/dev/null; then
        kill -TERM "$B_PID"
        wait "$B_PID" 2>/dev/null || true
    fi
    B_PID=
}
trap stop_bulwark EXIT

if side bulwark; then
    log "setting up Bulwark in $WORK/bulwark"
    BDIR=$WORK/bulwark
    rm -rf "$BDIR"
    "$BULWARK" --dir "$BDIR" init --domain "$DOMAIN" --hostname "$HOST" \
        --listen 127.0.0.1 --port-base "$B_PORT_BASE" >/dev/null
    for u in $USERS; do
        printf '%s\n' "$BENCH_PASSWORD" | "$BULWARK" --dir "$BDIR" user add "$u@$DOMAIN" --password-stdin >/dev/null
    done
    # Only limits change, as for the reference: the benchmark opens up to 5,000 IMAP
    # connections and 50 SMTP clients that reconnect per message, all from 127.0.0.1
    # (the reference exempts loopback from its per-client limits: mynetworks).
    python3 bench/bulwark-config.py "$BDIR/bulwark.toml" "$((N_IDLE + 1000))" "$B_SINK_PORT"
    "$BULWARK" --dir "$BDIR" config check >/dev/null
    log "seeding Bulwark's store"
    "$BENCH" seed-store --store "$BDIR/store" --user "fetch@$DOMAIN" --count "$N_FETCH" --size 4096
    "$BENCH" seed-store --store "$BDIR/store" --user "body@$DOMAIN" --count "$N_BODY" --size 102400
    "$BENCH" seed-store --store "$BDIR/store" --user "big@$DOMAIN" --count "$N_SELECT" --size 1024
    "$BENCH" seed-store --store "$BDIR/store" --user "pop@$DOMAIN" --count "$N_POP" --size 102400
    "$BENCH" set-password-hash --store "$BDIR/store" --user "idle@$DOMAIN" --hash "$IDLE_HASH"
    # Root without [server] user needs --allow-root: privilege separation costs
    # nothing per message, and the bench's data directory stays root's.
    "$BULWARK" --dir "$BDIR" serve --allow-root >"$WORK/bulwark.log" 2>&1 &
    B_PID=$!
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$((B_PORT_BASE + 25))") 2>/dev/null && break
        sleep 0.1
    done
    B_ARGS=(--target bulwark --pid "$B_PID" --ca "$BDIR/tls/cert.pem" --out "$JSONL")
fi

# Ports of each side: P_<side>_<listener>.
port() { # side listener
    local std=$2
    if [[ $1 == bulwark ]]; then echo $((B_PORT_BASE + std)); else echo $((PEER_PORT_BASE_ + std)); fi
}
PEER_PORT_BASE_=$(( ${PEER_SMTP_PORT:-20025} - 25 ))
args() { if [[ $1 == bulwark ]]; then echo "${B_ARGS[@]}"; else echo "${REF_ARGS[@]}"; fi; }

# Runs one scenario on every selected side, Bulwark first.
scenario() { # name command args...
    local name=$1
    shift
    want "$name" || return 0
    for t in $TARGETS; do
        if [[ $t == bulwark ]]; then
            # Protocols land one by one; a scenario Bulwark cannot run yet is skipped
            # (the table then says "not run").
            if [[ $1 == imap-* ]] && ! (exec 3<>"/dev/tcp/127.0.0.1/$(port bulwark 993)") 2>/dev/null; then
                log "$name on bulwark: skipped (no IMAP listener)"
                continue
            fi
            if [[ $1 == pop3-* ]] && ! (exec 3<>"/dev/tcp/127.0.0.1/$(port bulwark 995)") 2>/dev/null; then
                log "$name on bulwark: skipped (no POP3 listener)"
                continue
            fi
            if [[ $1 == relay ]] && ! grep -q max_concurrent_deliveries "$BDIR/bulwark.toml"; then
                log "$name on bulwark: skipped (no outbound delivery)"
                continue
            fi
        fi
        log "$name on $t"
        local a
        read -r -a a <<<"$(args "$t")"
        local cmd=("$@")
        cmd=("${cmd[@]//@SMTP@/127.0.0.1:$(port "$t" 25)}")
        cmd=("${cmd[@]//@SUBMISSION@/127.0.0.1:$(port "$t" 587)}")
        cmd=("${cmd[@]//@IMAPS@/127.0.0.1:$(port "$t" 993)}")
        cmd=("${cmd[@]//@POP3S@/127.0.0.1:$(port "$t" 995)}")
        if [[ $t == bulwark ]]; then
            cmd=("${cmd[@]//@SINK@/127.0.0.1:$B_SINK_PORT}")
            if ! (exec 3<>"/dev/tcp/127.0.0.1/$(port bulwark 993)") 2>/dev/null; then
                # A Bulwark without IMAP: check delivery in its store instead.
                local i
                for i in "${!cmd[@]}"; do
                    if [[ ${cmd[$i]} == --verify-imaps ]]; then
                        cmd[$i]=--verify-store
                        cmd[$((i + 1))]=$BDIR/store
                    fi
                done
            fi
        else
            cmd=("${cmd[@]//@SINK@/127.0.0.1:${PEER_SINK_PORT:-0}}")
        fi
        "$BENCH" "${cmd[0]}" "${a[@]}" --scenario "$name" "${cmd[@]:1}" >/dev/null ||
            echo "scenario $name on $t failed" >&2
    done
}

inbound=(--from "sender@remote.example.net" --to "inbound@$DOMAIN" --verify-imaps @IMAPS@)

# (1) SMTP inbound on 25: durable delivery (counted when the message is in the INBOX).
scenario smtp-25-4k-c1-plain smtp --addr @SMTP@ --clients 1 --messages "$N_C1" --size 4096 "${inbound[@]}"
scenario smtp-25-4k-c1-starttls smtp --addr @SMTP@ --starttls --clients 1 --messages "$N_C1" --size 4096 "${inbound[@]}"
scenario smtp-25-4k-c50-plain smtp --addr @SMTP@ --clients 50 --messages "$N_C50" --size 4096 "${inbound[@]}"
scenario smtp-25-4k-c50-starttls smtp --addr @SMTP@ --starttls --clients 50 --messages "$N_C50" --size 4096 "${inbound[@]}"
scenario smtp-25-100k-c1-starttls smtp --addr @SMTP@ --starttls --clients 1 --messages "$N_BIG_C1" --size 102400 "${inbound[@]}"
scenario smtp-25-100k-c50-starttls smtp --addr @SMTP@ --starttls --clients 50 --messages "$N_BIG_C50" --size 102400 "${inbound[@]}"
# (2) Submission on 587: STARTTLS + AUTH PLAIN, 10 messages per session.
scenario smtp-587-4k-c50-auth smtp --addr @SUBMISSION@ --auth-user "submit@$DOMAIN" --clients 50 \
    --messages "$N_SUB" --per-session 10 --size 4096 --from "submit@$DOMAIN" --to "inbound@$DOMAIN" \
    --verify-imaps @IMAPS@ --verify-user "inbound@$DOMAIN"
# (3) IMAP over TLS (993).
scenario imap-fetch-envelope-10k imap-fetch --imaps @IMAPS@ --user "fetch@$DOMAIN" --expect "$N_FETCH" \
    --items "(FLAGS ENVELOPE)" --repeat "$REPEAT"
scenario imap-fetch-body-1k imap-fetch --imaps @IMAPS@ --user "body@$DOMAIN" --expect "$N_BODY" \
    --items "(BODY.PEEK[])" --repeat "$REPEAT"
scenario imap-search-10k imap-search --imaps @IMAPS@ --user "fetch@$DOMAIN" --expect "$N_FETCH" --repeat "$REPEAT"
scenario imap-select-100k imap-select --imaps @IMAPS@ --user "big@$DOMAIN" --expect "$N_SELECT" --repeat 5
scenario imap-append-4k-c10 imap-append --imaps @IMAPS@ --user "submit@$DOMAIN" --clients 10 \
    --messages "$N_C50" --size 4096
# (5) POP3 over TLS (995).
scenario pop3-retr-1k-100k pop3-retr --pop3s @POP3S@ --user "pop@$DOMAIN" --expect "$N_POP" --repeat "$((REPEAT - 1))"
# (6) Relay: submission -> queue -> sink on loopback.
scenario relay-587-4k-c50 relay --addr @SUBMISSION@ --auth-user "submit@$DOMAIN" --clients 50 \
    --messages "$N_RELAY" --per-session 10 --size 4096 --from "submit@$DOMAIN" --to "user@sink.test" \
    --sink @SINK@
# (4) IDLE last: it leaves thousands of sockets in TIME_WAIT.
scenario imap-idle-5000 imap-idle --imaps @IMAPS@ --user "idle@$DOMAIN" --connections "$N_IDLE" --parallel 64

stop_bulwark
if side reference; then
    bench/peers/stop.sh >/dev/null
fi

{
    echo "# Benchmark results $DATE"
    echo
    echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)."
    echo "Bulwark $(git -C "$root" rev-parse --short HEAD) (release build); reference: Postfix $(postconf -d -h mail_version 2>/dev/null || echo '?') + Dovecot $(dovecot --version 2>/dev/null | cut -d' ' -f1 || echo '?')."
    ((QUICK)) && echo "**Quick run (--quick): reduced counts; not comparable with full runs.**"
    echo
    echo "Produced by \`bench/run.sh\`; see bench/README.md for how to read it."
    echo
    "$BENCH" report --results "$JSONL"
    if side bulwark && want store-space; then
        echo
        "$BENCH" store-space --work "$WORK" --count "$N_SPACE" --size 4096 --delete-percent 90
    fi
} >"$MD"
log "results: $MD"
cat "$MD"

#!/usr/bin/env bash
# The reference peer for Bulwark's benchmarks: Postfix + Dovecot from Debian's packages,
# configured as a *secure* server on loopback high ports, in their own directories so
# the machine's default instances (/etc/postfix, /etc/dovecot) are neither used nor
# touched.
#
#   Postfix smtpd      127.0.0.1:$PEER_SMTP_PORT        STARTTLS offered, 25 MiB limit,
#                                                     recipients checked at RCPT
#   Postfix submission 127.0.0.1:$PEER_SUBMISSION_PORT  STARTTLS required, SASL (Dovecot)
#                                                     only after TLS (smtpd_tls_auth_only)
#   local delivery     Postfix -> Dovecot LMTP (unix socket) -> Maildir, Dovecot's
#                      default fsync (mail_fsync = optimized: fsync before LMTP 250)
#   Dovecot IMAP       127.0.0.1:$PEER_IMAP_PORT (STARTTLS) / $PEER_IMAPS_PORT (TLS)
#   Dovecot POP3       127.0.0.1:$PEER_POP3_PORT (STLS) / $PEER_POP3S_PORT (TLS)
#                      ssl = required: no login without TLS on any of them
#   relay              mail to @$PEER_SINK_DOMAIN goes to 127.0.0.1:$PEER_SINK_PORT
#                      (the load generator's sink), opportunistic STARTTLS
#
# Same test users and password as Bulwark's bench set-up (bench/run.sh): the users in
# $BENCH_USERS at $BENCH_DOMAIN with password $BENCH_PASSWORD. BENCH_PASSWORD_HASH may
# carry an Argon2id PHC string (run.sh passes one with Bulwark's exact cost,
# m=19 MiB t=2 p=1, so both servers spend the same CPU per login); without it the hash
# is made by `doveadm pw -s ARGON2ID` (libsodium's cost, which is higher).
#
# Idempotent: re-running rewrites the configuration and restarts the peer; mail is kept
# unless PEER_RESET=1. Prints the ports as KEY=VALUE lines (also in $PEER_DIR/ports.env).
# Stop with bench/peers/stop.sh. Runs as root (or re-runs itself with sudo).
set -euo pipefail

if [[ $(id -u) -ne 0 ]]; then
    exec sudo -E "$0" "$@"
fi

PEER_DIR=${PEER_DIR:-/var/lib/bulwark-bench-peer}
PEER_PORT_BASE=${PEER_PORT_BASE:-20000}
PEER_SMTP_PORT=$((PEER_PORT_BASE + 25))
PEER_SUBMISSION_PORT=$((PEER_PORT_BASE + 587))
PEER_IMAP_PORT=$((PEER_PORT_BASE + 143))
PEER_IMAPS_PORT=$((PEER_PORT_BASE + 993))
PEER_POP3_PORT=$((PEER_PORT_BASE + 110))
PEER_POP3S_PORT=$((PEER_PORT_BASE + 995))
PEER_SINK_PORT=${PEER_SINK_PORT:-$((PEER_PORT_BASE + 2525))}
PEER_SINK_DOMAIN=${PEER_SINK_DOMAIN:-sink.test}
BENCH_DOMAIN=${BENCH_DOMAIN:-example.test}
BENCH_HOSTNAME=${BENCH_HOSTNAME:-mail.$BENCH_DOMAIN}
BENCH_USERS=${BENCH_USERS:-inbound submit fetch body big idle pop}
BENCH_PASSWORD=${BENCH_PASSWORD:-bench-password}
# Connections the IDLE scenario holds open, with headroom.
PEER_MAX_CONNECTIONS=${PEER_MAX_CONNECTIONS:-6000}
MAIL_USER=bulwarkbench

here=$(cd "$(dirname "$0")" && pwd)

# ---- packages ---------------------------------------------------------------------
need=()
for p in postfix dovecot-core dovecot-imapd dovecot-pop3d dovecot-lmtpd openssl; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if ((${#need[@]})); then
    echo "installing ${need[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    # "No configuration": the package must not set up (or start) a default instance.
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    apt-get update -qq
    apt-get install -y -q --no-install-recommends "${need[@]}" >&2
fi

# The packages' own instances (if the machine runs them) are left alone: ours use other
# directories, another instance_name and other ports.
"$here/stop.sh" >/dev/null 2>&1 || true

id -u "$MAIL_USER" >/dev/null 2>&1 ||
    useradd --system --user-group --no-create-home --shell /usr/sbin/nologin "$MAIL_USER"
MAIL_UID=$(id -u "$MAIL_USER")
MAIL_GID=$(id -g "$MAIL_USER")

mkdir -p "$PEER_DIR"
chmod 0755 "$PEER_DIR"
if [[ ${PEER_RESET:-0} == 1 ]]; then
    rm -rf "$PEER_DIR/mail" "$PEER_DIR/postfix/spool" "$PEER_DIR/postfix/lib" "$PEER_DIR/log"
fi
mkdir -p "$PEER_DIR"/{tls,log,run,lib/dovecot,dovecot,postfix/etc,postfix/spool,postfix/lib,mail}
# Homes owned by the mail user, so Dovecot (and the bench's Maildir seeding) can
# create the Maildirs in them.
for u in $BENCH_USERS; do
    mkdir -p "$PEER_DIR/mail/$BENCH_DOMAIN/$u"
done
chown -R "$MAIL_USER:$MAIL_USER" "$PEER_DIR/mail"
chmod 0700 "$PEER_DIR/mail"

# ---- certificate: self-signed ECDSA P-256, as `bulwark init` makes ------------------
# An end-entity certificate (CA:FALSE), so clients that verify it as a trust anchor
# (the load generator uses webpki) accept it.
if [[ ! -s $PEER_DIR/tls/cert.pem || ! -s $PEER_DIR/tls/key.pem ]] ||
    ! openssl x509 -in "$PEER_DIR/tls/cert.pem" -noout -text | grep -q "CA:FALSE"; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 730 \
        -subj "/CN=$BENCH_HOSTNAME" -addext "subjectAltName=DNS:$BENCH_HOSTNAME" \
        -addext "basicConstraints=critical,CA:FALSE" -addext "keyUsage=critical,digitalSignature" \
        -addext "extendedKeyUsage=serverAuth" \
        -keyout "$PEER_DIR/tls/key.pem" -out "$PEER_DIR/tls/cert.pem" 2>/dev/null
fi
chmod 0600 "$PEER_DIR/tls/key.pem"

# ---- users ----------------------------------------------------------------------------
if [[ -n ${BENCH_PASSWORD_HASH:-} ]]; then
    hash="{ARGON2ID}$BENCH_PASSWORD_HASH"
else
    hash=$(doveadm pw -s ARGON2ID -p "$BENCH_PASSWORD")
fi
: >"$PEER_DIR/dovecot/users.new"
: >"$PEER_DIR/postfix/etc/vmailbox"
: >"$PEER_DIR/postfix/etc/sender_login"
for u in $BENCH_USERS; do
    a="$u@$BENCH_DOMAIN"
    h=$hash
    # The IDLE scenario's user may get a cheap hash (same on both servers): its
    # thousands of logins are set-up, not what that scenario measures.
    if [[ $u == idle && -n ${BENCH_IDLE_PASSWORD_HASH:-} ]]; then
        h="{ARGON2ID}$BENCH_IDLE_PASSWORD_HASH"
    fi
    printf '%s:%s\n' "$a" "$h" >>"$PEER_DIR/dovecot/users.new"
    printf '%s OK\n' "$a" >>"$PEER_DIR/postfix/etc/vmailbox"
    printf '%s %s\n' "$a" "$a" >>"$PEER_DIR/postfix/etc/sender_login"
done
mv "$PEER_DIR/dovecot/users.new" "$PEER_DIR/dovecot/users"
chown root:dovecot "$PEER_DIR/dovecot/users"
chmod 0640 "$PEER_DIR/dovecot/users"
printf '%s smtp:[127.0.0.1]:%s\n' "$PEER_SINK_DOMAIN" "$PEER_SINK_PORT" >"$PEER_DIR/postfix/etc/transport"

# ---- Dovecot --------------------------------------------------------------------------
cat >"$PEER_DIR/dovecot/dovecot.conf" <<EOF
# Generated by bench/peers/setup.sh. Dovecot's defaults except where noted.
instance_name = bulwark-bench
base_dir = $PEER_DIR/run/dovecot
state_dir = $PEER_DIR/lib/dovecot
log_path = $PEER_DIR/log/dovecot.log
protocols = imap pop3 lmtp
listen = 127.0.0.1

# Secure peer: TLS 1.2 floor (as Bulwark), no password without TLS on any port.
ssl = required
ssl_cert = <$PEER_DIR/tls/cert.pem
ssl_key = <$PEER_DIR/tls/key.pem
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = yes
auth_mechanisms = plain login

passdb {
  driver = passwd-file
  args = $PEER_DIR/dovecot/users
}
userdb {
  driver = static
  args = uid=$MAIL_UID gid=$MAIL_GID home=$PEER_DIR/mail/%d/%n
}
first_valid_uid = $MAIL_UID
last_valid_uid = $MAIL_UID
mail_location = maildir:~/Maildir
# mail_fsync stays at its default ("optimized": fsync when a mail is saved, before the
# LMTP/APPEND reply).

# The benchmark opens thousands of connections as one user from 127.0.0.1; Dovecot's
# defaults (10 per user+IP, 1000 per service) would refuse them. Only limits change.
default_client_limit = $((PEER_MAX_CONNECTIONS * 2))
service imap {
  process_limit = $PEER_MAX_CONNECTIONS
}
protocol imap {
  mail_max_userip_connections = $PEER_MAX_CONNECTIONS
}
protocol pop3 {
  mail_max_userip_connections = $PEER_MAX_CONNECTIONS
}

service imap-login {
  process_limit = $PEER_MAX_CONNECTIONS
  inet_listener imap {
    address = 127.0.0.1
    port = $PEER_IMAP_PORT
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = $PEER_IMAPS_PORT
    ssl = yes
  }
}
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = $PEER_POP3_PORT
  }
  inet_listener pop3s {
    address = 127.0.0.1
    port = $PEER_POP3S_PORT
    ssl = yes
  }
}
service lmtp {
  unix_listener lmtp-postfix {
    mode = 0600
    user = postfix
    group = postfix
  }
}
service auth {
  unix_listener auth-postfix {
    mode = 0600
    user = postfix
    group = postfix
  }
}
EOF
if [[ -n ${PEER_DOVECOT_EXTRA:-} ]]; then
    printf '%s\n' "$PEER_DOVECOT_EXTRA" >>"$PEER_DIR/dovecot/dovecot.conf"
fi

# ---- Postfix --------------------------------------------------------------------------
pf=$PEER_DIR/postfix/etc
cat >"$pf/main.cf" <<EOF
# Generated by bench/peers/setup.sh: a separate Postfix instance (config_directory,
# queue_directory and data_directory of its own).
compatibility_level = 3.6
config_directory = $pf
queue_directory = $PEER_DIR/postfix/spool
data_directory = $PEER_DIR/postfix/lib
mail_owner = postfix
setgid_group = postdrop
maillog_file = $PEER_DIR/log/postfix.log
myhostname = $BENCH_HOSTNAME
mydomain = $BENCH_DOMAIN
myorigin = \$myhostname
mydestination =
local_recipient_maps =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
# Loopback only; no DNS leaves the machine (relay next hop is bracketed, no MX lookup).
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
mynetworks = 127.0.0.1/32
biff = no

# Same limits as Bulwark's defaults ([smtp] max_message_size, max_recipients).
message_size_limit = 26214400
smtpd_recipient_limit = 100

# Local mail: every bench user of $BENCH_DOMAIN, checked at RCPT, delivered over LMTP
# to Dovecot (which fsyncs the Maildir file before answering).
virtual_mailbox_domains = $BENCH_DOMAIN
virtual_mailbox_maps = texthash:$pf/vmailbox
virtual_transport = lmtp:unix:$PEER_DIR/run/dovecot/lmtp-postfix
transport_maps = texthash:$pf/transport

# Port 25: STARTTLS offered; never an open relay (not even for loopback).
smtpd_tls_security_level = may
smtpd_tls_cert_file = $PEER_DIR/tls/cert.pem
smtpd_tls_key_file = $PEER_DIR/tls/key.pem
smtpd_tls_protocols = >=TLSv1.2
smtpd_tls_mandatory_protocols = >=TLSv1.2
smtpd_tls_session_cache_database =
smtpd_relay_restrictions = reject_unauth_destination
smtpd_sasl_type = dovecot
smtpd_sasl_path = $PEER_DIR/run/dovecot/auth-postfix
smtpd_sender_login_maps = texthash:$pf/sender_login

# Outbound (relay scenario): opportunistic TLS, as Bulwark.
smtp_tls_security_level = may
smtp_tls_protocols = >=TLSv1.2
EOF

cat >"$pf/master.cf" <<EOF
# Generated by bench/peers/setup.sh. No chroot (paths outside the queue directory).
# service type  private unpriv  chroot  wakeup  maxproc command + args
127.0.0.1:$PEER_SMTP_PORT inet n - n - - smtpd
127.0.0.1:$PEER_SUBMISSION_PORT inet n - n - - smtpd
  -o syslog_name=postfix/submission
  -o smtpd_tls_security_level=encrypt
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_tls_auth_only=yes
  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
  -o smtpd_sender_restrictions=reject_sender_login_mismatch
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF

postfix -c "$pf" set-permissions >/dev/null 2>&1 || true
postfix -c "$pf" check

# ---- start ----------------------------------------------------------------------------
# The daemons must not inherit our stdout/stderr (a caller reading them through a pipe
# would wait forever); their logs are in $PEER_DIR/log/.
start_err=$PEER_DIR/log/start.err
dovecot -c "$PEER_DIR/dovecot/dovecot.conf" </dev/null >"$start_err" 2>&1 || {
    cat "$start_err" >&2
    exit 1
}
postfix -c "$pf" start </dev/null >"$start_err" 2>&1 || {
    cat "$start_err" >&2
    exit 1
}

# Wait until every port answers.
for port in $PEER_SMTP_PORT $PEER_SUBMISSION_PORT $PEER_IMAP_PORT $PEER_IMAPS_PORT \
    $PEER_POP3_PORT $PEER_POP3S_PORT; do
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.1
    done
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || {
        echo "port $port does not answer; see $PEER_DIR/log/" >&2
        exit 1
    }
done

cat >"$PEER_DIR/ports.env" <<EOF
PEER_DIR=$PEER_DIR
PEER_SMTP_PORT=$PEER_SMTP_PORT
PEER_SUBMISSION_PORT=$PEER_SUBMISSION_PORT
PEER_IMAP_PORT=$PEER_IMAP_PORT
PEER_IMAPS_PORT=$PEER_IMAPS_PORT
PEER_POP3_PORT=$PEER_POP3_PORT
PEER_POP3S_PORT=$PEER_POP3S_PORT
PEER_SINK_PORT=$PEER_SINK_PORT
PEER_SINK_DOMAIN=$PEER_SINK_DOMAIN
PEER_MAIL_DIR=$PEER_DIR/mail/$BENCH_DOMAIN
PEER_MAIL_USER=$MAIL_USER
PEER_DOVECOT_CONF=$PEER_DIR/dovecot/dovecot.conf
PEER_DOVECOT_PID=$PEER_DIR/run/dovecot/master.pid
PEER_POSTFIX_CONF=$pf
PEER_POSTFIX_PID=$PEER_DIR/postfix/spool/pid/master.pid
EOF
cat "$PEER_DIR/ports.env"

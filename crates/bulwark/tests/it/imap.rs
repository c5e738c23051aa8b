//! IMAP (143 STARTTLS, 993 implicit TLS) against the real binary, with independent
//! clients: Python's imaplib, curl, and raw sockets (plain and TLS, from Python's
//! standard library) where a library would hide the behaviour under test.

use std::time::Duration;

use crate::support::*;

const USER: &str = "alice@example.test";

/// Python helpers shared by the scripts: argv = cert, imap port, imaps port.
const PRELUDE: &str = r#"
import imaplib, ssl, socket, sys, time, re
CERT, HOST = sys.argv[1], '127.0.0.1'
IMAP, IMAPS = int(sys.argv[2]), int(sys.argv[3])
USER, PASS = 'alice@example.test', 'correct horse battery'

def ctx(check=True):
    c = ssl.create_default_context(cafile=CERT)
    c.check_hostname = check
    return c

def ssl_client():
    # The certificate names mail.example.test; imaplib connects by address.
    return imaplib.IMAP4_SSL(HOST, IMAPS, ssl_context=ctx(False))

def tls_client():
    m = imaplib.IMAP4(HOST, IMAP)
    m.starttls(ssl_context=ctx(False))
    return m

class Raw:
    def __init__(self, port, tls):
        s = socket.create_connection((HOST, port), timeout=20)
        if tls:
            s = ctx().wrap_socket(s, server_hostname='mail.example.test')
        self.s, self.buf = s, b''
    def line(self):
        while b'\r\n' not in self.buf:
            d = self.s.recv(65536)
            if not d:
                raise EOFError(repr(self.buf))
            self.buf += d
        l, self.buf = self.buf.split(b'\r\n', 1)
        return l.decode('utf-8', 'replace')
    def send(self, b):
        self.s.sendall(b if isinstance(b, bytes) else b.encode())
    def cmd(self, tag, text):
        self.send(tag + ' ' + text + '\r\n')
        return self.until(tag)
    def until(self, tag):
        out = []
        while True:
            l = self.line()
            out.append(l)
            if l.startswith(tag + ' '):
                return out
    def closed(self):
        try:
            self.s.settimeout(10)
            return self.s.recv(1) == b''
        except (ConnectionError, ssl.SSLError):
            return True

def login_raw(port=None):
    r = Raw(port or IMAPS, True)
    assert r.line().startswith('* OK'), 'greeting'
    out = r.cmd('l', 'LOGIN %s "%s"' % (USER, PASS))
    assert out[-1].startswith('l OK'), out
    return r

def msg(subject, body='Hello'):
    return ('From: Bob <bob@example.test>\r\nTo: alice@example.test\r\n'
            'Subject: %s\r\nDate: Tue, 3 Mar 2026 10:00:00 +0100\r\n'
            'Message-ID: <%s@example.test>\r\n\r\n%s\r\n' % (subject, subject.replace(' ', '.'), body)).encode()
"#;

struct Env {
    data: DataDir,
    server: Server,
}

fn start(edit: impl FnOnce(&mut toml_edit::DocumentMut)) -> Env {
    let data = DataDir::init();
    data.add_user(USER);
    data.add_user("bob@example.test");
    data.edit_config(edit);
    let server = Server::start(&data);
    Env { data, server }
}

impl Env {
    fn py(&self, script: &str) -> String {
        let full = format!("{PRELUDE}\n{script}");
        let cert = self.data.cert_path();
        let imap = self.server.port("imap").to_string();
        let imaps = self.server.port("imaps").to_string();
        python_ok(&full, &[cert.to_str().unwrap(), &imap, &imaps])
    }
}

#[test]
fn imaplib_starttls_and_implicit_tls_full_session() {
    let env = start(|_| {});
    let out = env.py(
        r#"
m = imaplib.IMAP4(HOST, IMAP)
caps = m.capabilities
assert 'STARTTLS' in caps and 'LOGINDISABLED' in caps, caps
assert not any(c.startswith('AUTH=') for c in caps), caps
try:
    m.login(USER, PASS)
    raise SystemExit('LOGIN before TLS must fail')
except imaplib.IMAP4.error as e:
    assert 'PRIVACYREQUIRED' in str(e), e
m.starttls(ssl_context=ctx(False))
assert 'AUTH=PLAIN' in m.capabilities and 'LOGINDISABLED' not in m.capabilities
typ, data = m.login(USER, PASS)
assert typ == 'OK' and b'[CAPABILITY IMAP4rev1' in data[0], data
for c in ['IDLE', 'UIDPLUS', 'MOVE', 'SPECIAL-USE', 'NAMESPACE', 'LITERAL+', 'ENABLE', 'ID', 'UNSELECT']:
    assert c.encode() in data[0], c

typ, boxes = m.list('""', '*')
text = b'\n'.join(boxes).decode()
for use, name in [('Sent', 'Sent'), ('Drafts', 'Drafts'), ('Trash', 'Trash'), ('Junk', 'Junk'), ('Archive', 'Archive')]:
    assert '\\%s) "/" %s' % (use, name) in text, text
typ, data = m.namespace()
assert data[0] == b'(("" "/")) NIL NIL', data

typ, data = m.select('INBOX')
assert data == [b'0'], data
typ, data = m.append('INBOX', '(\\Flagged $Work)', '"03-Mar-2026 10:00:00 +0100"', msg('first message', 'Grüße aus Köln'))
assert typ == 'OK' and b'[APPENDUID ' in data[0], data
uidvalidity, uid = re.search(rb'APPENDUID (\d+) (\d+)', data[0]).groups()
assert uid == b'1'
m.append('INBOX', None, None, msg('second message'))
m.noop()

typ, data = m.fetch('1:*', '(UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODYSTRUCTURE)')
first = data[0].decode()
# APPENDed while selected: this session was the first told of it, so \\Recent.
assert 'UID 1 FLAGS (\\Flagged $Work \\Recent)' in first, first
assert 'INTERNALDATE "03-Mar-2026 09:00:00 +0000"' in first, first
assert 'ENVELOPE ("Tue, 3 Mar 2026 10:00:00 +0100" "first message" (("Bob" NIL "bob" "example.test"))' in first, first
assert 'BODYSTRUCTURE ("TEXT" "PLAIN"' in first, first
typ, data = m.fetch('1', '(BODY.PEEK[HEADER.FIELDS (SUBJECT)])')
assert data[0][1] == b'Subject: first message\r\n\r\n', data
typ, data = m.fetch('1', '(BODY.PEEK[TEXT]<0.5>)')
assert data[0][1] == 'Grüß'.encode()[:5], data
typ, data = m.fetch('1', '(FLAGS)')
assert b'\\Seen' not in data[0], data
typ, data = m.fetch('2', '(BODY[])')
assert data[0][1] == msg('second message'), data
typ, data = m.fetch('2', '(FLAGS)')
assert b'\\Seen' in data[0], data

m.literal = 'Köln'.encode()
typ, data = m.search('UTF-8', 'BODY')
assert data == [b'1'], data
typ, data = m.search(None, 'SUBJECT', 'SECOND')
assert data == [b'2'], data
typ, data = m.uid('SEARCH', 'FLAGGED')
assert data == [b'1'], data

typ, data = m.store('2', '+FLAGS', '(\\Answered $Forwarded)')
assert b'\\Answered' in data[0] and b'$Forwarded' in data[0], data
typ, data = m.uid('COPY', '1:2', 'Archive')
assert typ == 'OK', data
typ, data = m.uid('MOVE', '1', 'Trash')
assert typ == 'OK', data
typ, data = m.status('Archive', '(MESSAGES UIDNEXT UNSEEN)')
assert data[0] == b'Archive (MESSAGES 2 UIDNEXT 3 UNSEEN 1)', data
typ, data = m.status('INBOX', '(MESSAGES)')
assert data[0] == b'INBOX (MESSAGES 1)', data
m.store('1', '+FLAGS', '(\\Deleted)')
typ, data = m.expunge()
# imaplib also returns the EXPUNGE that MOVE caused.
assert data == [b'1', b'1'], data

assert m.create('Projects/2026')[0] == 'OK'
assert m.rename('Projects', 'Work')[0] == 'OK'
typ, data = m.list('""', 'Work/%')
assert data == [b'(\\HasNoChildren) "/" Work/2026'], data
assert m.subscribe('Work/2026')[0] == 'OK'
assert m.delete('Work/2026')[0] == 'OK'
assert m.delete('INBOX')[0] == 'NO'
m.close()
m.logout()

s = ssl_client()
s.login(USER, PASS)
typ, data = s.select('Archive', readonly=True)
assert data == [b'2'], data
typ, data = s.fetch('1', '(RFC822)')
assert data[0][1] == msg('first message', 'Grüße aus Köln'), data
typ, data = s.fetch('1', '(FLAGS)')
assert b'\\Seen' not in data[0], 'EXAMINE must not set \\Seen'
s.logout()
print('ok')
"#,
    );
    assert!(out.contains("ok"), "{out}");
}

#[test]
fn curl_reads_over_imaps_and_starttls() {
    require_tool("curl");
    let env = start(|_| {});
    env.py(r#"
s = ssl_client()
s.login(USER, PASS)
s.append('INBOX', None, None, msg('curl test', 'fetched by curl'))
s.logout()
"#);
    let cert = env.data.cert_path();
    let run = |url: String, extra: &[&str]| {
        let out = std::process::Command::new("curl")
            .args(["-sS", "--max-time", "30", "--cacert"])
            .arg(&cert)
            .args(["--resolve"])
            .arg(format!(
                "mail.example.test:{}:127.0.0.1",
                url.rsplit(':')
                    .next()
                    .and_then(|p| p.split('/').next())
                    .unwrap_or("0")
            ))
            .args(["-u", &format!("{USER}:{PASSWORD}")])
            .args(extra)
            .arg(&url)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "curl {url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let imaps = env.server.port("imaps");
    let list = run(format!("imaps://mail.example.test:{imaps}/"), &[]);
    assert!(list.contains("INBOX") && list.contains("Sent"), "{list}");
    let body = run(
        format!("imaps://mail.example.test:{imaps}/INBOX;UID=1"),
        &[],
    );
    assert!(
        body.contains("Subject: curl test") && body.contains("fetched by curl"),
        "{body}"
    );
    let imap = env.server.port("imap");
    let body = run(
        format!("imap://mail.example.test:{imap}/INBOX;UID=1;SECTION=TEXT"),
        &["--ssl-reqd"],
    );
    assert!(body.contains("fetched by curl"), "{body}");
}

#[test]
fn raw_logindisabled_and_starttls_injection() {
    let env = start(|_| {});
    let out = env.py(r#"
r = Raw(IMAP, False)
g = r.line()
assert 'STARTTLS' in g and 'LOGINDISABLED' in g and 'AUTH=' not in g, g
out = r.cmd('a', 'LOGIN %s "%s"' % (USER, PASS))
assert out[-1].startswith('a NO [PRIVACYREQUIRED]'), out
out = r.cmd('b', 'AUTHENTICATE PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABjb3JyZWN0IGhvcnNlIGJhdHRlcnk=')
assert out[-1].startswith('b NO [PRIVACYREQUIRED]'), out
out = r.cmd('c', 'SELECT INBOX')
assert out[-1].startswith('c BAD'), out
# STARTTLS with a command pipelined in the clear: it must be thrown away.
r.send('d STARTTLS\r\ne LOGIN %s "%s"\r\n' % (USER, PASS))
assert r.line().startswith('d OK'), 'STARTTLS'
assert r.buf == b'', r.buf
r.s = ctx().wrap_socket(r.s, server_hostname='mail.example.test')
out = r.cmd('f', 'CAPABILITY')
assert not any(l.startswith('e ') for l in out), out
assert 'AUTH=PLAIN' in out[0] and 'LOGINDISABLED' not in out[0], out
out = r.cmd('g', 'SELECT INBOX')
assert out[-1].startswith('g BAD'), 'the injected LOGIN must not have logged us in: %r' % out
# SASL-IR over TLS works.
out = r.cmd('h', 'AUTHENTICATE PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABjb3JyZWN0IGhvcnNlIGJhdHRlcnk=')
assert out[-1].startswith('h OK [CAPABILITY'), out
print('ok')
"#);
    assert!(out.contains("ok"), "{out}");
}

#[test]
fn failed_logins_answer_alike_and_secrets_stay_out_of_the_log() {
    let env = start(|c| {
        c["listeners"]["imaps"]["protocol_log"] = toml_edit::value(true);
    });
    let out = env.py(r#"
r = Raw(IMAPS, True)
r.line()
a = r.cmd('a', 'LOGIN alice@example.test "Wrong-Password-1"')[-1]
b = r.cmd('a', 'LOGIN nobody@example.test "Wrong-Password-2"')[-1]
assert a == b and a.startswith('a NO [AUTHENTICATIONFAILED]'), (a, b)
# AUTHENTICATE without SASL-IR: the continuation line is a secret too.
r.send('c AUTHENTICATE PLAIN\r\n')
assert r.line() == '+ '
r.send('AGFsaWNlQGV4YW1wbGUudGVzdABjb3JyZWN0IGhvcnNlIGJhdHRlcnk=\r\n')
assert r.line().startswith('c OK'), 'auth'
r.cmd('d', 'LOGOUT')
# A LOGIN whose password comes as a literal.
r = Raw(IMAPS, True)
r.line()
r.send('e LOGIN {18}\r\n')
assert r.line().startswith('+ ')
r.send('alice@example.test {21}\r\n')
assert r.line().startswith('+ ')
r.send('correct horse battery\r\n')
assert r.until('e')[-1].startswith('e OK'), 'literal login'
print('ok')
"#);
    assert!(out.contains("ok"), "{out}");
    let log = std::fs::read_to_string(env.data.path().join("log/imaps.log")).unwrap();
    for secret in [
        "Wrong-Password",
        "correct horse",
        "AGFsaWNlQGV4YW1wbGUudGVzdABjb3JyZWN0",
    ] {
        assert!(
            !log.contains(secret),
            "{secret} in the protocol log:\n{log}"
        );
    }
    assert!(log.contains("a LOGIN ***"), "{log}");
    assert!(log.contains("\"line\":\"***\""), "{log}");
}

#[test]
fn idle_sees_deliveries_flag_changes_and_expunges_of_other_sessions() {
    let env = start(|_| {});
    let out = env.py(r#"
a = login_raw()
out = a.cmd('s', 'SELECT INBOX')
assert '* 0 EXISTS' in out, out
a.send('i IDLE\r\n')
assert a.line().startswith('+ '), 'idle continuation'
b = ssl_client()
b.login(USER, PASS)
b.append('INBOX', None, None, msg('during idle'))
assert a.line() == '* 1 EXISTS'
# The idling session is the first told of it: it owns its \\Recent (RFC 3501 §2.3.2).
assert a.line() == '* 1 RECENT'
b.select('INBOX')
b.store('1', '+FLAGS', '(\\Flagged)')
l = a.line()
assert l.startswith('* 1 FETCH (') and '\\Flagged' in l, l
b.store('1', '+FLAGS', '(\\Deleted)')
a.line()
b.expunge()
assert a.line() == '* 1 EXPUNGE'
a.send('DONE\r\n')
assert a.line() == 'i OK IDLE terminated'
out = a.cmd('n', 'NOOP')
assert out == ['n OK NOOP completed'], out
print('ok')
"#);
    assert!(out.contains("ok"), "{out}");
}

/// A session already in IDLE is woken by an SMTP delivery made after IDLE started
/// (the per-mailbox notifier), and only sessions on that mailbox are.
#[test]
fn idle_is_woken_by_an_smtp_delivery_after_idle_started() {
    let env = start(|_| {});
    let submission = env.server.port("submission").to_string();
    let out = env.py(&format!(
        "SUBMISSION = {submission}\n{}",
        r#"
import smtplib
m = ssl_client()
m.login(USER, PASS)
m.create('Other')
m.logout()
a = login_raw()
out = a.cmd('s', 'SELECT INBOX')
exists = [l for l in out if l.endswith(' EXISTS')]
assert exists == ['* 0 EXISTS'], out
a.send('i IDLE\r\n')
assert a.line().startswith('+ '), 'idle continuation'
o = login_raw()
o.cmd('s', 'SELECT Other')
o.send('j IDLE\r\n')
assert o.line().startswith('+ '), 'idle continuation'
# Only now is the message submitted.
c = smtplib.SMTP(HOST, SUBMISSION, timeout=60)
c.starttls(context=ctx(False))
c.login(USER, PASS)
assert c.sendmail(USER, [USER], msg('after idle').replace(b'From: Bob <bob@example.test>', b'From: Alice <alice@example.test>')) == {}
c.quit()
a.s.settimeout(30)
assert a.line() == '* 1 EXISTS'
assert a.line() == '* 1 RECENT'
a.send('DONE\r\n')
assert a.line() == 'i OK IDLE terminated'
out = a.cmd('f', 'FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])')
assert any('Subject: after idle' in l for l in out), out
# The session on the other mailbox heard nothing: DONE is answered at once.
o.send('DONE\r\n')
assert o.line() == 'j OK IDLE terminated'
print('ok')
"#
    ));
    assert!(out.contains("ok"), "{out}");
}

#[test]
fn literal_limits_are_enforced_before_reading() {
    let env = start(|c| {
        c["imap"]["max_literal_size"] = toml_edit::value(1000);
    });
    let out = env.py(r#"
r = login_raw()
# A synchronising literal over the limit: NO, and no "+" (the client never sends it).
r.send('a APPEND INBOX {5000}\r\n')
l = r.line()
assert l.startswith('a NO [TOOBIG]'), l
out = r.cmd('b', 'NOOP')
assert out[-1].startswith('b OK'), out
# Within the limit: "+", then stored.
r.send('c APPEND INBOX {20}\r\n')
assert r.line().startswith('+ ')
r.send('Subject: x\r\n\r\nbody\r\n\r\n')
l = r.line()
assert l.startswith('c OK [APPENDUID'), l
# LITERAL+ within the limit: no "+" at all.
r.send('d APPEND INBOX {20+}\r\nSubject: y\r\n\r\nbody\r\n\r\n')
l = r.line()
assert l.startswith('d OK [APPENDUID'), l
# A non-synchronising literal over the limit is already on its way: NO, BYE, close.
r.send('e APPEND INBOX {50000+}\r\n' + 'x' * 100)
l = r.line()
assert l.startswith('e NO [TOOBIG]'), l
assert r.line().startswith('* BYE'), 'bye'
assert r.closed()
# The server is unaffected.
r = login_raw()
out = r.cmd('f', 'STATUS INBOX (MESSAGES)')
assert '* STATUS INBOX (MESSAGES 2)' in out, out
print('ok')
"#);
    assert!(out.contains("ok"), "{out}");
}

fn bad_input_env() -> Env {
    start(|c| {
        c["imap"]["max_line_length"] = toml_edit::value(2048);
    })
}

#[test]
fn unknown_and_malformed_commands_get_bad() {
    let env = bad_input_env();
    let out = env.py(r#"
r = login_raw()
out = r.cmd('a', 'FROBNICATE now')
assert out == ['a BAD Syntax error or unknown command'], out
r.send(b'i NOOP\x00\r\n')
l = r.line()
assert l.startswith('i BAD'), l
out = r.cmd('g', 'CREATE "bad/../name"')
assert out[-1].startswith('g NO'), out
# Well-formed commands with a name that is not valid modified UTF-7 (RFC 3501
# §5.1.3): NO, not BAD (imaptest's `atoms` script).
out = r.cmd('h', 'CREATE &Jjo')
assert out[-1].startswith('h NO'), out
out = r.cmd('h2', "SELECT !#$&'+,-.0123456789:;<=>?@^_`|[}")
assert out[-1].startswith('h2 NO'), out
assert r.cmd('z', 'NOOP')[-1].startswith('z OK')
print('ok')
"#);
    assert!(out.contains("ok"), "{out}");
}

/// A client that keeps making protocol errors is closed at the limit POP3 has too
/// (`bulwark_net::MAX_SESSION_ERRORS`, 20 BAD responses), with a BYE.
#[test]
fn too_many_bad_commands_end_the_session() {
    let env = bad_input_env();
    let out = env.py(r#"
r = login_raw()
for i in range(19):
    out = r.cmd('a%d' % i, 'FROBNICATE')
    assert out[-1].startswith('a%d BAD' % i), out
r.send(b'z FROBNICATE\r\n')
l = r.line()
assert l.startswith('z BAD'), l
l = r.line()
assert l.startswith('* BYE'), l
assert r.closed()
print('ok')
"#);
    assert!(out.contains("ok"), "{out}");
}

#[test]
fn an_overlong_line_gets_bad_and_the_session_goes_on() {
    let env = bad_input_env();
    let out = env.py(r#"
r = login_raw()
r.send('b NOOP ' + 'x' * 5000 + '\r\n')
l = r.line()
# Refused, but answered by its tag (every command gets a tagged reply).
assert l.startswith('b BAD [TOOBIG]'), l
out = r.cmd('c', 'NOOP')
assert out[-1].startswith('c OK'), out
print('ok')
"#);
    assert!(out.contains("ok"), "{out}");
}

/// RFC 2971 §3.3 allows an ID of 30 pairs of 30-octet fields and 1024-octet values
/// (imaptest's `id` script sends one of 31,807 octets before login): it is answered.
/// A longer line before login is refused with a tagged BAD, and the session goes on.
#[test]
fn a_maximal_id_before_login_is_answered_and_longer_lines_get_a_tagged_bad() {
    let env = bad_input_env();
    let out = env.py(r#"
r = Raw(IMAPS, True)
assert r.line().startswith('* OK'), 'greeting'
pairs = ' '.join('"%s" "%s"' % (('f%02d' % i).ljust(30, 'x'), str(i % 10) * 1024) for i in range(30))
line = 'i ID (' + pairs + ')'
assert len(line) > 31000, len(line)
out = r.cmd('i', line[2:])
assert out[-1].startswith('i OK'), out[-1][:200]
assert any(l.startswith('* ID ') for l in out), out
r.send('n NOOP ' + 'x' * 40000 + '\r\n')
l = r.line()
assert l.startswith('n BAD [TOOBIG]'), l[:200]
out = r.cmd('z', 'NOOP')
assert out[-1].startswith('z OK'), out
print('ok')
"#);
    assert!(out.contains("ok"), "{out}");
}

/// RFC 3501 §2.3.2 over real connections: a message APPENDed while nobody has the
/// mailbox selected is recent for the first SELECT, and only for it.
#[test]
fn recent_belongs_to_the_first_session_that_selects() {
    let env = bad_input_env();
    let out = env.py(r#"
a = ssl_client(); a.login(USER, PASS)
b = ssl_client(); b.login(USER, PASS)
assert a.create('Fresh')[0] == 'OK'
assert a.append('Fresh', None, None, msg('recent one'))[0] == 'OK'
typ, data = b.status('Fresh', '(RECENT)')
assert data[0] == b'Fresh (RECENT 1)', data
typ, data = a.select('Fresh')
assert a.response('RECENT')[1] == [b'1'], 'first SELECT owns it'
typ, data = b.select('Fresh')
assert b.response('RECENT')[1] == [b'0'], 'second SELECT does not'
typ, data = a.search(None, 'NEW')
assert data == [b'1'], data
typ, data = b.search(None, 'NEW')
assert data == [b''], data
typ, data = a.fetch('1', '(FLAGS)')
assert b'\\Recent' in data[0], data
a.logout(); b.logout()
print('ok')
"#);
    assert!(out.contains("ok"), "{out}");
}

#[test]
fn malformed_sequence_sets_and_huge_ranges() {
    let env = bad_input_env();
    let out = env.py(
        r#"
r = login_raw()
r.cmd('s', 'SELECT INBOX')
for i in range(3):
    r.send('a%d APPEND INBOX {20+}\r\nSubject: x\r\n\r\nbody\r\n\r\n' % i)
    r.until('a%d' % i)
for bad in ['FETCH 1:x (FLAGS)', 'FETCH 0 (FLAGS)', 'FETCH 1,,2 (FLAGS)', 'STORE 9 +FLAGS (\\Seen)', 'FETCH 4 (FLAGS)']:
    out = r.cmd('d', bad)
    assert out[-1].startswith('d BAD'), (bad, out)
out = r.cmd('f', 'UID FETCH 1:4294967295 (FLAGS)')
assert len(out) == 4 and out[-1].startswith('f OK'), out
out = r.cmd('g', 'FETCH 1:* (UID)')
assert len(out) == 4 and out[-1].startswith('g OK'), out
out = r.cmd('h', 'UID SEARCH UID 1:4294967295')
assert out[0] == '* SEARCH 1 2 3', out
print('ok')
"#,
    );
    assert!(out.contains("ok"), "{out}");
}

#[test]
fn a_disconnect_during_append_stores_nothing() {
    let env = bad_input_env();
    let out = env.py(r#"
r = login_raw()
r.send('j APPEND INBOX {100}\r\n')
assert r.line().startswith('+ ')
r.send('Subject: half\r\n\r\n' + 'x' * 30)
r.s.close()
r = login_raw()
r.send('k APPEND INBOX {100+}\r\nSubject: half\r\n\r\n')
r.s.close()
time.sleep(0.5)
r = login_raw()
out = r.cmd('k', 'STATUS INBOX (MESSAGES)')
assert '* STATUS INBOX (MESSAGES 0)' in out, out
print('ok')
"#);
    assert!(out.contains("ok"), "{out}");
}

#[test]
fn a_big_fetch_streams_every_message() {
    let env = start(|_| {});
    let out = env.py(r#"
s = ssl_client()
s.login(USER, PASS)
body = 'y' * 4000
for i in range(300):
    s.append('INBOX', None, None, msg('bulk %d' % i, body))
s.select('INBOX')
typ, data = s.fetch('1:*', '(UID BODY.PEEK[])')
bodies = [d for d in data if isinstance(d, tuple)]
assert len(bodies) == 300, len(bodies)
assert all(b[1].endswith(body.encode() + b'\r\n') for b in bodies)
typ, data = s.uid('FETCH', '1:*', '(FLAGS)')
assert len(data) == 300, len(data)
print('ok')
"#);
    assert!(out.contains("ok"), "{out}");
}

/// Two IMAP sessions on one mailbox while SMTP (submission, 587 with STARTTLS and
/// AUTH, to the account itself) delivers 200 messages and one of the two sessions
/// flags, copies, moves and expunges; the other IDLEs and FETCHes. At the end both
/// see exactly the same mailbox, which is also what a fresh session sees.
#[test]
fn sessions_stay_consistent_while_smtp_delivers() {
    let env = start(|_| {});
    let submission = env.server.port("submission").to_string();
    let out = env.py(&format!(
        "SUBMISSION = {submission}\n{}",
        r#"
import threading, smtplib
errors = []
def deliver():
    try:
        c = smtplib.SMTP(HOST, SUBMISSION, timeout=60)
        c.starttls(context=ctx(False))
        c.login(USER, PASS)
        for i in range(200):
            m = msg('load %d' % i).replace(b'From: Bob <bob@example.test>', b'From: Alice <alice@example.test>')
            assert c.sendmail(USER, [USER], m) == {}
        c.quit()
    except Exception as e:
        errors.append(e)
t = threading.Thread(target=deliver)
t.start()

a = login_raw()            # watches, with IDLE and NOOP
a.cmd('s', 'SELECT INBOX')
b = ssl_client()           # changes things
b.login(USER, PASS)
b.select('INBOX')
rounds = ops = 0
while t.is_alive() or rounds < 3:
    rounds += 1
    b.noop()
    typ, data = b.search(None, 'ALL')
    n = len(data[0].split())
    if n >= 3:
        ops += 1
        b.store('1', '+FLAGS', '(\\Flagged)')
        b.copy('2', 'Archive')
        b._simple_command('MOVE', '3', 'Trash')
        b.store('1', '+FLAGS', '(\\Deleted)')
        b.expunge()
    a.send('i%d IDLE\r\n' % rounds)
    while not a.line().startswith('+ '):
        pass  # pending updates come first
    time.sleep(0.05)
    a.send('DONE\r\n')
    a.until('i%d' % rounds)
    a.cmd('f%d' % rounds, 'FETCH 1:* (UID FLAGS)')
t.join()
assert not errors, errors

# \\Recent belongs to one session (RFC 3501 §2.3.2): the views differ there by design.
def no_recent(l):
    return l.replace(' \\Recent', '').replace('\\Recent', '')

def view_raw():
    a.cmd('n', 'NOOP')
    out = a.cmd('v', 'FETCH 1:* (UID FLAGS)')
    return sorted(no_recent(l.replace(' FETCH ', ' ', 1)) for l in out if ' FETCH ' in l and l.startswith('* '))

def view_lib(m):
    m.noop()
    # imaplib keeps untagged FETCH responses of earlier commands (flag updates sent
    # at NOOP, which the server may send at any time, RFC 9051 §7) until the next
    # fetch/store returns them with its own: drop them, as view_raw does.
    m.untagged_responses.pop('FETCH', None)
    typ, data = m.fetch('1:*', '(UID FLAGS)')
    return sorted(no_recent('* ' + d.decode()) for d in data if d)

va, vb = view_raw(), view_lib(b)
fresh = ssl_client(); fresh.login(USER, PASS); fresh.select('INBOX')
vf = view_lib(fresh)
assert va == vb == vf, (len(va), len(vb), len(vf), sorted(set(va) ^ set(vb))[:5], sorted(set(vb) ^ set(vf))[:5])
typ, data = fresh.status('Trash', '(MESSAGES)')
moved = int(re.search(rb'MESSAGES (\d+)', data[0]).group(1))
typ, data = fresh.status('Archive', '(MESSAGES)')
copied = int(re.search(rb'MESSAGES (\d+)', data[0]).group(1))
assert moved > 0 and copied > 0 and len(vf) > 0, (moved, copied, len(vf))
# Nothing lost or duplicated: each round with changes moved one message to Trash,
# copied one to Archive and expunged one.
assert moved == ops and copied == ops, (moved, copied, ops)
assert len(vf) + 2 * ops == 200, (len(vf), ops)
print('ok', len(va), ops, rounds)
"#
    ));
    assert!(out.contains("ok"), "{out}");
}

#[test]
fn server_keeps_running_after_abrupt_disconnects() {
    let env = start(|_| {});
    env.py(r#"
for i in range(20):
    r = Raw(IMAPS, True)
    r.line()
    r.send('a LOGIN alice@example.test {50}\r\n')
    r.s.close()
r = login_raw()
assert r.cmd('x', 'NOOP')[-1].startswith('x OK')
"#);
    std::thread::sleep(Duration::from_millis(100));
    assert!(env.server.log().contains("bulwark is running"));
}

/// APPEND takes `[smtp] max_mime_parts` too; a message stored with more parts than
/// any configuration allows (before the limit existed) gets a one-part BODYSTRUCTURE
/// of bounded size instead of one entry per part.
#[test]
fn mime_part_limits_on_append_and_for_stored_messages() {
    let data = DataDir::init();
    data.add_user(USER);
    data.edit_config(|c| c["smtp"]["max_mime_parts"] = toml_edit::value(100));
    let parts = |n: usize| {
        let mut m = b"From: a@example.test\r\nSubject: many\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n".to_vec();
        for _ in 0..n {
            m.extend_from_slice(b"--B\r\n\r\nx\r\n");
        }
        m.extend_from_slice(b"--B--\r\n");
        m
    };
    // Stored directly, as an older version would have.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use bulwark_store::{Delivery, DeliveryTarget, Flags, Ingest, SqliteStore, Store};
        let store = SqliteStore::open(&data.path().join("store")).unwrap();
        let acc = store.account(USER).await.unwrap().unwrap();
        let mb = store.mailbox(acc.id, "INBOX").await.unwrap().unwrap();
        store
            .ingest(Ingest {
                data: parts(51_000), // beyond the 50000 any configuration allows
                internal_date: 0,
                deliveries: vec![Delivery {
                    target: DeliveryTarget::Mailbox(mb.id),
                    flags: Flags::default(),
                }],
                queue: None,
            })
            .await
            .unwrap();
        store.close();
    });
    let server = Server::start(&data);
    let env = Env { data, server };
    let out = env.py(r#"
s = ssl_client()
s.login(USER, PASS)
def parts(n):
    m = b"From: a@example.test\r\nSubject: many\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n"
    return m + b"--B\r\n\r\nx\r\n" * n + b"--B--\r\n"
typ, data = s.append('INBOX', None, None, parts(100))
print(typ, data[0].decode())
typ, data = s.append('INBOX', None, None, parts(99))
print(typ)
s.select('INBOX')
typ, data = s.fetch('1', '(BODYSTRUCTURE)')
print(len(data[0]), data[0].decode()[:200])
typ, data = s.fetch('2', '(BODYSTRUCTURE)')
print(data[0].decode().count('("TEXT" "PLAIN"'))
"#);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].contains("[LIMIT] Message refused: more than 100 MIME parts; nothing was stored"),
        "{out}"
    );
    assert_eq!(lines[1], "OK", "{out}");
    let (len, text) = lines[2].split_once(' ').unwrap();
    assert!(len.parse::<usize>().unwrap() < 500, "bounded: {out}");
    assert!(
        text.starts_with("1 (BODYSTRUCTURE (\"TEXT\" \"PLAIN\""),
        "{out}"
    );
    assert_eq!(lines[3], "99", "within the limits: part by part");
}

/// Issue 17's extensions over 993 with imaplib and a raw socket: every one advertised,
/// MULTIAPPEND stores all-or-nothing, ESEARCH/SEARCHRES, SORT, THREAD, BINARY,
/// LIST-STATUS and STATUS=SIZE answer as their RFCs say.
#[test]
fn extensions_esearch_searchres_sort_thread_binary_multiappend_list_status() {
    let env = start(|_| {});
    let out = env.py(
        r#"
m = ssl_client()
typ, data = m.login(USER, PASS)
caps = data[0].decode().split('] ')[0].split(' ')
for c in ['ESEARCH', 'SEARCHRES', 'LIST-EXTENDED', 'LIST-STATUS', 'STATUS=SIZE', 'MULTIAPPEND',
          'BINARY', 'SORT', 'SORT=DISPLAY', 'THREAD=ORDEREDSUBJECT', 'THREAD=REFERENCES']:
    assert c in caps, (c, caps)
m.logout()

r = login_raw()
# RFC 3502: two messages in one APPEND (synchronising literals: wait for "+").
a = msg('b plan').replace(b'Hello', b'first')
b = (b'From: Amy <amy@example.test>\r\nSubject: Re: b plan\r\nMessage-ID: <r@example.test>\r\n'
     b'References: <b.plan@example.test>\r\nDate: Wed, 4 Mar 2026 10:00:00 +0000\r\n\r\nsecond\r\n')
r.send(b'm APPEND INBOX (\\Flagged) {%d}\r\n' % len(a))
assert r.line().startswith('+'), 'continuation'
r.send(a + b' {%d}\r\n' % len(b))
assert r.line().startswith('+'), 'continuation 2'
r.send(b + b'\r\n')
out = r.until('m')
assert re.match(r'm OK \[APPENDUID \d+ 1:2\]', out[-1]), out
# The second message is nested too deep: neither is stored.
deep = b''.join(b'Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n' % (i, i) for i in range(200))
r.send(b'n APPEND INBOX {%d+}\r\n%s {%d+}\r\n%s\r\n' % (len(a), a, len(deep), deep))
out = r.until('n')
assert out[-1].startswith('n NO'), out
out = r.cmd('s', 'STATUS INBOX (MESSAGES SIZE)')
assert '(MESSAGES 2 SIZE %d)' % (len(a) + len(b)) in out[0], out
out = r.cmd('l', 'LIST "" (INBOX) RETURN (STATUS (MESSAGES UNSEEN))')
assert out[1] == '* STATUS INBOX (MESSAGES 2 UNSEEN 2)', out

r.cmd('x', 'SELECT INBOX')
out = r.cmd('e', 'SEARCH RETURN (MIN MAX COUNT) ALL')
assert out[0] == '* ESEARCH (TAG "e") MIN 1 MAX 2 COUNT 2', out
out = r.cmd('f', 'UID SEARCH RETURN (SAVE) FLAGGED')
assert out == ['f OK SEARCH completed, result saved'], out
out = r.cmd('g', 'FETCH $ (FLAGS)')
assert len(out) == 2 and out[0].startswith('* 1 FETCH (FLAGS (\\Flagged'), out
out = r.cmd('h', 'SORT (REVERSE DATE) UTF-8 ALL')
assert out[0] == '* SORT 2 1', out
out = r.cmd('i', 'THREAD REFERENCES UTF-8 ALL')
assert out[0] == '* THREAD (1 2)', out
out = r.cmd('j', 'FETCH 2 (BINARY.SIZE[1])')
assert out[0] == '* 2 FETCH (BINARY.SIZE[1] 8)', out
out = r.cmd('k', 'SEARCH RETURN (BOGUS) ALL')
assert out[-1].startswith('k BAD'), out
print('extensions ok')
"#,
    );
    assert!(out.contains("extensions ok"), "{out}");
}

/// RFC 7162 QRESYNC as Thunderbird uses it, over 993 with raw sockets: a client
/// remembers (UIDVALIDITY, HIGHESTMODSEQ), another session changes a flag and
/// expunges while it is away, and the reconnecting SELECT (QRESYNC …) tells it both.
#[test]
fn qresync_resync_after_reconnect() {
    let env = start(|_| {});
    let out = env.py(r#"
w = login_raw()
for i in range(3):
    m = msg('q %d' % i)
    w.send(b'a%d APPEND INBOX {%d+}\r\n%s\r\n' % (i, len(m), m))
    assert w.until('a%d' % i)[-1].startswith('a%d OK' % i)
r = login_raw()
assert r.cmd('e', 'ENABLE QRESYNC')[0] == '* ENABLED QRESYNC'
out = r.cmd('s', 'SELECT INBOX')
text = '\n'.join(out)
uv = re.search(r'UIDVALIDITY (\d+)', text).group(1)
hm = re.search(r'HIGHESTMODSEQ (\d+)', text).group(1)
r.cmd('z', 'LOGOUT')
# While the client is away.
w.cmd('s', 'SELECT INBOX')
w.cmd('f', 'STORE 1 +FLAGS (\\Flagged)')
w.cmd('d', 'STORE 2 +FLAGS (\\Deleted)')
w.cmd('x', 'EXPUNGE')
r = login_raw()
r.cmd('e', 'ENABLE QRESYNC')
out = r.cmd('s', 'SELECT INBOX (QRESYNC (%s %s 1:3))' % (uv, hm))
assert '* VANISHED (EARLIER) 2' in out, out
assert any(l.startswith('* 1 FETCH (UID 1 FLAGS (\\Flagged') for l in out), out
assert out[-1].startswith('s OK'), out
# Expunges reach a QRESYNC session as VANISHED.
w.cmd('d', 'STORE 2 +FLAGS (\\Deleted)')
w.cmd('x', 'EXPUNGE')
out = r.cmd('n', 'NOOP')
assert '* VANISHED 3' in out and not any('EXPUNGE' in l for l in out), out
print('qresync ok')
"#);
    assert!(out.contains("qresync ok"), "{out}");
}

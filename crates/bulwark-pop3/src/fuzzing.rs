//! Harnesses for the fuzz targets (`fuzz/fuzz_targets/pop3_*.rs`) and for the seeded
//! property tests below, which run them on every `cargo test`. Not server code.
//!
//! [`session`] drives a [`Session`](crate::session::Session) from raw client octets, split as
//! `Connection::read_line` splits them, performing its actions the way `server.rs`
//! does with a fake authenticator and maildrop, and checks: no credentials are handed
//! to the authenticator without TLS, status lines are single lines of at most 512
//! octets, RETR/TOP/DELE only touch messages of the snapshot, UPDATE deletes only what
//! DELE marked, and every multi-line body is dot-stuffed so that it cannot end early.
//! [`dotstuff`] checks the encoder against a client's view of the wire.

use bulwark_auth::Secret;
use bulwark_net::fuzzing::{Input, NoLine};
use bulwark_store::{AccountId, BlobId, Flags, Mailbox, MailboxId, MessageMeta, ModSeq, Uid};

use crate::command::{parse, MAX_COMMAND_LINE, MAX_REPLY_LINE, MAX_SASL_LINE};
use crate::dotstuff::{top_prefix, DotStuffer};
use crate::maildrop::Maildrop;
use crate::reply::Reply;
use crate::session::{Action, LoginOutcome, Session, SessionSettings};

/// Valid command prefixes for the generators. "AGFsaWNlQGV4YW1wbGUudGVzdABzZWNyZXQ="
/// is PLAIN for alice@example.test / "secret".
pub const DICTIONARY: &[&[u8]] = &[
    b"CAPA",
    b"STLS",
    b"USER alice@example.test",
    b"PASS secret",
    b"PASS wrong",
    b"APOP alice 0123456789abcdef0123456789abcdef",
    b"AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABzZWNyZXQ=",
    b"AUTH PLAIN",
    b"AGFsaWNlQGV4YW1wbGUudGVzdABzZWNyZXQ=",
    b"AUTH LOGIN",
    b"*",
    b"STAT",
    b"LIST",
    b"LIST 1",
    b"LIST 4294967295",
    b"RETR 1",
    b"RETR 2",
    b"RETR 0",
    b"TOP 1 0",
    b"TOP 2 5",
    b"TOP 1 4294967295",
    b"DELE 1",
    b"DELE 3",
    b"UIDL",
    b"UIDL 2",
    b"NOOP",
    b"RSET",
    b"QUIT",
];

const MESSAGES: &[&[u8]] = &[
    b"Subject: one\r\n\r\n.hidden\r\n.\r\nafter\r\n",
    b"Subject: two\r\n\r\nno final line end",
    b"Subject: three\nbare LF\n.\n",
    b"",
];

fn maildrop(n: usize) -> Maildrop {
    let mailbox = Mailbox {
        id: MailboxId(7),
        account_id: AccountId(1),
        name: "INBOX".into(),
        uidvalidity: 3,
        uidnext: 100,
        highest_modseq: ModSeq(1),
        special_use: None,
        subscribed: true,
        first_recent_uid: 1,
    };
    let messages: Vec<MessageMeta> = MESSAGES
        .iter()
        .take(n)
        .enumerate()
        .map(|(i, m)| MessageMeta {
            uid: Uid(10 + u32::try_from(i).expect("a handful of test messages") * 3),
            blob_id: BlobId(i64::try_from(i).expect("a handful of test messages")),
            size: m.len() as u64,
            internal_date: 0,
            flags: Flags::default(),
            modseq: ModSeq(1),
        })
        .collect();
    Maildrop::new(&mailbox, &messages)
}

fn check_reply(r: &Reply) {
    let st = r.status();
    assert!(
        st.starts_with("+OK") || st.starts_with("-ERR") || st == "+ ",
        "status {st:?}"
    );
    assert!(!st.contains(['\r', '\n']), "line break in a status line");
    assert!(
        st.len() + 2 <= MAX_REPLY_LINE,
        "status line over 512 octets"
    );
    check_multiline(&r.to_bytes(), r.lines().map(<[String]>::len));
}

/// A client reading a multi-line response: after the status line, lines up to the
/// first "." line. Returns the unstuffed body; asserts the terminator is the very end.
fn client_view(wire: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    let mut pos = 0;
    loop {
        let Some(i) = wire[pos..].windows(2).position(|w| w == b"\r\n") else {
            panic!("multi-line response without its terminating line");
        };
        let line = &wire[pos..pos + i];
        pos += i + 2;
        if line == b"." {
            assert_eq!(pos, wire.len(), "a \".\" line ended the response early");
            return body;
        }
        body.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
        body.extend_from_slice(b"\r\n");
    }
}

fn check_multiline(wire: &[u8], lines: Option<usize>) {
    let Some(n) = lines else { return };
    let status_end = wire
        .windows(2)
        .position(|w| w == b"\r\n")
        .map_or(wire.len(), |i| i + 2);
    let body = client_view(&wire[status_end..]);
    assert_eq!(
        body.windows(2).filter(|w| *w == b"\r\n").count(),
        n,
        "multi-line body lines"
    );
}

/// What the shell sends for RETR/TOP: the stored octets dot-stuffed and terminated.
fn encode_body(msg: &[u8], split: usize) -> Vec<u8> {
    let mut st = DotStuffer::new();
    let mut out = Vec::new();
    let split = split.min(msg.len());
    st.push(&msg[..split], &mut out);
    st.push(&msg[split..], &mut out);
    st.finish(&mut out);
    out
}

/// The body a client must see for `msg`: bare LF sent as CRLF, a CRLF added at the
/// end when missing.
fn expected_body(msg: &[u8]) -> Vec<u8> {
    let mut want = Vec::new();
    for (i, &b) in msg.iter().enumerate() {
        if b == b'\n' && (i == 0 || msg[i - 1] != b'\r') {
            want.push(b'\r');
        }
        want.push(b);
    }
    if !want.is_empty() && !want.ends_with(b"\n") {
        want.extend_from_slice(b"\r\n");
    }
    want
}

/// Dot-stuffing of `data` (first octet: where the message is split into two pieces).
pub fn dotstuff(data: &[u8]) {
    let (&split, msg) = data.split_first().unwrap_or((&0, &[]));
    check_body(msg, split as usize);
}

/// `msg` encoded in two pieces, read back as a client would.
fn check_body(msg: &[u8], split: usize) {
    let wire = encode_body(msg, split);
    // The response must end exactly at its terminator, whatever the message holds.
    assert!(wire.ends_with(b"\r\n.\r\n") || wire == b".\r\n");
    // A bare CR makes line boundaries ambiguous; the store never holds one (the SMTP
    // octet rules refuse it), so the exact model is checked without.
    let bare_cr = msg
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\r' && msg.get(i + 1) != Some(&b'\n'));
    if !bare_cr {
        assert_eq!(client_view(&wire), expected_body(msg), "dot-stuffed body");
    }
}

/// Runs one POP3 session over `data`. The first octet picks TLS (from the start or
/// via STLS), how many messages the maildrop has, and how a failed login fails.
pub fn session(data: &[u8]) {
    let (&cfg, stream) = data.split_first().unwrap_or((&0, &[]));
    let mut s = Session::new(SessionSettings {
        tls: cfg & 1 != 0,
        stls_available: cfg & 2 != 0,
        hostname: "mail.example.test".into(),
    });
    check_reply(&s.greeting());
    let messages = (cfg >> 2) as usize % (MESSAGES.len() + 1);
    let mut input = Input::new(stream);
    let mut marked: Vec<u32> = Vec::new();
    let budget = 4 * (stream.len() + 16);
    for _ in 0..budget {
        let max = if s.expects_secret() {
            MAX_SASL_LINE
        } else {
            MAX_COMMAND_LINE
        };
        let line = input.read_line(max);
        let mut action = match &line {
            Ok(l) => {
                // Track DELE/RSET as a client would, to check UPDATE.
                match parse(&l.bytes) {
                    Ok(crate::command::Command::Dele(n))
                        if s.maildrop().is_some_and(|m| m.get(n).is_ok()) =>
                    {
                        marked.push(n);
                    }
                    Ok(crate::command::Command::Rset) if s.maildrop().is_some() => marked.clear(),
                    _ => {}
                }
                s.on_line(&l.bytes)
            }
            Err(NoLine::TooLong { .. }) => s.on_line_too_long(),
            // RFC 1939 §6: a dropped connection never reaches UPDATE.
            Err(NoLine::Eof) => return,
        };
        loop {
            match action {
                Action::Reply(r) => {
                    check_reply(&r);
                    break;
                }
                Action::Close(r) => {
                    check_reply(&r);
                    return;
                }
                Action::StartTls(r) => {
                    check_reply(&r);
                    assert!(!s.is_tls(), "STLS inside TLS");
                    s.tls_started();
                    break;
                }
                Action::Login(req) => {
                    assert!(s.is_tls(), "credentials accepted without TLS");
                    let outcome = login(&req.username, &req.password, cfg, messages);
                    action = s.login_result(outcome);
                }
                Action::Retrieve {
                    reply,
                    number,
                    blob,
                    body_lines,
                } => {
                    check_reply(&reply);
                    let md = s.maildrop().expect("RETR outside TRANSACTION");
                    let entry = md
                        .get(number)
                        .expect("RETR of a deleted or unknown message");
                    assert_eq!(entry.blob, blob, "RETR sent another message's body");
                    let msg =
                        MESSAGES[usize::try_from(blob.get()).expect("blob ids index MESSAGES")];
                    let msg = match body_lines {
                        Some(n) => top_prefix(msg, n),
                        None => msg,
                    };
                    check_body(msg, number as usize);
                    break;
                }
                Action::Update {
                    mailbox,
                    delete,
                    seen: _,
                } => {
                    assert_eq!(mailbox, MailboxId(7));
                    let md = maildrop(messages);
                    let mut want: Vec<u32> = marked
                        .iter()
                        .filter_map(|n| md.get(*n).ok().map(|e| e.uid))
                        .collect();
                    want.sort_unstable();
                    want.dedup();
                    let mut got = delete.clone();
                    got.sort_unstable();
                    assert_eq!(got, want, "UPDATE deletes exactly what DELE marked");
                    action = s.update_result(Ok(delete.len()));
                }
            }
        }
    }
    panic!("session made no progress in {budget} steps");
}

fn login(user: &str, password: &Secret, cfg: u8, messages: usize) -> LoginOutcome {
    if user == "alice@example.test" && password.expose() == "secret" {
        if cfg & 0x80 != 0 {
            return LoginOutcome::InUse;
        }
        return LoginOutcome::LoggedIn(maildrop(messages));
    }
    match (cfg >> 5) % 4 {
        0 => LoginOutcome::Failed,
        1 => LoginOutcome::Throttled,
        2 => LoginOutcome::Unavailable,
        _ => LoginOutcome::MaildropUnavailable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulwark_net::fuzzing::{run_cases, session_bytes, Rng};

    #[test]
    fn property_session() {
        run_cases("pop3 session", 0x9093_0001, 4000, |seed| {
            let mut rng = Rng::new(seed);
            let mut data = vec![rng.next_u64().to_le_bytes()[0]];
            data.extend(session_bytes(&mut rng, DICTIONARY, 30));
            session(&data);
        });
    }

    #[test]
    fn property_dotstuff() {
        let lines: &[&[u8]] = &[b".", b"..", b".x", b"text", b"", b"\n.\n", b"\r\n.\r\n"];
        run_cases("pop3 dot-stuffing", 0xd075_0001, 4000, |seed| {
            let mut rng = Rng::new(seed);
            let mut data = vec![rng.next_u64().to_le_bytes()[0]];
            data.extend(session_bytes(&mut rng, lines, 20));
            dotstuff(&data);
        });
    }

    #[test]
    fn the_harness_reaches_transaction_and_update() {
        let mut s = b"\x01USER alice@example.test\r\nPASS secret\r\nRETR 1\r\nTOP 2 1\r\nDELE 1\r\nQUIT\r\n".to_vec();
        s[0] = 1 | (3 << 2);
        session(&s);
        dotstuff(b"\x03.a\r\n..\r\nb");
    }
}

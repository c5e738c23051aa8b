//! Harnesses for the fuzz targets (`fuzz/fuzz_targets/smtp_*.rs`) and for the seeded
//! property tests below, which run the same harnesses on every `cargo test`. Not
//! server code: nothing outside tests and fuzzing calls this.
//!
//! [`session`](crate::fuzzing::session) drives a whole [`Session`] the way `server.rs`
//! does, from raw client octets split exactly as `Connection::read_line` splits them,
//! with the effects answered by a fake store/authenticator, and checks the invariants
//! the crate promises: every stored message has only CRLF line ends and no NUL (the
//! smuggling rules), a "Message accepted" 250 is sent once per successful ingest and
//! never otherwise, replies are well-formed, and the session always makes progress.
//! [`data_reader`](crate::fuzzing::data_reader) checks the end-of-data detection
//! against an independent model (RFC 5321 §4.1.1.4: `CRLF . CRLF` only).
//! [`header_facts`](crate::fuzzing::header_facts) runs the header From/Sender
//! extraction used by the anti-spoofing rule.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bulwark_auth::AuthError;
use bulwark_config::{ListenerKind, Requirement};
use bulwark_net::fuzzing::{Input, NoLine};
use bulwark_net::TlsInfo;
use bulwark_store::{Account, AccountId, BlobId, IngestReceipt, Resolution, StoreError};

use crate::budget::{InflightBudget, Reservation};
use crate::checks::{MailFromVerdict, MessageVerdict};
use crate::data::DataReader;
use crate::session::{
    Effect, EffectResult, Next, Session, SessionSettings, COMMAND_LINE_MAX, DATA_LINE_MAX,
    SASL_LINE_MAX,
};

/// Valid command prefixes the generators mutate ("AHNlY3JldA==" is PLAIN for
/// alice@example.test / "secret" without authzid: `\0alice@example.test\0secret`).
pub const DICTIONARY: &[&[u8]] = &[
    b"EHLO client.example",
    b"HELO client.example",
    b"EHLO [127.0.0.1]",
    b"STARTTLS",
    b"AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABzZWNyZXQ=",
    b"AUTH PLAIN",
    b"AGFsaWNlQGV4YW1wbGUudGVzdABzZWNyZXQ=",
    b"AUTH LOGIN",
    b"YWxpY2VAZXhhbXBsZS50ZXN0",
    b"c2VjcmV0",
    b"*",
    b"MAIL FROM:<alice@example.test>",
    b"MAIL FROM:<> BODY=8BITMIME",
    b"MAIL FROM:<sender@remote.test> SIZE=100 SMTPUTF8",
    b"MAIL FROM:<sender@remote.test> RET=FULL ENVID=x",
    b"RCPT TO:<bob@example.test>",
    b"RCPT TO:<alice@example.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a@b",
    b"RCPT TO:<team@example.test>",
    b"RCPT TO:<someone@remote.test>",
    b"RCPT TO:<Postmaster>",
    b"RCPT TO:<nobody@example.test>",
    b"DATA",
    b"BDAT 10",
    b"BDAT 0 LAST",
    b"BDAT 20 LAST",
    b"From: Alice <alice@example.test>",
    b"From: eve@evil.test",
    b"Sender: alice@example.test",
    b"To: bob@example.test",
    b"Subject: hello",
    b"Received: from x ([192.0.2.1]) by y; Mon, 1 Jan 2024 00:00:00 +0000",
    b"Message-ID: <1@example.test>",
    b"",
    b"body text",
    b"..dot-stuffed",
    b".",
    b"RSET",
    b"NOOP",
    b"VRFY bob",
    b"EXPN list",
    b"HELP",
    b"QUIT",
];

const ALICE: &str = "alice@example.test";

fn account(id: i64, address: &str) -> Account {
    Account {
        id: AccountId(id),
        address: address.into(),
        created: 0,
    }
}

fn tls_info() -> TlsInfo {
    TlsInfo {
        version: "TLSv1.3".into(),
        cipher: "TLS13_AES_128_GCM_SHA256".into(),
        sni: None,
    }
}

/// The fake store and authenticator behind the effects.
fn perform(effect: Effect, session: &Session, ingested: &mut usize) -> EffectResult {
    match effect {
        Effect::Resolve { address } => {
            let a = address.to_ascii_lowercase();
            let r = match a.rsplit_once('@') {
                Some((local, "example.test")) => match local {
                    "alice" => Resolution::Deliver {
                        accounts: vec![account(1, ALICE)],
                        forward: vec![],
                    },
                    "bob" | "postmaster" => Resolution::Deliver {
                        accounts: vec![account(2, "bob@example.test")],
                        forward: vec![],
                    },
                    "team" => Resolution::Deliver {
                        accounts: vec![account(2, "bob@example.test")],
                        forward: vec!["friend@remote.test".into()],
                    },
                    "broken" => return EffectResult::Resolved(Err(StoreError::Closed)),
                    _ => Resolution::Unknown,
                },
                _ => Resolution::NotOurDomain,
            };
            EffectResult::Resolved(Ok(r))
        }
        Effect::Authenticate {
            username, password, ..
        } => EffectResult::Authenticated(if username == ALICE && password.expose() == "secret" {
            Ok(account(1, ALICE))
        } else {
            Err(AuthError::Failed)
        }),
        Effect::MaySendAs { addresses, .. } => {
            EffectResult::MaySendAs(Ok(addresses.iter().all(|a| a.eq_ignore_ascii_case(ALICE))))
        }
        Effect::IsLocalDomain { domain } => {
            EffectResult::LocalDomain(Ok(domain.eq_ignore_ascii_case("example.test")))
        }
        Effect::CheckMailFrom(_) => EffectResult::MailFromChecked(MailFromVerdict::default()),
        Effect::CheckRoutes { targets } => {
            assert!(!targets.is_empty(), "a route check without targets");
            EffectResult::RoutesChecked(None)
        }
        Effect::CheckMessage(..) => {
            // The checker sees the message as received: the same octet rules hold.
            assert_clean(session.message(), "message handed to check_message");
            EffectResult::MessageChecked(MessageVerdict::default())
        }
        Effect::Sign(_) => EffectResult::Signed(Ok(String::new())),
        Effect::Ingest(ingest) => {
            assert_clean(&ingest.data, "stored message");
            if let Some(q) = &ingest.queue {
                if let Some(d) = &q.data {
                    assert_clean(d, "queued message");
                }
                assert!(!q.recipients.is_empty(), "queue entry without recipients");
            }
            assert!(
                !ingest.deliveries.is_empty() || ingest.queue.is_some(),
                "an ingest that delivers nowhere"
            );
            // Now and then the store fails: the client must get a 4xx, not a 250.
            if ingest.data.len() % 13 == 0 {
                return EffectResult::Ingested(Err(StoreError::Backend("fuzz".into())));
            }
            *ingested += 1;
            EffectResult::Ingested(Ok(IngestReceipt {
                blob_id: BlobId(1),
                delivered: vec![],
                queue_id: None,
            }))
        }
    }
}

/// Only CRLF line ends, no NUL: what the DATA/BDAT octet rules guarantee for
/// everything we store or relay (a bare LF or CR could smuggle a message through the
/// next hop).
fn assert_clean(data: &[u8], what: &str) {
    for (i, &b) in data.iter().enumerate() {
        match b {
            b'\n' => assert!(i > 0 && data[i - 1] == b'\r', "{what}: bare LF at {i}"),
            b'\r' => assert!(data.get(i + 1) == Some(&b'\n'), "{what}: bare CR at {i}"),
            0 => panic!("{what}: NUL at {i}"),
            _ => {}
        }
    }
}

/// Runs one SMTP session over `data`. The first octet picks the listener, whether
/// TLS is up from the start, the port-25 accept policy and the error limit; the rest
/// is what the client sends. Returns how many messages were accepted.
pub fn session(data: &[u8]) -> usize {
    let (&cfg, stream) = data.split_first().unwrap_or((&0, &[]));
    let (settings, requirement, tls) = session_setup(cfg);
    let peer: SocketAddr = "192.0.2.7:40000"
        .parse()
        .unwrap_or(SocketAddr::from(([0; 4], 0)));
    let mut s = Session::new(
        Arc::new(settings),
        "fuzz".into(),
        peer,
        requirement,
        tls.then(tls_info),
    );
    // Reproducible: a crash found with one run replays the same.
    s.set_environment(Arc::new(crate::FixedEnvironment::new(1_700_000_000)));
    let mut input = Input::new(stream);
    let mut ingested = 0usize;
    let mut accepted = 0usize;
    let mut closed = false;
    // Every step reads input or answers an effect, and a command needs only a few
    // effects: a session that loops without reading is stuck.
    let budget = 16 * (stream.len() + 16);
    for _ in 0..budget {
        accepted += check_replies(&mut s);
        let _ = s.take_delay();
        match s.next_step() {
            Next::Command => match input.read_line(COMMAND_LINE_MAX) {
                Ok(l) => s.command(l.bytes, l.ending),
                Err(NoLine::TooLong { .. }) => s.command_too_long(),
                Err(NoLine::Eof) => {
                    s.disconnected();
                    closed = true;
                }
            },
            Next::DataLine => match input.read_line(DATA_LINE_MAX) {
                Ok(l) => s.data_line(&l.bytes, l.ending),
                Err(NoLine::TooLong { crlf }) => s.data_line_too_long(crlf),
                Err(NoLine::Eof) => {
                    s.disconnected();
                    closed = true;
                }
            },
            Next::SaslResponse => match input.read_line(SASL_LINE_MAX) {
                Ok(l) => s.sasl_response(&l.bytes, l.ending),
                Err(NoLine::TooLong { .. }) => s.sasl_too_long(),
                Err(NoLine::Eof) => {
                    s.disconnected();
                    closed = true;
                }
            },
            Next::Chunk { remaining, .. } => {
                // The server reads a chunk in pieces; so does the harness (at most
                // 100 octets at a time), ending the session where the input ends.
                match input.read_exact(remaining.min(100)) {
                    Some(piece) if !piece.is_empty() => s.chunk_data(piece),
                    _ => {
                        s.disconnected();
                        closed = true;
                    }
                }
            }
            Next::Effect(e) => {
                let r = perform(e, &s, &mut ingested);
                s.effect_done(r);
            }
            Next::StartTls => {
                assert!(!s.is_tls(), "STARTTLS offered twice");
                s.tls_started(tls_info());
            }
            Next::Close => closed = true,
        }
        if closed {
            assert_eq!(
                accepted, ingested,
                "250 Message accepted must match successful ingests"
            );
            return accepted;
        }
    }
    panic!("session made no progress in {budget} steps");
}

/// The session's configuration from the harness's first octet: the listener (the
/// octet mod 3), the port-25 accept policy (bits 2–3), the local-From action (bit 3),
/// TLS from the start (bit 4), a low error limit (bit 5), a small memory budget
/// (bit 6) and refusing unauthenticated local senders (bit 7).
fn session_setup(cfg: u8) -> (SessionSettings, Requirement, bool) {
    let listener = match cfg % 3 {
        0 => ListenerKind::Smtp,
        1 => ListenerKind::Submission,
        _ => ListenerKind::Submissions,
    };
    let requirement = match (cfg >> 2) % 4 {
        0 => Requirement::Any,
        1 => Requirement::Tls,
        2 => Requirement::Auth,
        _ => Requirement::AuthTls,
    };
    let tls = listener == ListenerKind::Submissions || cfg & 0x10 != 0;
    let settings = SessionSettings {
        listener,
        hostname: "mail.example.test".into(),
        max_message_size: 4096,
        max_recipients: 3,
        max_received_headers: 5,
        tarpit_after_errors: 3,
        max_errors: if cfg & 0x20 != 0 { 10 } else { 1000 },
        tarpit_delay: Duration::from_millis(1),
        // A budget smaller than the message size limit now and then, so the 452 4.3.1
        // path is exercised too.
        budget: InflightBudget::new(if cfg & 0x40 != 0 { 2048 } else { 1 << 20 }),
        internal_servers: Vec::new(),
        reject_unauthenticated_local_senders: cfg & 0x80 != 0,
        max_mime_parts: 20,
        local_from_on_inbound: if cfg & 0x08 != 0 {
            bulwark_config::LocalFromAction::Tag
        } else {
            bulwark_config::LocalFromAction::Reject
        },
        own_addresses: vec![std::net::IpAddr::from([192, 0, 2, 25])],
    };
    (settings, requirement, tls)
}

/// Takes the session's pending replies and checks each is well-formed (a 2xx–5xx
/// code, CRLF line ends, no line break inside a line). Returns how many of them were
/// "250 Message accepted".
fn check_replies(s: &mut Session) -> usize {
    let mut accepted = 0;
    for r in s.take_replies() {
        assert!((200..600).contains(&r.code), "reply code {}", r.code);
        if r.code == 250
            && r.lines
                .first()
                .is_some_and(|l| l.starts_with("Message accepted"))
        {
            accepted += 1;
        }
        let wire = r.to_bytes();
        for line in wire.split_inclusive(|b| *b == b'\n') {
            assert!(line.ends_with(b"\r\n"), "reply line without CRLF");
            assert!(
                !line[..line.len() - 2].contains(&b'\r')
                    && !line[..line.len() - 2].contains(&b'\n'),
                "line break inside a reply line"
            );
        }
    }
    accepted
}

/// Feeds `data` (the octets after the DATA command's CRLF) to the DATA reader and
/// checks it against an independent model of RFC 5321 §4.1.1.4 and §4.5.2.
pub fn data_reader(data: &[u8]) {
    const MAX: u64 = 1 << 20;
    let mut reader = DataReader::new();
    let mut body = Vec::new();
    let mut reservation = Reservation::new(InflightBudget::new(4 * MAX));
    let mut input = Input::new(data);
    let end = loop {
        match input.read_line(DATA_LINE_MAX) {
            Ok(l) => {
                if reader.push_line(&l.bytes, l.ending, &mut body, &mut reservation, MAX) {
                    break Some(input.position());
                }
            }
            Err(NoLine::TooLong { crlf }) => reader.line_too_long(crlf),
            Err(NoLine::Eof) => break None,
        }
    };
    // The model: the message ends at the first ".\r\n" at the start of the data or
    // right after a "\r\n" (overlong lines included: their ending is reported).
    let model_end = (0..data.len())
        .find(|&i| data[i..].starts_with(b".\r\n") && (i == 0 || data[..i].ends_with(b"\r\n")))
        .map(|i| i + 3);
    assert_eq!(end, model_end, "end of data differs from CRLF.CRLF");
    let Some(end) = end else { return };
    if reader.flags.bare_lf || reader.flags.bare_cr || reader.oversize || reader.too_long {
        return;
    }
    // Dot-unstuffing (§4.5.2): each CRLF line loses one leading dot.
    let mut want = Vec::new();
    for line in data[..end - 3].split_inclusive(|b| *b == b'\n') {
        want.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
    }
    assert_eq!(body, want, "unstuffed body");
    // What the octet rules let through (8-bit allowed) is clean.
    if reader.flags.refusal().is_none() {
        assert_clean(&body, "DATA body");
    }
}

/// The header From/Sender extraction of the anti-spoofing rule (mail-parser).
pub fn header_facts(data: &[u8]) {
    let f = bulwark_mime::HeaderFacts::of(data);
    if f.has_from && !f.unparseable_originator {
        assert!(
            !f.originators.is_empty(),
            "a parseable From header yielded no address"
        );
    }
    // The one header boundary: for a section intake accepts (every line a field or a
    // continuation), mail-parser finds exactly the From/Sender fields our scan finds,
    // so what the checks see is what IMAP shows.
    let scan = bulwark_mime::header::scan(data);
    if scan.is_clean() {
        let head = &data[..scan.end];
        let seen = mail_parser::MessageParser::new()
            .parse_headers(head)
            .map_or(0, |m| {
                m.headers()
                    .iter()
                    .filter(|h| {
                        matches!(
                            h.name,
                            mail_parser::HeaderName::From | mail_parser::HeaderName::Sender
                        )
                    })
                    .count()
            });
        assert_eq!(
            seen,
            scan.from_fields + scan.sender_fields,
            "mail-parser and the header scan disagree on From/Sender fields"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::Reply;
    use bulwark_net::fuzzing::{mutate, run_cases, session_bytes, Rng};

    #[test]
    fn session_setup_reads_the_first_octet() {
        let (s, req, tls) = session_setup(0);
        assert_eq!(s.listener, ListenerKind::Smtp);
        assert_eq!(req, Requirement::Any);
        assert!(!tls);
        assert_eq!(s.max_errors, 1000);
        assert!(!s.reject_unauthenticated_local_senders);
        let (s, req, tls) = session_setup(0b1111_1110);
        assert_eq!(s.listener, ListenerKind::Submissions);
        assert_eq!(req, Requirement::AuthTls);
        assert!(tls);
        assert_eq!(s.max_errors, 10);
        assert_eq!(s.budget.limit(), 2048);
        assert!(s.reject_unauthenticated_local_senders);
        assert_eq!(
            s.local_from_on_inbound,
            bulwark_config::LocalFromAction::Tag
        );
        // Submissions is TLS from the start whatever bit 4 says; bit 4 turns it on
        // elsewhere.
        let (s, _, tls) = session_setup(2);
        assert_eq!(s.listener, ListenerKind::Submissions);
        assert!(tls);
        let (s, _, tls) = session_setup(0x10);
        assert_eq!(s.listener, ListenerKind::Submission);
        assert!(tls);
    }

    #[test]
    fn check_replies_counts_message_accepted_only() {
        let (settings, req, _) = session_setup(0);
        let peer = SocketAddr::from(([192, 0, 2, 7], 40000));
        let mut s = Session::new(Arc::new(settings), "t".into(), peer, req, None);
        s.reply(Reply::ok("Message accepted for delivery"));
        s.reply(Reply::ok("Sender OK"));
        // The greeting, then the two above.
        assert_eq!(check_replies(&mut s), 1);
        assert_eq!(check_replies(&mut s), 0, "replies are taken once");
    }

    #[test]
    fn property_session() {
        run_cases("smtp session", 0x5e55_0001, 3000, |seed| {
            let mut rng = Rng::new(seed);
            // The low octet of the draw picks the configuration.
            let mut data = vec![rng.next_u64().to_le_bytes()[0]];
            data.extend(session_bytes(&mut rng, DICTIONARY, 40));
            let _ = session(&data);
        });
    }

    #[test]
    fn property_data_reader() {
        let lines: &[&[u8]] = &[
            b"Subject: x",
            b"",
            b"text",
            b".",
            b"..",
            b".x",
            b"\r",
            b"x\r",
        ];
        run_cases("smtp data reader", 0xda7a_0001, 3000, |seed| {
            let mut rng = Rng::new(seed);
            data_reader(&session_bytes(&mut rng, lines, 30));
        });
    }

    #[test]
    fn property_header_facts() {
        run_cases("smtp header facts", 0x4ead_0001, 3000, |seed| {
            let mut rng = Rng::new(seed);
            let mut m = session_bytes(&mut rng, &DICTIONARY[25..35], 12);
            if rng.chance(1, 2) {
                m = mutate(&mut rng, &m);
            }
            header_facts(&m);
        });
    }

    #[test]
    fn property_header_boundary_agrees() {
        // Lines the parsers have disagreed on: white space only, form feeds, folds,
        // white space before the colon, names that are no field names.
        let lines: &[&[u8]] = &[
            b"From: a@b.test",
            b"Sender: c@d.test",
            b"\x0c",
            b" ",
            b"\t",
            b" folded",
            b"\tfrom: x@y.test",
            b"From :x@y.test",
            b"\x0cSender: e@f.test",
            b"sender\t: g@h.test",
            b"Subject: s",
            b"",
            b"bad line",
            b"\r",
        ];
        run_cases("smtp header boundary", 0x4ead_0002, 3000, |seed| {
            let mut rng = Rng::new(seed);
            let mut m = session_bytes(&mut rng, lines, 10);
            if rng.chance(1, 3) {
                m = mutate(&mut rng, &m);
            }
            header_facts(&m);
        });
    }

    #[test]
    fn known_sessions_reach_delivery() {
        // The harness itself must get a valid session to a stored message, or the
        // property tests above would prove little.
        let mut ok = vec![0u8];
        ok.extend_from_slice(
            b"EHLO c\r\nMAIL FROM:<x@remote.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\nFrom: x@remote.test\r\nSubject: a\r\n\r\nhi\r\n.\r\nQUIT\r\n",
        );
        assert_eq!(session(&ok), 1);
        data_reader(b"a\r\n..b\r\n.\r\n");
        data_reader(b"a\n.\nb\r\n.\r\n");
    }
}

//! Harnesses for the fuzz targets (`fuzz/fuzz_targets/imap_*.rs`) and for the seeded
//! property tests below, which run them on every `cargo test`. Not server code.
//!
//! - [`framing`](crate::fuzzing::framing): the command framer (`framing.rs`: lines, literal announcements and
//!   their limits before and after login, with and without TLS) over raw octets split
//!   as `Connection::read_line` splits them: no literal is invited that the session
//!   state forbids, and no command is handed out with a literal still missing.
//! - [`SessionEnv::session`](crate::fuzzing::SessionEnv::session): whole sessions of the sans-I/O core against a real
//!   embedded store (in a directory the caller provides), before and after login;
//!   checks that no login happens without TLS and that every command ends with its
//!   tagged response.
//! - [`names`](crate::fuzzing::names): mailbox names (modified UTF-7, RFC 3501 §5.1.3) round-trip, and LIST
//!   patterns (RFC 9051 §6.3.9) stay bounded.
//! - [`mime`](crate::fuzzing::mime): ENVELOPE/BODYSTRUCTURE, sections and the search text of a stored message
//!   (which arrived from the network); SEARCH's decode-skipping path answers as the
//!   full decode does.

use std::path::Path;
use std::sync::Arc;

use bulwark_auth::Authenticator;
use bulwark_config::AuthConfig;
use bulwark_net::fuzzing::{Input, NoLine};
use bulwark_store::{
    Account, Delivery, DeliveryTarget, Flags, Ingest, SharedStore, SqliteStore, Store,
};
use imap_codec::{
    decode::{CommandDecodeError, Decoder},
    CommandCodec,
};

use crate::framing::{
    guess_tag, verb_is_secret, FrameLimits, FrameState, Framer, Step, PRE_AUTH_LITERAL,
};
use crate::notify::Notifier;
use crate::resp::VecSink;
use crate::session::{Next, Session, SessionConfig};

/// Small limits so the limit paths are reachable with small inputs.
const LIMITS: FrameLimits = FrameLimits {
    max_line: 1024,
    max_literal: 4096,
};

/// What the framer made of one command (the shell's `Frame`).
#[derive(Debug, PartialEq, Eq)]
enum Frame {
    Command(Vec<u8>),
    LineTooLong,
    /// Refused before it was read; `close` when the literal is on its way anyway.
    Refused {
        reply: String,
        close: bool,
    },
    Malformed {
        tag: Option<String>,
    },
    TooComplex {
        tag: Option<String>,
        close: bool,
    },
}

/// Frames one command from `input` as `server::read_command` does; None at the end
/// of the input. Checks what the framer asks for against the session state.
fn frame_one(input: &mut Input<'_>, state: FrameState, limits: FrameLimits) -> Option<Frame> {
    let mut framer = Framer::new(state, limits);
    let mut first = true;
    let mut literal_octets = 0u64;
    loop {
        let line = match input.read_line(framer.max_line() + 2) {
            Ok(l) => l,
            Err(NoLine::TooLong { .. }) => return Some(Frame::LineTooLong),
            Err(NoLine::Eof) => return None,
        };
        if first {
            let _ = verb_is_secret(&line.bytes);
            first = false;
        }
        match framer.push_line(&line.bytes) {
            Step::Complete(bytes) => return Some(Frame::Command(bytes)),
            Step::Malformed { tag } => return Some(Frame::Malformed { tag }),
            Step::TooComplex { tag, close } => return Some(Frame::TooComplex { tag, close }),
            Step::Refuse { reply, close } => return Some(Frame::Refused { reply, close }),
            Step::Literal { len, .. } => {
                // DATA-PATHS rule 1: nothing invites a literal (a password) before TLS,
                // and before login only LOGIN/AUTHENTICATE get small ones.
                assert!(
                    state.tls || state.authenticated,
                    "literal invited before TLS"
                );
                literal_octets += len;
                if state.authenticated {
                    assert!(len <= limits.max_literal, "literal over the limit");
                } else {
                    assert!(framer.is_secret(), "literal before login outside LOGIN");
                    assert!(literal_octets <= PRE_AUTH_LITERAL, "pre-login literals");
                }
                match input.read_exact(len) {
                    Some(b) => framer.literal_buffer().extend_from_slice(b),
                    None => return None,
                }
            }
        }
    }
}

/// Valid commands for the generators (LOGIN/AUTHENTICATE use a password that never
/// matches: the harness logs in through `SessionEnv` instead of paying for Argon2).
pub const DICTIONARY: &[&[u8]] = &[
    b"a CAPABILITY",
    b"a NOOP",
    b"a STARTTLS",
    b"a LOGIN alice@example.test wrong",
    b"a LOGIN {18}",
    b"alice@example.test {5+}",
    b"wrong",
    b"a AUTHENTICATE PLAIN",
    b"a AUTHENTICATE PLAIN AGFsaWNlQGV4YW1wbGUudGVzdAB3cm9uZw==",
    b"AGFsaWNlQGV4YW1wbGUudGVzdAB3cm9uZw==",
    b"*",
    b"a ID (\"name\" \"fuzz\")",
    b"a ENABLE CONDSTORE",
    b"a NAMESPACE",
    b"a LIST \"\" *",
    b"a LIST \"\" %/%",
    b"a LSUB \"\" *",
    b"a STATUS INBOX (MESSAGES UIDNEXT UNSEEN HIGHESTMODSEQ)",
    b"a SELECT INBOX",
    b"a SELECT INBOX (CONDSTORE)",
    b"a EXAMINE Archive",
    b"a CREATE Fuzz/&AOk-",
    b"a DELETE Fuzz",
    b"a RENAME Fuzz Fuzz2",
    b"a SUBSCRIBE Fuzz",
    b"a UNSUBSCRIBE Fuzz",
    b"a APPEND INBOX (\\Seen) {20+}",
    b"Subject: x\r\n\r\nbody!",
    b"a APPEND Fuzz {5}",
    b"a FETCH 1:* (FLAGS UID ENVELOPE BODYSTRUCTURE)",
    b"a FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)] BODY[1.2] BODY[TEXT]<0.10>)",
    b"a UID FETCH 1:* (MODSEQ) (CHANGEDSINCE 1)",
    b"a FETCH 4294967295 RFC822.SIZE",
    b"a STORE 1:2 +FLAGS (\\Deleted \\Seen)",
    b"a STORE 1 FLAGS.SILENT (\\Flagged $Label)",
    b"a UID STORE 1:* -FLAGS (\\Seen) (UNCHANGEDSINCE 5)",
    b"a SEARCH ALL",
    b"a SEARCH OR SUBJECT x TEXT y NOT SEEN",
    b"a UID SEARCH 1:* LARGER 10 SINCE 1-Jan-2020",
    b"a SEARCH CHARSET UTF-8 TEXT {2}",
    b"a COPY 1:* Archive",
    b"a MOVE 1 Trash",
    b"a UID MOVE 1:* Archive",
    b"a EXPUNGE",
    b"a UID EXPUNGE 1:5",
    b"a CHECK",
    b"a CLOSE",
    b"a UNSELECT",
    b"a IDLE",
    b"DONE",
    b"a LOGOUT",
];

/// Runs the framer over `data` as the server's read loop would, command after
/// command; the first octet chooses the session state (bit 0: TLS, bit 1: logged
/// in). A complete command never still waits for a literal.
pub fn framing(data: &[u8]) {
    let (&cfg, stream) = data.split_first().unwrap_or((&0, &[]));
    let state = FrameState {
        tls: cfg & 1 != 0,
        authenticated: cfg & 2 != 0,
    };
    let mut input = Input::new(stream);
    while let Some(frame) = frame_one(&mut input, state, LIMITS) {
        let close = frame_close(&frame);
        match frame {
            Frame::Command(bytes) => {
                assert!(bytes.ends_with(b"\r\n"));
                if let Err(CommandDecodeError::LiteralFound { .. }) =
                    CommandCodec::default().decode(&bytes)
                {
                    panic!("framed command still announces a literal");
                }
            }
            Frame::Refused { reply, .. } => {
                assert!(reply.contains(" NO ") || reply.contains(" BAD "), "{reply}");
            }
            Frame::Malformed { tag: Some(t) } | Frame::TooComplex { tag: Some(t), .. } => {
                assert!(!t.is_empty() && !t.contains([' ', '\r', '\n']));
                assert_eq!(guess_tag(t.as_bytes()).as_deref(), Some(t.as_str()));
            }
            Frame::Malformed { tag: None } | Frame::TooComplex { tag: None, .. } => {}
            Frame::LineTooLong => {}
        }
        if close {
            // The shell sends BYE and closes: the literal is on its way.
            return;
        }
    }
}

fn frame_close(f: &Frame) -> bool {
    matches!(
        f,
        Frame::Refused { close: true, .. } | Frame::TooComplex { close: true, .. }
    )
}

/// A store with alice's account and a few messages, and an authenticator, for
/// [`SessionEnv::session`].
pub struct SessionEnv {
    rt: tokio::runtime::Runtime,
    store: SharedStore,
    auth: Authenticator,
    notifier: Notifier,
    account: Account,
}

const MESSAGES: &[&[u8]] = &[
    b"From: Bob <bob@example.test>\r\nTo: alice@example.test\r\nSubject: hello\r\nDate: Tue, 3 Mar 2026 10:00:00 +0100\r\nMessage-ID: <1@example.test>\r\n\r\nHello\r\n",
    b"From: x@y.test\r\nSubject: =?utf-8?B?w6k=?=\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\none\r\n--b\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\ntwo\r\n--b--\r\n",
    b"no header at all",
];

impl SessionEnv {
    /// Opens (or reuses) a store in `dir`.
    pub fn new(dir: &Path) -> SessionEnv {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let (store, account) = rt.block_on(async {
            let store = SqliteStore::open(dir).expect("store");
            let _ = store.add_domain("example.test").await;
            // A hash that never verifies: logging in costs no Argon2 run.
            let account = match store.account("alice@example.test").await.expect("store") {
                Some(a) => a,
                None => store
                    .create_account("alice@example.test", "$argon2id$never")
                    .await
                    .expect("account"),
            };
            for m in MESSAGES {
                store
                    .ingest(Ingest {
                        data: m.to_vec(),
                        internal_date: 1_772_000_000,
                        deliveries: vec![Delivery {
                            target: DeliveryTarget::Inbox(account.id),
                            flags: Flags::default(),
                        }],
                        queue: None,
                    })
                    .await
                    .expect("ingest");
            }
            let store: SharedStore = Arc::new(store);
            (store, account)
        });
        // Unknown users would cost an Argon2 run each; after the first failure every
        // attempt from the harness's address is refused at once.
        let auth = Authenticator::new(
            store.clone(),
            AuthConfig {
                failure_delay_ms: 0,
                max_delay_ms: 0,
                slow_after_failures: 1000,
                block_ip_after_failures: 1,
                ..AuthConfig::default()
            },
        );
        let notifier = rt.block_on(async { Notifier::new(&store) });
        SessionEnv {
            rt,
            store,
            auth,
            notifier,
            account,
        }
    }

    /// Runs one session over `data`: the first octet says whether TLS is up and
    /// whether the session starts logged in; the rest is the client's octets.
    pub fn session(&self, data: &[u8]) {
        let (&cfg, stream) = data.split_first().unwrap_or((&0, &[]));
        self.rt.block_on(self.run(cfg, stream));
    }

    async fn run(&self, cfg: u8, stream: &[u8]) {
        let tls = cfg & 1 != 0;
        let mut s = Session::new(
            self.store.clone(),
            self.auth.clone(),
            SessionConfig {
                listener: "imap",
                peer: "192.0.2.9".parse().unwrap_or([0u8; 4].into()),
                tls,
                max_literal_size: LIMITS.max_literal,
                max_mime_parts: 20,
            },
            self.notifier.clone(),
        );
        // A fixed clock: a crash input replays with the same internal dates.
        s.set_clock(crate::session::Clock::Fixed(1_700_000_000));
        if tls && cfg & 2 != 0 {
            s.account = Some(self.account.clone());
        }
        let mut sink = VecSink::default();
        let mut input = Input::new(stream);
        let budget = stream.len() + 16;
        for _ in 0..budget {
            let state = FrameState {
                tls: s.cfg.tls,
                authenticated: s.is_authenticated(),
            };
            let Some(frame) = frame_one(&mut input, state, LIMITS) else {
                return;
            };
            let close = frame_close(&frame);
            let Frame::Command(bytes) = frame else {
                if close {
                    return;
                }
                continue;
            };
            let tag = match CommandCodec::default().decode(&bytes) {
                Ok((_, cmd)) => cmd.tag.as_ref().to_string(),
                Err(_) => guess_tag(&bytes).unwrap_or_else(|| "*".into()),
            };
            // As the shell does: imap-codec first, then the LIST-EXTENDED parser.
            let next = s
                .handle_raw(&bytes, &mut sink)
                .await
                .expect("VecSink cannot fail");
            let out = std::mem::take(&mut sink.data);
            check_output(&out, &tag, &next);
            match next {
                Next::Continue => {}
                Next::Close => return,
                Next::StartTls => {
                    assert!(!s.cfg.tls, "STARTTLS inside TLS");
                    s.tls_started();
                }
                Next::AuthContinue(tag) => {
                    assert!(s.cfg.tls, "AUTHENTICATE without TLS");
                    let line = match input.read_line(16 * 1024) {
                        Ok(l) => l,
                        Err(NoLine::TooLong { .. }) => continue,
                        Err(NoLine::Eof) => return,
                    };
                    let _ = s
                        .auth_response(&tag, &line.bytes, &mut sink)
                        .await
                        .expect("VecSink cannot fail");
                    let out = std::mem::take(&mut sink.data);
                    check_output(&out, &tag, &Next::Continue);
                }
                Next::Idle(_) => {
                    // The shell waits for DONE; any line ends IDLE.
                    if input.read_line(LIMITS.max_line + 2) == Err(NoLine::Eof) {
                        return;
                    }
                }
            }
            if !s.cfg.tls {
                assert!(!s.is_authenticated(), "logged in without TLS");
            }
        }
    }
}

/// Every response ends with CRLF; a finished command's last line is its tagged one.
fn check_output(out: &[u8], tag: &str, next: &Next) {
    if matches!(next, Next::Idle(_) | Next::AuthContinue(_)) {
        return;
    }
    assert!(out.ends_with(b"\r\n"), "response without CRLF");
    let body = &out[..out.len() - 2];
    let last = match body.windows(2).rposition(|w| w == b"\r\n") {
        Some(i) => &body[i + 2..],
        None => body,
    };
    let want = format!("{tag} ");
    assert!(
        last.starts_with(want.as_bytes()),
        "last line is not the tagged response: {:?}",
        String::from_utf8_lossy(last)
    );
}

/// Mailbox names: what `parse_name` accepts survives encoding and decoding; LIST
/// matching terminates on any pattern.
pub fn names(data: &[u8]) {
    let (pattern, name) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b"INBOX/Sub"[..]),
    };
    if let Ok(n) = crate::names::parse_name(name) {
        let wire = crate::names::encode_mutf7(&n);
        assert!(wire.is_ascii(), "modified UTF-7 is ASCII");
        assert_eq!(
            crate::names::parse_name(wire.as_bytes()).ok().as_deref(),
            Some(n.as_str()),
            "mailbox name round trip"
        );
    }
    let p = String::from_utf8_lossy(pattern);
    let n = String::from_utf8_lossy(name);
    let _ = crate::names::pattern_matches(&p, &n);
    let _ = crate::names::decode_mutf7(pattern);
}

/// A stored message: its summary (ENVELOPE, BODYSTRUCTURE), a few sections and the
/// search text.
pub fn mime(data: &[u8]) {
    use crate::mime::{compute_summary, search_doc, search_doc_for, section, SectionText, Summary};
    let summary = compute_summary(data);
    assert_eq!(Summary::decode(&summary.encode()), Some(summary));
    for path in [&[][..], &[1], &[1, 2], &[2, 1, 1]] {
        for what in [
            SectionText::Whole,
            SectionText::Header,
            SectionText::Text,
            SectionText::HeaderFields {
                names: vec!["Subject".into(), "From".into()],
                not: false,
            },
        ] {
            let _ = section(data, path, &what);
        }
    }
    // Skipping the decode (SEARCH's fast path) never changes an answer.
    let full = search_doc(data, true);
    for n in ["hello", "one", "x", "subject"] {
        let fast = search_doc_for(data, true, &[n]);
        assert_eq!(fast.headers, full.headers, "search headers");
        assert_eq!(fast.sent, full.sent, "search date");
        assert_eq!(
            fast.body.contains(n),
            full.body.contains(n),
            "search body for {n:?}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulwark_net::fuzzing::{mutate, run_cases, session_bytes, Rng};

    #[test]
    fn property_framing() {
        run_cases("imap framing", 0x1a40_0001, 3000, |seed| {
            let mut rng = Rng::new(seed);
            let mut data = vec![rng.next_u64().to_le_bytes()[0]];
            data.extend(session_bytes(&mut rng, DICTIONARY, 30));
            framing(&data);
        });
    }

    #[test]
    fn property_session() {
        let dir = tempfile::tempdir().expect("tempdir");
        let env = SessionEnv::new(&dir.path().join("store"));
        // Sessions hit the store (and its fsync): fewer cases than the pure targets.
        run_cases("imap session", 0x1a40_0002, 400, |seed| {
            let mut rng = Rng::new(seed);
            let mut data = vec![rng.next_u64().to_le_bytes()[0]];
            data.extend(session_bytes(&mut rng, DICTIONARY, 25));
            env.session(&data);
        });
    }

    #[test]
    fn property_names_and_mime() {
        let names_dict: &[&[u8]] = &[b"INBOX", b"&AOk-", b"a/b", b"*", b"%", b"&-", b"/", b".."];
        run_cases("imap names", 0x1a40_0003, 3000, |seed| {
            let mut rng = Rng::new(seed);
            let mut d = session_bytes(&mut rng, names_dict, 6);
            d.retain(|b| *b != b'\r' && *b != b'\n');
            names(&d);
        });
        run_cases("imap mime", 0x1a40_0004, 1000, |seed| {
            let mut rng = Rng::new(seed);
            let base = MESSAGES[rng.below(MESSAGES.len())];
            mime(&mutate(&mut rng, base));
        });
    }

    #[test]
    fn the_session_harness_reaches_selected_state() {
        let dir = tempfile::tempdir().expect("tempdir");
        let env = SessionEnv::new(&dir.path().join("store"));
        env.session(b"\x03a SELECT INBOX\r\nb FETCH 1:* (FLAGS ENVELOPE)\r\nc STORE 1 +FLAGS (\\Seen)\r\nd LOGOUT\r\n");
        framing(b"\x01a LOGIN {5}\r\nalice {3}\r\npw\r\n");
        framing(b"\x00a LOGIN {5}\r\nalice {3}\r\npw\r\n");
    }

    /// Feeds a command of `first` and then `literals` literals of `size` octets, each
    /// followed by `cont`; returns the frame and how many literals were read.
    fn frame_with_literals(
        state: FrameState,
        first: &[u8],
        cont: &[u8],
        size: usize,
        literals: usize,
    ) -> (Frame, usize) {
        let limits = FrameLimits {
            max_line: 65536,
            max_literal: 64 << 20,
        };
        let mut f = Framer::new(state, limits);
        let mut read = 0;
        let mut step = f.push_line(first);
        loop {
            match step {
                Step::Complete(b) => return (Frame::Command(b), read),
                Step::Malformed { tag } => return (Frame::Malformed { tag }, read),
                Step::TooComplex { tag, close } => return (Frame::TooComplex { tag, close }, read),
                Step::Refuse { reply, close } => return (Frame::Refused { reply, close }, read),
                Step::Literal { len, .. } => {
                    assert_eq!(len, size as u64);
                    f.literal_buffer().extend(std::iter::repeat_n(b'x', size));
                    read += 1;
                    step = f.push_line(if read == literals { b"" } else { cont });
                }
            }
        }
    }

    const AUTHED: FrameState = FrameState {
        tls: true,
        authenticated: true,
    };
    const ANON_TLS: FrameState = FrameState {
        tls: true,
        authenticated: false,
    };

    #[test]
    fn many_literals_cannot_make_decoding_quadratic() {
        // The reliability finding: re-decoding the buffer after every literal made a
        // command of 1,000 literals of 60,000 octets cost 18 s of CPU. The framer
        // decodes a command once, when complete, and refuses early: literals other
        // than an APPEND message share `max_line` octets...
        let (frame, read) = frame_with_literals(
            AUTHED,
            b"a SEARCH TEXT {60000+}",
            b" TEXT {60000+}",
            60_000,
            1000,
        );
        assert!(
            matches!(frame, Frame::Refused { ref reply, close: true } if reply.starts_with("a NO [TOOBIG]")),
            "{frame:?}"
        );
        assert_eq!(read, 1);
        // ...and a command has at most MAX_LITERALS of them.
        let (frame, read) =
            frame_with_literals(AUTHED, b"a SEARCH TEXT {1+}", b" TEXT {1+}", 1, 1000);
        assert_eq!(
            frame,
            Frame::TooComplex {
                tag: Some("a".into()),
                close: true
            }
        );
        assert_eq!(read, crate::framing::MAX_LITERALS);
        // Before login: 8 KiB in all.
        let (frame, read) = frame_with_literals(ANON_TLS, b"a LOGIN {5000}", b" {5000}", 5000, 2);
        assert!(matches!(frame, Frame::Refused { .. }), "{frame:?}");
        assert_eq!(read, 1);
        // What clients send still passes: a big APPEND, LOGIN with two literals, a
        // SEARCH with a handful of literal strings.
        let (frame, _) =
            frame_with_literals(AUTHED, b"a APPEND INBOX {5000000+}", b"", 5_000_000, 1);
        assert!(matches!(frame, Frame::Command(_)), "{frame:?}");
        let (frame, _) = frame_with_literals(ANON_TLS, b"a LOGIN {30+}", b" {30+}", 30, 2);
        assert!(matches!(frame, Frame::Command(_)), "{frame:?}");
        let (frame, _) =
            frame_with_literals(AUTHED, b"a SEARCH TEXT {200+}", b" TEXT {200+}", 200, 20);
        assert!(matches!(frame, Frame::Command(_)), "{frame:?}");
    }

    #[test]
    fn hostile_list_patterns_do_not_overflow_the_stack() {
        // A LIST pattern of 60,000 wildcards: the matcher must not recurse per
        // pattern character (a stack overflow aborts the whole server).
        let t = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(|| {
                assert!(crate::names::pattern_matches(&"*".repeat(60_000), "INBOX"));
                assert!(!crate::names::pattern_matches(&"%".repeat(60_000), "a/b"));
                assert!(crate::names::pattern_matches(&"*%".repeat(30_000), "a/b/c"));
                assert!(!crate::names::pattern_matches(&"*a".repeat(30_000), "aaaa"));
            })
            .expect("thread");
        assert!(t.join().is_ok());
    }
}

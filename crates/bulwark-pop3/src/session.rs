//! The POP3 session as a state machine without I/O (RFC 1939 §3): AUTHORIZATION →
//! TRANSACTION → UPDATE. It is fed command lines and the outcomes of the work it asks
//! for (checking a password, storing deletions) and answers with `Action`s; the async
//! shell in `server.rs` performs them on a `Connection`.

use bulwark_auth::sasl::{decode_plain, SaslError};
use bulwark_auth::Secret;
use bulwark_store::{BlobId, MailboxId};

use crate::command::{parse_args, split_verb, Command, Verb};
use crate::maildrop::{Maildrop, NumberError};
use crate::reply::Reply;

/// After this many `-ERR` replies in one session the connection is closed (the limit
/// shared with IMAP, `bulwark_net::MAX_SESSION_ERRORS`).
pub const MAX_ERRORS: u32 = bulwark_net::MAX_SESSION_ERRORS;

/// What the session knows about its transport.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// TLS is up: an implicit-TLS listener (995), or after STLS.
    pub tls: bool,
    /// The listener offers STLS (110).
    pub stls_available: bool,
    /// Our host name, for the greeting and sign-off.
    pub hostname: String,
}

/// Credentials to check (with `Authenticator::authenticate`), then lock the maildrop
/// and take its snapshot; report back with `Session::login_result`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginRequest {
    /// The user name from USER or the SASL authentication identity.
    pub username: String,
    /// The password from PASS or the SASL response.
    pub password: Secret,
    /// "USER" (USER/PASS) or "PLAIN" (AUTH PLAIN), for metrics and logs.
    pub mechanism: &'static str,
}

/// How a login attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginOutcome {
    /// Authenticated, maildrop locked, snapshot taken.
    LoggedIn(Maildrop),
    /// Wrong user name or password (the same answer for both, DATA-PATHS rule 4).
    Failed,
    /// Too many failures from this address or for this account.
    Throttled,
    /// The authenticator could not read the store.
    Unavailable,
    /// Another POP3 session holds the maildrop lock.
    InUse,
    /// Authenticated, but INBOX could not be read.
    MaildropUnavailable,
}

/// What the shell must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send the reply, read the next line.
    Reply(Reply),
    /// Send the reply, then upgrade the connection to TLS and call
    /// `Session::tls_started`; close the connection if the handshake fails.
    StartTls(Reply),
    /// Check credentials and call `Session::login_result`.
    Login(LoginRequest),
    /// Read the message body, send `reply` and the body dot-stuffed (only the header
    /// and `body_lines` lines of the body for TOP); if the body cannot be read, send
    /// an `-ERR` instead.
    Retrieve {
        /// The `+OK` status line to send before the body.
        reply: Reply,
        /// The message number (1-based) the client asked for.
        number: u32,
        /// The stored body to send.
        blob: BlobId,
        /// TOP's line count; `None` for RETR (the whole message).
        body_lines: Option<u32>,
    },
    /// The UPDATE state (RFC 1939 §6): remove `delete` from `mailbox`, flag `seen` as
    /// read, then call `Session::update_result`.
    Update {
        /// The INBOX of the snapshot.
        mailbox: MailboxId,
        /// UIDs marked by DELE: expunged.
        delete: Vec<u32>,
        /// UIDs sent whole by RETR and not deleted: flagged \Seen.
        seen: Vec<u32>,
    },
    /// Send the reply and close the connection.
    Close(Reply),
}

#[derive(Debug)]
enum State {
    Authorization {
        user: Option<String>,
    },
    /// `AUTH PLAIN` without an initial response: the next line is the client's
    /// (secret) response.
    SaslPlain,
    /// A `Login` action is out.
    Authenticating,
    Transaction(Maildrop),
    /// An `Update` action is out.
    Update,
    Closed,
}

/// One POP3 session's state machine (RFC 1939 §3 states): fed lines, it answers with
/// an [`Action`] for the shell to perform; it does no I/O.
pub struct Session {
    settings: SessionSettings,
    state: State,
    errors: u32,
}

impl Session {
    /// A session in the AUTHORIZATION state, before the greeting.
    pub fn new(settings: SessionSettings) -> Session {
        Session {
            settings,
            state: State::Authorization { user: None },
            errors: 0,
        }
    }

    /// RFC 1939 §4: the greeting. No APOP timestamp: APOP is not offered.
    pub fn greeting(&self) -> Reply {
        Reply::ok(format!("{} POP3 server ready", self.settings.hostname))
    }

    /// True when the next line is a SASL response: it must be logged as a secret and
    /// may be longer than a command (`MAX_SASL_LINE`).
    pub fn expects_secret(&self) -> bool {
        matches!(self.state, State::SaslPlain)
    }

    /// True once the connection is encrypted (implicit TLS or after STLS).
    pub fn is_tls(&self) -> bool {
        self.settings.tls
    }

    /// The snapshot, once logged in.
    pub fn maildrop(&self) -> Option<&Maildrop> {
        match &self.state {
            State::Transaction(m) => Some(m),
            _ => None,
        }
    }

    fn error(&mut self, reply: Reply) -> Action {
        self.errors += 1;
        if self.errors >= MAX_ERRORS {
            self.state = State::Closed;
            return Action::Close(Reply::err(format!(
                "{} (too many errors; closing the connection)",
                reply.status().trim_start_matches("-ERR ")
            )));
        }
        Action::Reply(reply)
    }

    fn err(&mut self, text: impl AsRef<str>) -> Action {
        self.error(Reply::err(text))
    }

    /// A line longer than the limit was received (and discarded by the connection).
    pub fn on_line_too_long(&mut self) -> Action {
        if matches!(self.state, State::SaslPlain) {
            self.state = State::Authorization { user: None };
            return self.err("SASL response too long; authentication cancelled");
        }
        self.err(format!(
            "line too long: commands are at most {} octets (RFC 2449)",
            crate::command::MAX_COMMAND_LINE
        ))
    }

    /// One line from the client, without its line ending.
    pub fn on_line(&mut self, line: &[u8]) -> Action {
        match &self.state {
            State::SaslPlain => return self.on_sasl_response(line),
            State::Authenticating | State::Update | State::Closed => {
                // The shell never reads while an action is out; refuse rather than panic.
                return Action::Close(Reply::err("[SYS/TEMP] internal error: unexpected input"));
            }
            State::Authorization { .. } | State::Transaction(_) => {}
        }
        let (verb, rest) = match split_verb(line) {
            Ok(v) => v,
            Err(e) => return self.err(e.reason()),
        };
        // RFC 2595 §4 and DATA-PATHS rule 1: no user name or password in the clear.
        // Refused by verb, before looking at the arguments.
        if !self.settings.tls && verb.carries_credentials() {
            return self.err(format!(
                "[SYS/PERM] TLS required: {} is refused on an unencrypted connection; \
                 send STLS first or use port 995",
                verb.name()
            ));
        }
        let cmd = match parse_args(verb, rest) {
            Ok(c) => c,
            Err(e) => return self.err(e.reason()),
        };
        if matches!(self.state, State::Transaction(_)) {
            self.transaction(cmd)
        } else {
            self.authorization(cmd)
        }
    }

    /// RFC 2449 §5 CAPA, listing what is usable now.
    fn capabilities(&self) -> Reply {
        let mut caps: Vec<String> = [
            "TOP",
            "UIDL",
            "RESP-CODES",
            "AUTH-RESP-CODE",
            "PIPELINING",
            // RFC 2449 §6.7: we never delete messages on our own.
            "EXPIRE NEVER",
        ]
        .map(String::from)
        .to_vec();
        if self.settings.tls {
            caps.push("USER".into());
            caps.push("SASL PLAIN".into());
        } else if self.settings.stls_available {
            // RFC 2595 §4; no USER and no SASL before TLS.
            caps.push("STLS".into());
        }
        caps.push("IMPLEMENTATION Bulwark".into());
        Reply::multi("Capability list follows", caps)
    }

    /// RFC 1939 §4, RFC 2595 §4, RFC 5034 §4.
    fn authorization(&mut self, cmd: Command) -> Action {
        match cmd {
            Command::Capa => Action::Reply(self.capabilities()),
            Command::Stls => {
                if self.settings.tls {
                    self.err("TLS is already active")
                } else if !self.settings.stls_available {
                    self.err("STLS is not available on this port")
                } else {
                    self.state = State::Authorization { user: None };
                    Action::StartTls(Reply::ok("Begin TLS negotiation"))
                }
            }
            // RFC 1939 §7: say nothing about whether the user exists.
            Command::User(name) => {
                self.state = State::Authorization { user: Some(name) };
                Action::Reply(Reply::ok("send PASS"))
            }
            Command::Pass(password) => {
                let user = match &mut self.state {
                    State::Authorization { user } => user.take(),
                    _ => None,
                };
                match user {
                    None => self.err("give USER first"),
                    Some(username) => {
                        self.state = State::Authenticating;
                        Action::Login(LoginRequest {
                            username,
                            password,
                            mechanism: "USER",
                        })
                    }
                }
            }
            Command::Apop => self.err("APOP is not supported; use USER/PASS or AUTH PLAIN"),
            // Only reached over TLS: AUTH is refused by verb before it.
            Command::AuthMechanisms => {
                Action::Reply(Reply::multi("SASL mechanisms follow", vec!["PLAIN".into()]))
            }
            Command::Auth {
                mechanism,
                initial_response,
            } => {
                self.state = State::Authorization { user: None };
                if mechanism != "PLAIN" {
                    return self.err("unsupported SASL mechanism; CAPA lists SASL PLAIN");
                }
                match initial_response {
                    Some(ir) => self.plain(&ir),
                    None => {
                        self.state = State::SaslPlain;
                        Action::Reply(Reply::continuation())
                    }
                }
            }
            Command::Quit => {
                self.state = State::Closed;
                Action::Close(Reply::ok(format!(
                    "{} POP3 server signing off",
                    self.settings.hostname
                )))
            }
            Command::Stat
            | Command::List(_)
            | Command::Retr(_)
            | Command::Dele(_)
            | Command::Noop
            | Command::Rset
            | Command::Top(..)
            | Command::Uidl(_) => {
                let verb = verb_of(&cmd);
                self.err(format!(
                    "{} is only valid after login (TRANSACTION state)",
                    verb.name()
                ))
            }
        }
    }

    fn on_sasl_response(&mut self, line: &[u8]) -> Action {
        self.state = State::Authorization { user: None };
        match std::str::from_utf8(line) {
            Ok(s) => self.plain(s),
            Err(_) => self.err("invalid SASL response: not base64"),
        }
    }

    /// RFC 4616 PLAIN message, base64 (RFC 5034 §4; "*" cancels).
    fn plain(&mut self, b64: &str) -> Action {
        match decode_plain(b64) {
            Ok(c) => {
                self.state = State::Authenticating;
                Action::Login(LoginRequest {
                    username: c.username,
                    password: c.password,
                    mechanism: "PLAIN",
                })
            }
            Err(SaslError::Cancelled) => self.err("authentication cancelled"),
            Err(SaslError::AuthzMismatch) => self
                .err("[AUTH] the authorization identity must be empty or equal to the user name"),
            Err(SaslError::Base64 | SaslError::Malformed) => {
                self.err("invalid SASL PLAIN response")
            }
        }
    }

    /// The outcome of a `Login` action.
    pub fn login_result(&mut self, outcome: LoginOutcome) -> Action {
        self.state = State::Authorization { user: None };
        match outcome {
            LoginOutcome::LoggedIn(maildrop) => {
                let (n, size) = maildrop.stat();
                self.state = State::Transaction(maildrop);
                Action::Reply(Reply::ok(format!(
                    "maildrop locked and ready, {n} messages ({size} octets)"
                )))
            }
            // RFC 3206 §4 / RFC 5034 §6: [AUTH] means the credentials were wrong.
            LoginOutcome::Failed => self.err("[AUTH] authentication failed"),
            LoginOutcome::Throttled => {
                self.err("[SYS/TEMP] too many failed logins; try again later")
            }
            LoginOutcome::Unavailable => {
                self.err("[SYS/TEMP] authentication is temporarily unavailable; try again later")
            }
            // RFC 2449 §8.1.1.
            LoginOutcome::InUse => {
                self.err("[IN-USE] the maildrop is locked by another POP3 session; try again later")
            }
            LoginOutcome::MaildropUnavailable => {
                self.err("[SYS/TEMP] the maildrop cannot be opened; try again later")
            }
        }
    }

    /// TLS is up after STLS: RFC 2595 §4, the session starts over in AUTHORIZATION.
    pub fn tls_started(&mut self) {
        self.settings.tls = true;
        self.state = State::Authorization { user: None };
    }

    /// RFC 1939 §5.
    fn transaction(&mut self, cmd: Command) -> Action {
        let State::Transaction(md) = &mut self.state else {
            return Action::Close(Reply::err("[SYS/TEMP] internal error"));
        };
        let number_error = |e: NumberError, n: u32| Reply::err(e.reason(n));
        match cmd {
            Command::Capa => Action::Reply(self.capabilities()),
            Command::Stat => {
                let (n, size) = md.stat();
                Action::Reply(Reply::ok(format!("{n} {size}")))
            }
            Command::List(None) => {
                let (n, size) = md.stat();
                let lines = md
                    .visible()
                    .map(|(i, e)| format!("{i} {}", e.size))
                    .collect();
                Action::Reply(Reply::multi(format!("{n} messages ({size} octets)"), lines))
            }
            Command::List(Some(i)) => match md.get(i) {
                Ok(e) => Action::Reply(Reply::ok(format!("{i} {}", e.size))),
                Err(e) => self.error(number_error(e, i)),
            },
            Command::Uidl(None) => {
                let lines = md
                    .visible()
                    .map(|(i, e)| format!("{i} {}", md.unique_id(e)))
                    .collect();
                Action::Reply(Reply::multi("unique-id listing follows", lines))
            }
            Command::Uidl(Some(i)) => match md.get(i) {
                Ok(e) => Action::Reply(Reply::ok(format!("{i} {}", md.unique_id(e)))),
                Err(e) => self.error(number_error(e, i)),
            },
            Command::Retr(i) => match md.get(i) {
                Ok(e) => {
                    let action = Action::Retrieve {
                        reply: Reply::ok(format!("{} octets", e.size)),
                        number: i,
                        blob: e.blob,
                        body_lines: None,
                    };
                    let _ = md.mark_retrieved(i);
                    action
                }
                Err(e) => self.error(number_error(e, i)),
            },
            Command::Top(i, lines) => match md.get(i) {
                Ok(e) => Action::Retrieve {
                    reply: Reply::ok("top of message follows"),
                    number: i,
                    blob: e.blob,
                    body_lines: Some(lines),
                },
                Err(e) => self.error(number_error(e, i)),
            },
            Command::Dele(i) => match md.mark_deleted(i) {
                Ok(()) => Action::Reply(Reply::ok(format!("message {i} deleted"))),
                Err(e) => self.error(number_error(e, i)),
            },
            Command::Noop => Action::Reply(Reply::ok("")),
            Command::Rset => {
                md.reset();
                let (n, size) = md.stat();
                Action::Reply(Reply::ok(format!(
                    "maildrop has {n} messages ({size} octets)"
                )))
            }
            // RFC 1939 §6: QUIT in TRANSACTION enters UPDATE.
            Command::Quit => {
                let action = Action::Update {
                    mailbox: md.mailbox,
                    delete: md.deleted_uids(),
                    seen: md.retrieved_uids(),
                };
                self.state = State::Update;
                action
            }
            Command::Stls => self.err("STLS is only valid before login"),
            Command::User(_)
            | Command::Pass(_)
            | Command::Apop
            | Command::Auth { .. }
            | Command::AuthMechanisms => self.err("already logged in"),
        }
    }

    /// The outcome of the `Update` action: how many messages were removed.
    pub fn update_result(&mut self, removed: Result<usize, ()>) -> Action {
        self.state = State::Closed;
        match removed {
            Ok(n) => Action::Close(Reply::ok(format!(
                "{} POP3 server signing off ({n} message{} deleted)",
                self.settings.hostname,
                if n == 1 { "" } else { "s" }
            ))),
            // RFC 1939 §6.
            Err(()) => Action::Close(Reply::err("[SYS/TEMP] some deleted messages not removed")),
        }
    }
}

fn verb_of(cmd: &Command) -> Verb {
    match cmd {
        Command::Capa => Verb::Capa,
        Command::Stls => Verb::Stls,
        Command::User(_) => Verb::User,
        Command::Pass(_) => Verb::Pass,
        Command::Apop => Verb::Apop,
        Command::Auth { .. } | Command::AuthMechanisms => Verb::Auth,
        Command::Quit => Verb::Quit,
        Command::Stat => Verb::Stat,
        Command::List(_) => Verb::List,
        Command::Retr(_) => Verb::Retr,
        Command::Dele(_) => Verb::Dele,
        Command::Noop => Verb::Noop,
        Command::Rset => Verb::Rset,
        Command::Top(..) => Verb::Top,
        Command::Uidl(_) => Verb::Uidl,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maildrop::tests::maildrop;
    use bulwark_store::{BlobId, MailboxId};

    fn session(tls: bool, stls: bool) -> Session {
        Session::new(SessionSettings {
            tls,
            stls_available: stls,
            hostname: "mail.example.test".into(),
        })
    }

    /// The status line of a `Reply` or `Close` action.
    fn status(a: &Action) -> String {
        match a {
            Action::Reply(r) | Action::Close(r) | Action::StartTls(r) => r.status().to_string(),
            other => panic!("not a reply: {other:?}"),
        }
    }

    fn reply(s: &mut Session, line: &str) -> String {
        status(&s.on_line(line.as_bytes()))
    }

    fn capa(s: &mut Session) -> Vec<String> {
        match s.on_line(b"CAPA") {
            Action::Reply(r) => {
                assert!(r.is_ok());
                r.lines().unwrap().to_vec()
            }
            other => panic!("{other:?}"),
        }
    }

    fn logged_in(sizes: &[u64]) -> Session {
        let mut s = session(true, false);
        assert_eq!(reply(&mut s, "USER alice@example.test"), "+OK send PASS");
        match s.on_line(b"PASS secret pw") {
            Action::Login(req) => {
                assert_eq!(req.username, "alice@example.test");
                assert_eq!(req.password.expose(), "secret pw");
                assert_eq!(req.mechanism, "USER");
            }
            other => panic!("{other:?}"),
        }
        let a = s.login_result(LoginOutcome::LoggedIn(maildrop(sizes)));
        assert!(status(&a).starts_with("+OK maildrop locked and ready"));
        s
    }

    #[test]
    fn greeting_has_no_apop_timestamp() {
        let s = session(false, true);
        assert_eq!(
            s.greeting().status(),
            "+OK mail.example.test POP3 server ready"
        );
    }

    #[test]
    fn before_tls_capa_offers_stls_and_no_login() {
        let mut s = session(false, true);
        let caps = capa(&mut s);
        assert!(caps.contains(&"STLS".to_string()), "{caps:?}");
        assert!(!caps.iter().any(|c| c == "USER" || c.starts_with("SASL")));
        for c in ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"] {
            assert!(caps.contains(&c.to_string()), "{c} missing: {caps:?}");
        }
    }

    #[test]
    fn before_tls_every_credential_command_is_refused() {
        let mut s = session(false, true);
        for line in [
            "USER alice@example.test",
            "PASS secret",
            "PASS",
            "APOP alice 0123456789abcdef",
            "AUTH PLAIN AGFsaWNlAHNlY3JldA==",
            "AUTH PLAIN",
            "auth",
        ] {
            let r = reply(&mut s, line);
            assert!(r.starts_with("-ERR [SYS/PERM] TLS required"), "{line}: {r}");
        }
        // Nothing was remembered: after STLS, PASS alone is still refused.
        assert!(matches!(s.on_line(b"STLS"), Action::StartTls(_)));
        s.tls_started();
        assert_eq!(reply(&mut s, "PASS secret"), "-ERR give USER first");
    }

    #[test]
    fn stls_only_once_and_only_where_offered() {
        let mut s = session(false, true);
        assert_eq!(status(&s.on_line(b"STLS")), "+OK Begin TLS negotiation");
        s.tls_started();
        assert_eq!(reply(&mut s, "STLS"), "-ERR TLS is already active");
        let caps = capa(&mut s);
        assert!(!caps.contains(&"STLS".to_string()));
        assert!(caps.contains(&"USER".to_string()));
        assert!(caps.contains(&"SASL PLAIN".to_string()));
        // Implicit TLS (995): no STLS.
        let mut s = session(true, false);
        assert_eq!(reply(&mut s, "STLS"), "-ERR TLS is already active");
    }

    #[test]
    fn stls_forgets_a_user_given_before() {
        let mut s = session(false, true);
        let _ = s.on_line(b"STLS");
        s.tls_started();
        assert_eq!(reply(&mut s, "USER a"), "+OK send PASS");
        assert_eq!(reply(&mut s, "STLS"), "-ERR TLS is already active");
    }

    #[test]
    fn auth_plain_with_initial_response_and_continuation() {
        // "\0alice@example.test\0pw"
        let ir = "AGFsaWNlQGV4YW1wbGUudGVzdABwdw==";
        let mut s = session(true, false);
        match s.on_line(format!("AUTH PLAIN {ir}").as_bytes()) {
            Action::Login(r) => {
                assert_eq!(r.username, "alice@example.test");
                assert_eq!(r.password.expose(), "pw");
                assert_eq!(r.mechanism, "PLAIN");
            }
            other => panic!("{other:?}"),
        }
        assert!(status(&s.login_result(LoginOutcome::Failed)).starts_with("-ERR [AUTH]"));

        assert_eq!(reply(&mut s, "AUTH PLAIN"), "+ ");
        assert!(s.expects_secret());
        assert!(matches!(s.on_line(ir.as_bytes()), Action::Login(_)));
        assert!(!s.expects_secret());
        let _ = s.login_result(LoginOutcome::Failed);

        assert_eq!(reply(&mut s, "AUTH PLAIN"), "+ ");
        assert_eq!(reply(&mut s, "*"), "-ERR authentication cancelled");
        assert_eq!(reply(&mut s, "AUTH PLAIN"), "+ ");
        assert_eq!(reply(&mut s, "!!!"), "-ERR invalid SASL PLAIN response");
        assert_eq!(reply(&mut s, "AUTH PLAIN"), "+ ");
        assert!(status(&s.on_line_too_long()).contains("SASL response too long"));
        assert!(!s.expects_secret());
        assert!(reply(&mut s, "AUTH CRAM-MD5").starts_with("-ERR unsupported SASL mechanism"));
        assert!(reply(&mut s, "AUTH PLAIN Ym9iAGFsaWNlAHg=").starts_with("-ERR [AUTH]"));
    }

    #[test]
    fn login_outcomes_map_to_response_codes() {
        for (outcome, code) in [
            (LoginOutcome::Failed, "-ERR [AUTH] "),
            (LoginOutcome::Throttled, "-ERR [SYS/TEMP] "),
            (LoginOutcome::Unavailable, "-ERR [SYS/TEMP] "),
            (LoginOutcome::InUse, "-ERR [IN-USE] "),
            (LoginOutcome::MaildropUnavailable, "-ERR [SYS/TEMP] "),
        ] {
            let mut s = session(true, false);
            let _ = s.on_line(b"USER a");
            assert!(matches!(s.on_line(b"PASS b"), Action::Login(_)));
            let r = status(&s.login_result(outcome.clone()));
            assert!(r.starts_with(code), "{outcome:?}: {r}");
            // Still in AUTHORIZATION, USER must be given again.
            assert_eq!(reply(&mut s, "PASS b"), "-ERR give USER first");
            assert!(s.maildrop().is_none());
        }
    }

    /// `AUTH` alone lists the mechanisms once TLS is up (the RFC 1734 convention
    /// clients without CAPA use); the session stays in AUTHORIZATION.
    #[test]
    fn auth_without_mechanism_lists_plain() {
        let mut s = session(false, true);
        assert!(matches!(s.on_line(b"STLS"), Action::StartTls(_)));
        s.tls_started();
        match s.on_line(b"AUTH") {
            Action::Reply(r) => {
                assert_eq!(r.status(), "+OK SASL mechanisms follow");
                assert_eq!(r.lines().unwrap(), ["PLAIN".to_string()]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(reply(&mut s, "AUTH PLAIN"), "+ ");
    }

    #[test]
    fn commands_in_the_wrong_state() {
        let mut s = session(true, false);
        for l in [
            "STAT", "LIST", "RETR 1", "DELE 1", "NOOP", "RSET", "TOP 1 1", "UIDL",
        ] {
            let r = reply(&mut s, l);
            assert!(r.contains("only valid after login"), "{l}: {r}");
        }
        let mut s = logged_in(&[10]);
        assert_eq!(reply(&mut s, "USER a"), "-ERR already logged in");
        assert_eq!(reply(&mut s, "PASS a"), "-ERR already logged in");
        assert_eq!(reply(&mut s, "AUTH PLAIN"), "-ERR already logged in");
        assert_eq!(reply(&mut s, "AUTH"), "-ERR already logged in");
        assert_eq!(
            reply(&mut s, "STLS"),
            "-ERR STLS is only valid before login"
        );
    }

    #[test]
    fn bad_input_gets_a_reason() {
        let mut s = session(true, false);
        assert_eq!(reply(&mut s, "XYZZY"), "-ERR unknown command");
        assert_eq!(reply(&mut s, ""), "-ERR empty command");
        assert_eq!(
            status(&s.on_line(b"NOOP\0")),
            "-ERR NUL bytes are not allowed in commands"
        );
        assert!(status(&s.on_line_too_long()).starts_with("-ERR line too long"));
        let mut s = logged_in(&[10]);
        assert_eq!(reply(&mut s, "RETR 2"), "-ERR no such message: 2");
        assert_eq!(reply(&mut s, "RETR 0"), "-ERR no such message: 0");
        assert!(reply(&mut s, "RETR one").starts_with("-ERR RETR: message numbers"));
        assert!(reply(&mut s, "TOP 1").starts_with("-ERR syntax: TOP msg lines"));
    }

    #[test]
    fn too_many_errors_close_the_session_without_update() {
        let mut s = logged_in(&[10]);
        let _ = s.on_line(b"DELE 1");
        for _ in 1..MAX_ERRORS {
            assert!(matches!(s.on_line(b"BOGUS"), Action::Reply(_)));
        }
        let a = s.on_line(b"BOGUS");
        assert!(matches!(a, Action::Close(_)), "{a:?}");
        assert!(status(&a).contains("too many errors"));
    }

    #[test]
    fn transaction_stat_list_uidl_retr_top() {
        let mut s = logged_in(&[100, 200, 300]);
        assert_eq!(reply(&mut s, "STAT"), "+OK 3 600");
        match s.on_line(b"LIST") {
            Action::Reply(r) => {
                assert_eq!(r.status(), "+OK 3 messages (600 octets)");
                assert_eq!(r.lines().unwrap(), ["1 100", "2 200", "3 300"]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(reply(&mut s, "LIST 2"), "+OK 2 200");
        match s.on_line(b"UIDL") {
            Action::Reply(r) => {
                assert_eq!(r.lines().unwrap(), ["1 1234.10", "2 1234.12", "3 1234.14"]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(reply(&mut s, "UIDL 3"), "+OK 3 1234.14");
        match s.on_line(b"RETR 2") {
            Action::Retrieve {
                reply,
                number,
                blob,
                body_lines,
            } => {
                assert_eq!(reply.status(), "+OK 200 octets");
                assert_eq!((number, blob, body_lines), (2, BlobId(101), None));
            }
            other => panic!("{other:?}"),
        }
        match s.on_line(b"TOP 3 5") {
            Action::Retrieve {
                blob, body_lines, ..
            } => assert_eq!((blob, body_lines), (BlobId(102), Some(5))),
            other => panic!("{other:?}"),
        }
        assert_eq!(reply(&mut s, "NOOP"), "+OK");
        // QUIT: only RETR (not TOP) marks as seen; nothing deleted.
        assert_eq!(
            s.on_line(b"QUIT"),
            Action::Update {
                mailbox: MailboxId(7),
                delete: vec![],
                seen: vec![12]
            }
        );
        let a = s.update_result(Ok(0));
        assert!(matches!(a, Action::Close(_)));
        assert!(status(&a).contains("signing off (0 messages deleted)"));
    }

    #[test]
    fn dele_rset_and_quit_update() {
        let mut s = logged_in(&[100, 200, 300]);
        assert_eq!(reply(&mut s, "DELE 1"), "+OK message 1 deleted");
        assert_eq!(
            reply(&mut s, "DELE 1"),
            "-ERR message 1 is marked as deleted"
        );
        assert_eq!(
            reply(&mut s, "RETR 1"),
            "-ERR message 1 is marked as deleted"
        );
        assert_eq!(
            reply(&mut s, "LIST 1"),
            "-ERR message 1 is marked as deleted"
        );
        assert_eq!(reply(&mut s, "STAT"), "+OK 2 500");
        assert_eq!(
            reply(&mut s, "RSET"),
            "+OK maildrop has 3 messages (600 octets)"
        );
        assert_eq!(reply(&mut s, "DELE 3"), "+OK message 3 deleted");
        assert_eq!(reply(&mut s, "DELE 2"), "+OK message 2 deleted");
        match s.on_line(b"LIST") {
            Action::Reply(r) => assert_eq!(r.lines().unwrap(), ["1 100"]),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            s.on_line(b"QUIT"),
            Action::Update {
                mailbox: MailboxId(7),
                delete: vec![12, 14],
                seen: vec![]
            }
        );
        assert_eq!(
            status(&s.update_result(Err(()))),
            "-ERR [SYS/TEMP] some deleted messages not removed"
        );
    }

    #[test]
    fn quit_before_login_just_closes() {
        let mut s = session(false, true);
        let a = s.on_line(b"QUIT");
        assert!(matches!(a, Action::Close(_)));
        assert!(status(&a).starts_with("+OK"));
    }
}

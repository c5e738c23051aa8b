//! POP3 command lines: RFC 1939 §3 (a keyword, then arguments separated by spaces)
//! with the lengths of RFC 2449 §4.
//!
//! Hand-written on purpose: POP3 has fifteen verbs with at most two arguments, and no
//! maintained Rust crate parses the server side of it (the mail crates we use cover
//! SMTP and IMAP). The parser is strict and bounded: the caller reads at most
//! `MAX_COMMAND_LINE` octets, nothing here allocates more than the line, and every
//! rejection carries a reason for the `-ERR` reply.

use bulwark_auth::Secret;

/// RFC 2449 §4: a command line is at most 255 octets including its CRLF.
pub const MAX_COMMAND_LINE: usize = 255;
/// A SASL client response line (RFC 5034 §4 leaves its length to the mechanism): the
/// one bound of every protocol, `bulwark_auth::sasl::MAX_SASL_LINE`.
pub const MAX_SASL_LINE: usize = bulwark_auth::sasl::MAX_SASL_LINE;
/// RFC 2449 §4: a response's first line is at most 512 octets including its CRLF.
pub const MAX_REPLY_LINE: usize = 512;

/// The verbs we know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// RFC 2449 §5: list the capabilities.
    Capa,
    /// RFC 2595 §4: start TLS on this connection.
    Stls,
    /// RFC 1939 §7: name the maildrop (first half of USER/PASS).
    User,
    /// RFC 1939 §7: the password for the `USER` name.
    Pass,
    /// RFC 1939 §7: digest login; recognised but not offered.
    Apop,
    /// RFC 5034 §4: SASL authentication.
    Auth,
    /// RFC 1939 §5/§6: end the session (and enter UPDATE when logged in).
    Quit,
    /// RFC 1939 §5: count and size of the maildrop.
    Stat,
    /// RFC 1939 §5: scan listing of one or all messages.
    List,
    /// RFC 1939 §5: retrieve a whole message.
    Retr,
    /// RFC 1939 §5: mark a message as deleted.
    Dele,
    /// RFC 1939 §5: do nothing, answer `+OK`.
    Noop,
    /// RFC 1939 §5: unmark every message marked as deleted.
    Rset,
    /// RFC 1939 §7: the header and the first lines of a message.
    Top,
    /// RFC 1939 §7: unique-id listing of one or all messages.
    Uidl,
}

impl Verb {
    const ALL: [Verb; 15] = [
        Verb::Capa,
        Verb::Stls,
        Verb::User,
        Verb::Pass,
        Verb::Apop,
        Verb::Auth,
        Verb::Quit,
        Verb::Stat,
        Verb::List,
        Verb::Retr,
        Verb::Dele,
        Verb::Noop,
        Verb::Rset,
        Verb::Top,
        Verb::Uidl,
    ];

    /// The keyword as it appears on the wire and in `-ERR` reasons (upper case).
    pub fn name(self) -> &'static str {
        match self {
            Verb::Capa => "CAPA",
            Verb::Stls => "STLS",
            Verb::User => "USER",
            Verb::Pass => "PASS",
            Verb::Apop => "APOP",
            Verb::Auth => "AUTH",
            Verb::Quit => "QUIT",
            Verb::Stat => "STAT",
            Verb::List => "LIST",
            Verb::Retr => "RETR",
            Verb::Dele => "DELE",
            Verb::Noop => "NOOP",
            Verb::Rset => "RSET",
            Verb::Top => "TOP",
            Verb::Uidl => "UIDL",
        }
    }

    /// Keywords are case-insensitive (RFC 1939 §3).
    fn from_keyword(k: &[u8]) -> Option<Verb> {
        Verb::ALL
            .into_iter()
            .find(|v| v.name().as_bytes().eq_ignore_ascii_case(k))
    }

    /// Commands that carry a user name or a secret: refused before TLS (RFC 2595 §4,
    /// DATA-PATHS rule 1) whatever their arguments.
    pub fn carries_credentials(self) -> bool {
        matches!(self, Verb::User | Verb::Pass | Verb::Apop | Verb::Auth)
    }
}

/// A parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `CAPA` (RFC 2449 §5).
    Capa,
    /// `STLS` (RFC 2595 §4).
    Stls,
    /// `USER name`: the maildrop name, as the client sent it.
    User(String),
    /// `PASS secret`: the rest of the line, kept out of logs.
    Pass(Secret),
    /// `APOP`, whatever its arguments: refused (APOP is not offered).
    Apop,
    /// RFC 5034 §4: `AUTH mechanism [initial-response]`.
    Auth {
        /// The SASL mechanism name, upper-cased (mechanism names are case-insensitive).
        mechanism: String,
        /// The base64 initial response, if the client sent one on the command line
        /// (`=` for an empty one, RFC 5034 §4).
        initial_response: Option<String>,
    },
    /// `AUTH` without a mechanism: the list of mechanisms (the pre-CAPA convention
    /// of RFC 1734 clients such as Outlook; RFC 5034 clients use CAPA's SASL line).
    AuthMechanisms,
    /// `QUIT` (RFC 1939 §5/§6).
    Quit,
    /// `STAT` (RFC 1939 §5).
    Stat,
    /// `LIST [msg]`: one message number (1-based) or all.
    List(Option<u32>),
    /// `RETR msg`: the message number (1-based).
    Retr(u32),
    /// `DELE msg`: the message number (1-based).
    Dele(u32),
    /// `NOOP` (RFC 1939 §5).
    Noop,
    /// `RSET` (RFC 1939 §5).
    Rset,
    /// RFC 1939 §7: `TOP msg n`: the message number, then the body line count.
    Top(u32, u32),
    /// `UIDL [msg]`: one message number (1-based) or all.
    Uidl(Option<u32>),
}

/// Why a line is not a command we can run. Each maps to one `-ERR` reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// An empty line (or only spaces).
    Empty,
    /// The line contains a NUL octet.
    Nul,
    /// The keyword is not a verb we know.
    Unknown,
    /// Wrong number or form of arguments; the text says what was expected.
    Syntax(Verb, &'static str),
    /// A message number or line count that is not a decimal number.
    BadNumber(Verb),
}

impl ParseError {
    /// The text of the `-ERR` reply for this error.
    pub fn reason(&self) -> String {
        match self {
            ParseError::Empty => "empty command".into(),
            ParseError::Nul => "NUL bytes are not allowed in commands".into(),
            ParseError::Unknown => "unknown command".into(),
            ParseError::Syntax(v, usage) => format!("syntax: {} {usage}", v.name()),
            ParseError::BadNumber(v) => format!(
                "{}: message numbers and line counts are decimal numbers",
                v.name()
            ),
        }
    }
}

/// The verb of a line and the rest after it (without the separating space).
pub fn split_verb(line: &[u8]) -> Result<(Verb, &[u8]), ParseError> {
    if line.contains(&0) {
        return Err(ParseError::Nul);
    }
    let (keyword, rest) = match line.iter().position(|b| *b == b' ') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, &line[line.len()..]),
    };
    if keyword.is_empty() {
        return Err(if line.iter().all(|b| *b == b' ') {
            ParseError::Empty
        } else {
            ParseError::Unknown
        });
    }
    let verb = Verb::from_keyword(keyword).ok_or(ParseError::Unknown)?;
    Ok((verb, rest))
}

/// Parses a whole line.
pub fn parse(line: &[u8]) -> Result<Command, ParseError> {
    let (verb, rest) = split_verb(line)?;
    parse_args(verb, rest)
}

/// Space-separated arguments (runs of spaces tolerated, trailing spaces ignored).
fn words(rest: &[u8]) -> impl Iterator<Item = &[u8]> {
    rest.split(|b| *b == b' ').filter(|w| !w.is_empty())
}

/// A printable argument (no control characters); UTF-8 allowed for user names.
fn text_arg(verb: Verb, w: &[u8], usage: &'static str) -> Result<String, ParseError> {
    let s = std::str::from_utf8(w).map_err(|_| ParseError::Syntax(verb, usage))?;
    if s.chars().any(char::is_control) {
        return Err(ParseError::Syntax(verb, usage));
    }
    Ok(s.to_string())
}

fn number(verb: Verb, w: &[u8]) -> Result<u32, ParseError> {
    if w.is_empty() || w.len() > 10 || !w.iter().all(u8::is_ascii_digit) {
        return Err(ParseError::BadNumber(verb));
    }
    std::str::from_utf8(w)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(ParseError::BadNumber(verb))
}

/// Parses the arguments of `verb`.
pub fn parse_args(verb: Verb, rest: &[u8]) -> Result<Command, ParseError> {
    let args: Vec<&[u8]> = if verb == Verb::Pass {
        Vec::new()
    } else {
        words(rest).take(3).collect()
    };
    let none = |c: Command| {
        if args.is_empty() {
            Ok(c)
        } else {
            Err(ParseError::Syntax(verb, "takes no arguments"))
        }
    };
    match verb {
        Verb::Capa => none(Command::Capa),
        Verb::Stls => none(Command::Stls),
        Verb::Quit => none(Command::Quit),
        Verb::Stat => none(Command::Stat),
        Verb::Noop => none(Command::Noop),
        Verb::Rset => none(Command::Rset),
        // APOP is refused whatever its arguments (see the session).
        Verb::Apop => Ok(Command::Apop),
        Verb::User => match args.as_slice() {
            [name] => Ok(Command::User(text_arg(verb, name, "name")?)),
            _ => Err(ParseError::Syntax(verb, "name")),
        },
        // RFC 1939 §7: PASS has exactly one argument, so spaces in it are part of the
        // password: everything after the first space is taken as it is.
        Verb::Pass => {
            let usage = "password";
            if rest.is_empty() {
                return Err(ParseError::Syntax(verb, usage));
            }
            let s = std::str::from_utf8(rest).map_err(|_| ParseError::Syntax(verb, usage))?;
            Ok(Command::Pass(Secret::new(s.to_string())))
        }
        Verb::Auth => {
            let usage = "mechanism [initial-response]";
            match args.as_slice() {
                [] => Ok(Command::AuthMechanisms),
                [m] => Ok(Command::Auth {
                    mechanism: text_arg(verb, m, usage)?.to_ascii_uppercase(),
                    initial_response: None,
                }),
                [m, ir] => Ok(Command::Auth {
                    mechanism: text_arg(verb, m, usage)?.to_ascii_uppercase(),
                    initial_response: Some(text_arg(verb, ir, usage)?),
                }),
                _ => Err(ParseError::Syntax(verb, usage)),
            }
        }
        Verb::List | Verb::Uidl => {
            let n = match args.as_slice() {
                [] => None,
                [n] => Some(number(verb, n)?),
                _ => return Err(ParseError::Syntax(verb, "[msg]")),
            };
            Ok(if verb == Verb::List {
                Command::List(n)
            } else {
                Command::Uidl(n)
            })
        }
        Verb::Retr | Verb::Dele => match args.as_slice() {
            [n] => {
                let n = number(verb, n)?;
                Ok(if verb == Verb::Retr {
                    Command::Retr(n)
                } else {
                    Command::Dele(n)
                })
            }
            _ => Err(ParseError::Syntax(verb, "msg")),
        },
        Verb::Top => match args.as_slice() {
            [n, lines] => Ok(Command::Top(number(verb, n)?, number(verb, lines)?)),
            _ => Err(ParseError::Syntax(verb, "msg lines")),
        },
    }
}

/// A bounded label for metrics: the verb's name or "unknown".
pub fn metric_label(line: &[u8]) -> &'static str {
    match split_verb(line) {
        Ok((v, _)) => v.name(),
        Err(_) => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_are_case_insensitive_and_take_their_arguments() {
        assert_eq!(parse(b"capa"), Ok(Command::Capa));
        assert_eq!(parse(b"StAt"), Ok(Command::Stat));
        assert_eq!(parse(b"STAT "), Ok(Command::Stat));
        assert_eq!(parse(b"LIST"), Ok(Command::List(None)));
        assert_eq!(parse(b"list 7"), Ok(Command::List(Some(7))));
        assert_eq!(parse(b"UIDL 12"), Ok(Command::Uidl(Some(12))));
        assert_eq!(parse(b"RETR 1"), Ok(Command::Retr(1)));
        assert_eq!(parse(b"DELE  3"), Ok(Command::Dele(3)));
        assert_eq!(parse(b"TOP 2 0"), Ok(Command::Top(2, 0)));
        assert_eq!(
            parse(b"USER alice@example.test"),
            Ok(Command::User("alice@example.test".into()))
        );
        assert_eq!(
            parse(b"AUTH plain AGEAYg=="),
            Ok(Command::Auth {
                mechanism: "PLAIN".into(),
                initial_response: Some("AGEAYg==".into())
            })
        );
        assert_eq!(parse(b"AUTH"), Ok(Command::AuthMechanisms));
        assert_eq!(parse(b"auth "), Ok(Command::AuthMechanisms));
        assert_eq!(
            parse(b"AUTH PLAIN"),
            Ok(Command::Auth {
                mechanism: "PLAIN".into(),
                initial_response: None
            })
        );
    }

    #[test]
    fn pass_keeps_spaces() {
        let Ok(Command::Pass(p)) = parse(b"PASS  two words ") else {
            panic!()
        };
        assert_eq!(p.expose(), " two words ");
        assert_eq!(
            parse(b"PASS"),
            Err(ParseError::Syntax(Verb::Pass, "password"))
        );
    }

    #[test]
    fn rejects_bad_lines() {
        assert_eq!(parse(b""), Err(ParseError::Empty));
        assert_eq!(parse(b"   "), Err(ParseError::Empty));
        assert_eq!(parse(b" STAT"), Err(ParseError::Unknown));
        assert_eq!(parse(b"STAT\0"), Err(ParseError::Nul));
        assert_eq!(parse(b"US\0ER x"), Err(ParseError::Nul));
        assert_eq!(parse(b"XYZZY"), Err(ParseError::Unknown));
        assert_eq!(parse(b"STATS"), Err(ParseError::Unknown));
        assert_eq!(parse("ÜSER a".as_bytes()), Err(ParseError::Unknown));
        assert!(matches!(parse(b"STAT 1"), Err(ParseError::Syntax(..))));
        assert!(matches!(parse(b"RETR"), Err(ParseError::Syntax(..))));
        assert!(matches!(parse(b"RETR 1 2"), Err(ParseError::Syntax(..))));
        assert!(matches!(parse(b"TOP 1"), Err(ParseError::Syntax(..))));
        assert!(matches!(parse(b"USER a b"), Err(ParseError::Syntax(..))));
        assert!(matches!(parse(b"USER a\x01b"), Err(ParseError::Syntax(..))));
        assert!(matches!(parse(b"USER \xff"), Err(ParseError::Syntax(..))));
        assert_eq!(parse(b"RETR x"), Err(ParseError::BadNumber(Verb::Retr)));
        assert_eq!(parse(b"RETR -1"), Err(ParseError::BadNumber(Verb::Retr)));
        assert_eq!(parse(b"RETR +1"), Err(ParseError::BadNumber(Verb::Retr)));
        assert_eq!(
            parse(b"RETR 99999999999"),
            Err(ParseError::BadNumber(Verb::Retr))
        );
        assert_eq!(
            parse(b"RETR 4294967296"),
            Err(ParseError::BadNumber(Verb::Retr))
        );
        assert_eq!(parse(b"TOP 1 x"), Err(ParseError::BadNumber(Verb::Top)));
    }

    #[test]
    fn credential_verbs_are_known_before_their_arguments() {
        for l in [
            &b"USER"[..],
            b"PASS",
            b"apop a b",
            b"AUTH",
            b"AUTH PLAIN x y z",
        ] {
            let (v, _) = split_verb(l).unwrap();
            assert!(v.carries_credentials(), "{l:?}");
        }
        assert!(!split_verb(b"STLS").unwrap().0.carries_credentials());
    }

    #[test]
    fn metric_labels_are_bounded() {
        assert_eq!(metric_label(b"retr 1"), "RETR");
        assert_eq!(metric_label(b"anything else"), "unknown");
    }
}

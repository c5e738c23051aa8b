//! Response codes (RFC 9051 §7.1, RFC 5530, RFC 4315, RFC 7162, RFC 3516) and the
//! text of status responses, rendered in one place.
//!
//! Commands say which code they answer with as a value; only `Display` here turns it
//! into the `[CODE args]` of the wire, and a caller that needs to react to a code
//! (APPEND/COPY turning `NONEXISTENT` into `TRYCREATE`) compares values, not text.

use std::fmt;

/// One response code we send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ResponseCode {
    /// `[ALREADYEXISTS]`: the mailbox exists (RFC 5530 §3).
    AlreadyExists,
    /// `[APPENDUID uidvalidity uids]` (RFC 4315 §3); `uids` is a sequence set.
    AppendUid {
        /// The destination mailbox's UIDVALIDITY.
        uidvalidity: u32,
        /// The UIDs given to the appended messages, as a compressed set.
        uids: String,
    },
    /// `[AUTHENTICATIONFAILED]` (RFC 5530 §3).
    AuthenticationFailed,
    /// `[BADCHARSET (…)]` with the charsets we support (RFC 9051 §7.1).
    BadCharset,
    /// `[CANNOT]`: the operation violates a server rule (RFC 5530 §3).
    Cannot,
    /// `[CAPABILITY …]` (RFC 9051 §7.1); the list as `Session::capabilities` gives it.
    Capability(String),
    /// `[CLOSED]`: the previous mailbox was closed (RFC 7162 §3.2.11).
    Closed,
    /// `[COPYUID uidvalidity source destination]` (RFC 4315 §3).
    CopyUid {
        /// The destination mailbox's UIDVALIDITY.
        uidvalidity: u32,
        /// The source UIDs, as a set in the same order as `dst`.
        src: String,
        /// The destination UIDs, as a set in the same order as `src`.
        dst: String,
    },
    /// `[EXPUNGEISSUED]`: some messages were expunged meanwhile (RFC 5530 §3).
    ExpungeIssued,
    /// `[HIGHESTMODSEQ n]` (RFC 7162 §3.1.2.1).
    HighestModSeq(u64),
    /// `[LIMIT]`: a server limit was reached (RFC 5530 §3).
    Limit,
    /// `[MODIFIED set]`: conditional STORE failed for these (RFC 7162 §3.1.3).
    Modified(String),
    /// `[NONEXISTENT]`: no such mailbox (RFC 5530 §3).
    Nonexistent,
    /// `[PERMANENTFLAGS (…)]` (RFC 9051 §7.1); the flags as they are written.
    PermanentFlags(Vec<String>),
    /// `[PRIVACYREQUIRED]`: not without TLS (RFC 5530 §3).
    PrivacyRequired,
    /// `[READ-ONLY]` (RFC 9051 §7.1).
    ReadOnly,
    /// `[READ-WRITE]` (RFC 9051 §7.1).
    ReadWrite,
    /// `[TOOBIG]`: too much data (RFC 4469 §4.2, RFC 7889).
    TooBig,
    /// `[TRYCREATE]`: create the mailbox first (RFC 9051 §7.1).
    TryCreate,
    /// `[UIDNEXT n]` (RFC 9051 §7.1).
    UidNext(u32),
    /// `[UIDVALIDITY n]` (RFC 9051 §7.1).
    UidValidity(u32),
    /// `[UNAVAILABLE]`: temporary failure (RFC 5530 §3).
    Unavailable,
    /// `[UNKNOWN-CTE]`: a part's encoding cannot be undone (RFC 3516 §4.2).
    UnknownCte,
    /// `[UNSEEN n]`: the first unseen message (RFC 3501 §7.1).
    Unseen(usize),
}

/// The charsets SEARCH/SORT/THREAD accept, as `[BADCHARSET]` lists them.
pub(crate) const SUPPORTED_CHARSETS: &str = "UTF-8 US-ASCII";

impl fmt::Display for ResponseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ResponseCode as R;
        match self {
            R::AlreadyExists => f.write_str("[ALREADYEXISTS]"),
            R::AppendUid { uidvalidity, uids } => write!(f, "[APPENDUID {uidvalidity} {uids}]"),
            R::AuthenticationFailed => f.write_str("[AUTHENTICATIONFAILED]"),
            R::BadCharset => write!(f, "[BADCHARSET ({SUPPORTED_CHARSETS})]"),
            R::Cannot => f.write_str("[CANNOT]"),
            R::Capability(c) => write!(f, "[CAPABILITY {c}]"),
            R::Closed => f.write_str("[CLOSED]"),
            R::CopyUid {
                uidvalidity,
                src,
                dst,
            } => write!(f, "[COPYUID {uidvalidity} {src} {dst}]"),
            R::ExpungeIssued => f.write_str("[EXPUNGEISSUED]"),
            R::HighestModSeq(m) => write!(f, "[HIGHESTMODSEQ {m}]"),
            R::Limit => f.write_str("[LIMIT]"),
            R::Modified(set) => write!(f, "[MODIFIED {set}]"),
            R::Nonexistent => f.write_str("[NONEXISTENT]"),
            R::PermanentFlags(flags) => write!(f, "[PERMANENTFLAGS ({})]", flags.join(" ")),
            R::PrivacyRequired => f.write_str("[PRIVACYREQUIRED]"),
            R::ReadOnly => f.write_str("[READ-ONLY]"),
            R::ReadWrite => f.write_str("[READ-WRITE]"),
            R::TooBig => f.write_str("[TOOBIG]"),
            R::TryCreate => f.write_str("[TRYCREATE]"),
            R::UidNext(n) => write!(f, "[UIDNEXT {n}]"),
            R::UidValidity(n) => write!(f, "[UIDVALIDITY {n}]"),
            R::Unavailable => f.write_str("[UNAVAILABLE]"),
            R::UnknownCte => f.write_str("[UNKNOWN-CTE]"),
            R::Unseen(n) => write!(f, "[UNSEEN {n}]"),
        }
    }
}

impl ResponseCode {
    /// This code followed by human-readable text: the body of a status response.
    pub(crate) fn text(self, text: impl Into<String>) -> Reply {
        Reply {
            code: Some(self),
            text: text.into(),
        }
    }

    /// An untagged `* OK [CODE] text` line (without CRLF).
    pub(crate) fn untagged_ok(self, text: &str) -> String {
        format!("* OK {} {text}", self)
    }
}

/// The part of a status response after `OK`/`NO`/`BAD`: an optional code, then text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    /// The response code, if any.
    pub code: Option<ResponseCode>,
    /// Human-readable text (RFC 9051 §7.1 `text`).
    pub text: String,
}

impl Reply {
    /// Whether this reply carries `code`.
    pub(crate) fn has(&self, code: &ResponseCode) -> bool {
        self.code.as_ref() == Some(code)
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.code {
            Some(c) => write!(f, "{c} {}", self.text),
            None => f.write_str(&self.text),
        }
    }
}

impl From<String> for Reply {
    fn from(text: String) -> Reply {
        Reply { code: None, text }
    }
}

impl From<&str> for Reply {
    fn from(text: &str) -> Reply {
        Reply {
            code: None,
            text: text.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_render_as_on_the_wire() {
        let cases = [
            (ResponseCode::Nonexistent, "[NONEXISTENT]"),
            (ResponseCode::ReadOnly, "[READ-ONLY]"),
            (ResponseCode::UnknownCte, "[UNKNOWN-CTE]"),
            (ResponseCode::BadCharset, "[BADCHARSET (UTF-8 US-ASCII)]"),
            (ResponseCode::HighestModSeq(7), "[HIGHESTMODSEQ 7]"),
            (ResponseCode::Unseen(3), "[UNSEEN 3]"),
            (ResponseCode::Modified("1:3,5".into()), "[MODIFIED 1:3,5]"),
            (
                ResponseCode::AppendUid {
                    uidvalidity: 9,
                    uids: "4:5".into(),
                },
                "[APPENDUID 9 4:5]",
            ),
            (
                ResponseCode::CopyUid {
                    uidvalidity: 9,
                    src: "1,3".into(),
                    dst: "7:8".into(),
                },
                "[COPYUID 9 1,3 7:8]",
            ),
            (
                ResponseCode::PermanentFlags(Vec::new()),
                "[PERMANENTFLAGS ()]",
            ),
            (
                ResponseCode::PermanentFlags(vec!["\\Seen".into(), "\\*".into()]),
                "[PERMANENTFLAGS (\\Seen \\*)]",
            ),
        ];
        for (code, wire) in cases {
            assert_eq!(code.to_string(), wire);
        }
    }

    #[test]
    fn reply_text_follows_the_code_or_stands_alone() {
        assert_eq!(
            ResponseCode::TryCreate.text("No such mailbox").to_string(),
            "[TRYCREATE] No such mailbox"
        );
        assert_eq!(Reply::from("NOOP completed").to_string(), "NOOP completed");
        assert_eq!(Reply::from("").to_string(), "");
        assert_eq!(
            ResponseCode::UidNext(4).untagged_ok("Predicted next UID"),
            "* OK [UIDNEXT 4] Predicted next UID"
        );
    }

    #[test]
    fn has_compares_the_code_not_the_text() {
        let r = ResponseCode::Nonexistent.text("[TRYCREATE] look-alike");
        assert!(r.has(&ResponseCode::Nonexistent));
        assert!(!r.has(&ResponseCode::TryCreate));
        assert!(!Reply::from("[NONEXISTENT] in text").has(&ResponseCode::Nonexistent));
    }
}

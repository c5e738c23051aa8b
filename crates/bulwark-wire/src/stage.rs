//! Where in an SMTP session a reply was given (RFC 5321 §3): the labels appear in
//! logs, notices (DSN human part) and `bulwark queue` output, so they never change.

use std::fmt;

/// One step of an SMTP session, as the client sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// The server's greeting after the connection (RFC 5321 §3.1).
    Greeting,
    /// EHLO (RFC 5321 §4.1.1.1).
    Ehlo,
    /// HELO, the fallback when EHLO is not known.
    Helo,
    /// STARTTLS (RFC 3207).
    StartTls,
    /// AUTH (RFC 4954).
    Auth,
    /// MAIL FROM (RFC 5321 §4.1.1.2).
    MailFrom,
    /// RCPT TO (RFC 5321 §4.1.1.3).
    RcptTo,
    /// The DATA command itself, answered with 354 or a refusal.
    Data,
    /// The end-of-data marker: the reply that decides delivery (RFC 5321 §4.1.1.4).
    EndOfData,
    /// BDAT (RFC 3030).
    Bdat,
    /// QUIT (RFC 5321 §4.1.1.10).
    Quit,
}

impl Stage {
    /// The label of the stage in logs, notices and `bulwark queue` output.
    pub const fn as_str(self) -> &'static str {
        match self {
            Stage::Greeting => "connection (greeting)",
            Stage::Ehlo => "EHLO",
            Stage::Helo => "HELO",
            Stage::StartTls => "STARTTLS",
            Stage::Auth => "AUTH",
            Stage::MailFrom => "MAIL FROM",
            Stage::RcptTo => "RCPT TO",
            Stage::Data => "DATA",
            Stage::EndOfData => "end of data",
            Stage::Bdat => "BDAT",
            Stage::Quit => "QUIT",
        }
    }

    /// True for the reply that means the server took the message (RFC 5321 §4.1.1.4:
    /// a 2xx here, and only here, is a delivery). A BDAT chunk's 250 is not: only the
    /// one to `BDAT … LAST`, which a caller names [`Stage::EndOfData`].
    pub const fn ends_message(self) -> bool {
        matches!(self, Stage::EndOfData)
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_the_ones_in_logs_and_notices() {
        assert_eq!(Stage::Greeting.as_str(), "connection (greeting)");
        assert_eq!(Stage::MailFrom.to_string(), "MAIL FROM");
        assert_eq!(Stage::RcptTo.as_str(), "RCPT TO");
        assert_eq!(Stage::EndOfData.as_str(), "end of data");
        assert_eq!(
            format!("(in reply to {})", Stage::Data),
            "(in reply to DATA)"
        );
        assert!(Stage::EndOfData.ends_message());
        assert!(!Stage::Data.ends_message() && !Stage::Bdat.ends_message());
    }
}

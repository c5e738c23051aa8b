//! DATA (RFC 5321 §4.1.1.4) with dot-unstuffing (§4.5.2), and the octet rules that
//! defeat SMTP smuggling (CVE-2023-51766 and relatives).
//!
//! The end of data is `CRLF . CRLF` and nothing else: a `.` line counts only if it
//! ends in CRLF *and* the line before it ended in CRLF. A bare LF or a bare CR anywhere
//! in the message is not a line end (§2.3.8); such a message is read to its real end
//! and refused as a whole, so no other server's different idea of "end of data" can
//! smuggle a second message through us, and we never store one that could smuggle
//! through the next hop. smtp-proto's `DataReceiver` is not used because it accepts
//! `LF . LF` style endings; this reader works on the lines `Connection::read_line`
//! already splits at LF, which tells whether a CR preceded it.

use bulwark_net::LineEnding;

use crate::budget::Reservation;
use crate::reply::{Enhanced, Reply, SmtpError};
use crate::session::{Session, State, Transaction};

/// What was seen in the message octets.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct OctetFlags {
    /// An LF not preceded by CR (RFC 5321 §2.3.8): not a line end, refused.
    pub bare_lf: bool,
    /// A CR not followed by LF (RFC 5321 §2.3.8): refused.
    pub bare_cr: bool,
    /// A NUL octet: refused.
    pub nul: bool,
    /// Octets above 127. Accepted without BODY=8BITMIME too (counted as undeclared):
    /// the queue converts the body to 7-bit for a next hop without 8BITMIME.
    pub eight_bit: bool,
}

impl OctetFlags {
    /// Scans a whole message (BDAT), where line ends are ordinary octets.
    pub fn scan(data: &[u8]) -> OctetFlags {
        let mut f = OctetFlags::default();
        let mut prev = 0u8;
        for (i, &b) in data.iter().enumerate() {
            match b {
                b'\n' if prev != b'\r' => f.bare_lf = true,
                b'\r' if data.get(i + 1) != Some(&b'\n') => f.bare_cr = true,
                0 => f.nul = true,
                0x80.. => f.eight_bit = true,
                _ => {}
            }
            prev = b;
        }
        f
    }

    /// Scans one line's content (no line end); CR inside it is bare.
    fn scan_line(&mut self, line: &[u8]) {
        for &b in line {
            match b {
                b'\r' => self.bare_cr = true,
                0 => self.nul = true,
                0x80.. => self.eight_bit = true,
                _ => {}
            }
        }
    }

    /// The refusal for these octets, if any. 8-bit octets are not refused: RFC 6152 §3
    /// lets a server take undeclared 8-bit data (Postfix, Exchange and Stalwart do,
    /// and msmtp or curl cannot declare it), and the queue converts what goes to a
    /// next hop without 8BITMIME (`bulwark_queue::downgrade`).
    pub fn refusal(&self) -> Option<SmtpError> {
        if self.bare_lf || self.bare_cr {
            return Some(SmtpError::new(
                554,
                Enhanced::new(5, 6, 0),
                if self.bare_lf { "bare_lf" } else { "bare_cr" },
                "Message refused: bare LF or CR; lines must end with CRLF (RFC 5321 section 2.3.8)",
            ));
        }
        if self.nul {
            return Some(SmtpError::new(
                554,
                Enhanced::new(5, 6, 0),
                "nul",
                "Message refused: NUL octets are not allowed",
            ));
        }
        None
    }

    /// 8-bit octets arrived without BODY=8BITMIME or SMTPUTF8: counted (the catalogue
    /// in bulwark-observe), then treated as 8BITMIME.
    pub(crate) fn count_undeclared(&self, declared: bool, listener: &'static str) {
        if self.eight_bit && !declared {
            metrics::counter!("bulwark_smtp_undeclared_8bit_total", "listener" => listener)
                .increment(1);
        }
    }
}

/// Collects DATA lines into the transaction's body.
#[derive(Debug)]
pub(crate) struct DataReader {
    /// The previous line ended with CRLF (the DATA command's own CRLF counts).
    prev_crlf: bool,
    pub(crate) flags: OctetFlags,
    /// The message grew beyond the size limit; the rest is read and dropped.
    pub(crate) oversize: bool,
    /// The memory budget could not cover the message; the rest is read and dropped.
    pub(crate) no_memory: bool,
    /// A line was longer than `DATA_LINE_MAX`.
    pub(crate) too_long: bool,
}

impl DataReader {
    pub(crate) fn new() -> DataReader {
        DataReader {
            prev_crlf: true,
            flags: OctetFlags::default(),
            oversize: false,
            no_memory: false,
            too_long: false,
        }
    }

    /// Takes one line (without its ending) into `body`, drawing on `budget` as it
    /// grows. Returns true at the end-of-data line.
    pub(crate) fn push_line(
        &mut self,
        line: &[u8],
        ending: LineEnding,
        body: &mut Vec<u8>,
        budget: &mut Reservation,
        max_size: u64,
    ) -> bool {
        let crlf = ending == LineEnding::CrLf;
        if line == b"." && crlf && self.prev_crlf {
            return true;
        }
        if !crlf {
            self.flags.bare_lf = true;
        }
        self.prev_crlf = crlf;
        // RFC 5321 §4.5.2: a leading dot was doubled by the client.
        let content = match line.first() {
            Some(b'.') => &line[1..],
            _ => line,
        };
        self.flags.scan_line(content);
        if self.oversize || self.no_memory {
            return false;
        }
        if (body.len() + content.len() + 2) as u64 > max_size {
            self.oversize = true;
        } else if !budget.make_room(
            body,
            content.len() + 2,
            // A limit beyond the address space is no limit on a 32-bit target.
            usize::try_from(max_size).unwrap_or(usize::MAX),
        ) {
            self.no_memory = true;
        }
        if self.oversize || self.no_memory {
            // Nothing of it will be stored: give the memory back now.
            *body = Vec::new();
            budget.release_all();
            return false;
        }
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
        false
    }

    /// A line longer than the limit was discarded (up to its LF); `crlf` tells whether
    /// it ended in CRLF, so a "." right after it still ends the message.
    pub(crate) fn line_too_long(&mut self, crlf: bool) {
        self.too_long = true;
        if !crlf {
            self.flags.bare_lf = true;
        }
        self.prev_crlf = crlf;
    }
}

impl Session {
    pub(crate) fn data(&mut self) {
        let Some(txn) = &self.txn else {
            return self.fail(SmtpError::bad_sequence("Need MAIL before DATA"));
        };
        if txn.bdat {
            return self.fail(SmtpError::bad_sequence("DATA not allowed after BDAT"));
        }
        if txn.recipients.is_empty() {
            // RFC 2920 §3.1: 554 when no recipient was accepted.
            return self.fail(SmtpError::new(
                554,
                Enhanced::new(5, 5, 1),
                "no_recipients",
                "No valid recipients",
            ));
        }
        // The body grows with the budget as lines arrive; SIZE= (RFC 1870) is only a
        // claim and reserves nothing.
        self.reply(Reply::plain(354, "End data with <CR><LF>.<CR><LF>"));
        self.state = State::Data(DataReader::new());
    }

    /// One line of DATA (without its line ending).
    pub fn data_line(&mut self, line: &[u8], ending: LineEnding) {
        let max = self.settings.max_message_size;
        let done = match (&mut self.state, self.txn.as_mut()) {
            (
                State::Data(reader),
                Some(Transaction {
                    body,
                    reservation: Some(budget),
                    ..
                }),
            ) => reader.push_line(line, ending, body, budget, max),
            _ => return self.fail_internal("DATA line without a transaction"),
        };
        if done {
            let State::Data(reader) = std::mem::replace(&mut self.state, State::Command) else {
                return;
            };
            self.data_complete(reader);
        }
    }

    /// A DATA line longer than `DATA_LINE_MAX` was discarded.
    pub fn data_line_too_long(&mut self, crlf: bool) {
        if let State::Data(reader) = &mut self.state {
            reader.line_too_long(crlf);
        }
    }

    fn data_complete(&mut self, reader: DataReader) {
        let error = if reader.oversize {
            Some(SmtpError::size_exceeded())
        } else if reader.too_long {
            Some(SmtpError::new(
                554,
                Enhanced::new(5, 6, 0),
                "line_too_long",
                "Message refused: a line is too long",
            ))
        } else {
            // A permanent refusal wins over "try again later".
            reader
                .flags
                .refusal()
                .or_else(|| reader.no_memory.then(SmtpError::insufficient_memory))
        };
        match error {
            Some(e) => self.message_refused(e),
            None => {
                let declared = self.txn.as_ref().is_some_and(|t| t.eight_bit || t.utf8);
                reader.flags.count_undeclared(declared, self.listener());
                self.message_received()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget() -> Reservation {
        Reservation::new(crate::budget::InflightBudget::new(1 << 30))
    }

    fn feed(lines: &[(&[u8], LineEnding)]) -> (Option<usize>, DataReader, Vec<u8>) {
        let mut r = DataReader::new();
        let mut body = Vec::new();
        let mut b = budget();
        for (i, (l, e)) in lines.iter().enumerate() {
            if r.push_line(l, *e, &mut body, &mut b, 1 << 20) {
                return (Some(i), r, body);
            }
        }
        (None, r, body)
    }

    use LineEnding::{CrLf, Lf};

    #[test]
    fn ends_only_at_crlf_dot_crlf_and_unstuffs() {
        let (end, r, body) = feed(&[
            (b"Subject: x", CrLf),
            (b"", CrLf),
            (b"..leading dot", CrLf),
            (b".", CrLf),
        ]);
        assert_eq!(end, Some(3));
        assert_eq!(body, b"Subject: x\r\n\r\n.leading dot\r\n");
        assert_eq!(r.flags, OctetFlags::default());
    }

    #[test]
    fn lf_dot_lf_is_not_an_end() {
        // "text\n.\nMAIL FROM..." must not end the message (smuggling).
        let (end, r, _) = feed(&[(b"text", Lf), (b".", Lf), (b"MAIL FROM:<x@y.test>", CrLf)]);
        assert_eq!(end, None);
        assert!(r.flags.bare_lf);
        // Nor "\n.\r\n": the dot line must follow a CRLF.
        let (end, r, _) = feed(&[(b"text", Lf), (b".", CrLf), (b"more", CrLf)]);
        assert_eq!(end, None);
        assert!(r.flags.bare_lf);
    }

    #[test]
    fn cr_dot_cr_is_not_an_end() {
        let (end, r, _) = feed(&[(b"text\r.\rMAIL FROM:<x@y.test>", CrLf), (b"x", CrLf)]);
        assert_eq!(end, None);
        assert!(r.flags.bare_cr);
        assert!(r.flags.refusal().is_some());
    }

    #[test]
    fn size_limit_keeps_reading() {
        let mut r = DataReader::new();
        let mut body = Vec::new();
        let mut b = budget();
        assert!(!r.push_line(&[b'a'; 10], CrLf, &mut body, &mut b, 50));
        assert!(!r.push_line(&[b'a'; 100], CrLf, &mut body, &mut b, 50));
        assert!(r.oversize);
        assert!(body.is_empty() && body.capacity() == 0, "dropped at once");
        assert_eq!(b.held(), 0, "and its budget given back");
        assert!(r.push_line(b".", CrLf, &mut body, &mut b, 50));
    }

    #[test]
    fn budget_exhausted_keeps_reading() {
        let shared = crate::budget::InflightBudget::new(100 * 1024);
        let mut other = Reservation::new(shared.clone());
        assert!(other.cover(60 * 1024));
        let mut r = DataReader::new();
        let mut body = Vec::new();
        let mut b = Reservation::new(shared.clone());
        let line = [b'x'; 998];
        let mut n = 0;
        while !r.no_memory {
            assert!(!r.push_line(&line, CrLf, &mut body, &mut b, 1 << 20));
            n += 1;
            assert!(n < 100, "the budget must run out");
        }
        assert!(body.is_empty());
        assert_eq!(shared.in_use(), 60 * 1024, "only the other share is left");
        assert!(!r.push_line(&line, CrLf, &mut body, &mut b, 1 << 20));
        assert!(r.push_line(b".", CrLf, &mut body, &mut b, 1 << 20));
        assert!(!r.oversize);
    }

    #[test]
    fn scan_whole_messages() {
        assert_eq!(OctetFlags::scan(b"a\r\nb\r\n"), OctetFlags::default());
        assert!(OctetFlags::scan(b"a\nb\r\n").bare_lf);
        assert!(OctetFlags::scan(b"a\rb\r\n").bare_cr);
        assert!(OctetFlags::scan(b"a\r").bare_cr);
        assert!(OctetFlags::scan(b"a\0\r\n").nul);
        let f = OctetFlags::scan("é\r\n".as_bytes());
        assert!(f.eight_bit);
        assert!(f.refusal().is_none(), "8-bit alone is accepted");
    }
}

//! BDAT (CHUNKING, RFC 3030): length-delimited chunks, no dot-stuffing.
//!
//! A chunk is always consumed, even when it is refused (§2: the server must read it
//! to stay in sync with a pipelining client). After a refused chunk the rest of the
//! transaction is refused too, until BDAT LAST, RSET or a new MAIL. The octet rules of
//! DATA apply to the assembled message as well: a bare LF or CR stored here could
//! smuggle a message through the next hop when we relay it with DATA.

use crate::data::OctetFlags;
use crate::reply::{Enhanced, Reply, SmtpError};
use crate::session::{Session, State};

/// A chunk being read.
#[derive(Debug)]
pub(crate) struct Chunk {
    pub size: u64,
    pub last: bool,
    /// `Some`: discard the chunk and answer with this.
    pub error: Option<SmtpError>,
}

impl Session {
    pub(crate) fn bdat(&mut self, size: u64, last: bool) {
        let max = self.settings.max_message_size;
        let error = match self.txn.as_mut() {
            None => Some(SmtpError::bad_sequence("Need MAIL before BDAT")),
            Some(t) if t.recipients.is_empty() => Some(SmtpError::new(
                554,
                Enhanced(5, 5, 1),
                "no_recipients",
                "No valid recipients",
            )),
            Some(t) => {
                t.bdat = true;
                if let Some(e) = &t.bdat_failed {
                    Some(e.clone())
                } else if (t.body.len() as u64).saturating_add(size) > max {
                    let e = SmtpError::size_exceeded();
                    t.bdat_failed = Some(e.clone());
                    t.body = Vec::new();
                    Some(e)
                } else {
                    None
                }
            }
        };
        self.state = State::Chunk(Chunk { size, last, error });
    }

    /// Where a kept chunk is read to (the transaction's body).
    pub fn chunk_buffer(&mut self) -> Option<&mut Vec<u8>> {
        match (&self.state, self.txn.as_mut()) {
            (State::Chunk(Chunk { error: None, .. }), Some(t)) => Some(&mut t.body),
            _ => None,
        }
    }

    /// The chunk announced by `Next::Chunk` has been read (or discarded).
    pub fn chunk_done(&mut self) {
        let State::Chunk(chunk) = std::mem::replace(&mut self.state, State::Command) else {
            return self.fail(SmtpError::bad_sequence("No BDAT in progress"));
        };
        if let Some(e) = chunk.error {
            if chunk.last {
                self.txn = None;
            }
            return self.fail(e);
        }
        if !chunk.last {
            return self.reply(Reply::new(
                250,
                Enhanced(2, 0, 0),
                format!("{} octets received", chunk.size),
            ));
        }
        let Some(t) = &self.txn else {
            return self.fail(SmtpError::bad_sequence("Need MAIL before BDAT"));
        };
        let ok8 = t.eight_bit || t.utf8;
        match OctetFlags::scan(&t.body).refusal(ok8) {
            Some(e) => self.message_refused(e),
            None => self.message_received(),
        }
    }
}

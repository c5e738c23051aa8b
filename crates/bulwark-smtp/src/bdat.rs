//! BDAT (CHUNKING, RFC 3030): length-delimited chunks, no dot-stuffing.
//!
//! A chunk is always consumed, even when it is refused (§2: the server must read it
//! to stay in sync with a pipelining client). After a refused chunk the rest of the
//! transaction is refused too, until BDAT LAST, RSET or a new MAIL. The octet rules of
//! DATA apply to the assembled message as well: a bare LF or CR stored here could
//! smuggle a message through the next hop when we relay it with DATA.
//!
//! The connection hands a chunk over in pieces as they arrive ([`Session::chunk_data`]),
//! so each read has its own timeout and the memory budget is drawn as the body grows.

use crate::data::OctetFlags;
use crate::reply::{Enhanced, Reply, SmtpError};
use crate::session::{Session, State};

/// A chunk being read.
#[derive(Debug)]
pub(crate) struct Chunk {
    pub size: u64,
    /// Octets of it read so far.
    pub received: u64,
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
                Enhanced::new(5, 5, 1),
                "no_recipients",
                "No valid recipients",
            )),
            Some(t) => {
                t.bdat = true;
                if let Some(e) = &t.bdat_failed {
                    Some(e.clone())
                } else if (t.body.len() as u64).saturating_add(size) > max {
                    let e = SmtpError::size_exceeded();
                    t.fail_bdat(e.clone());
                    Some(e)
                } else {
                    None
                }
            }
        };
        self.state = State::Chunk(Chunk {
            size,
            received: 0,
            last,
            error,
        });
        if size == 0 {
            self.chunk_complete();
        }
    }

    /// The next piece of the chunk announced by `Next::Chunk` (at most `remaining`
    /// octets; anything beyond is ignored).
    pub fn chunk_data(&mut self, data: &[u8]) {
        let max = usize::try_from(self.settings.max_message_size).unwrap_or(usize::MAX);
        let (State::Chunk(chunk), txn) = (&mut self.state, self.txn.as_mut()) else {
            return self.fail(SmtpError::bad_sequence("No BDAT in progress"));
        };
        let remaining = chunk.size.saturating_sub(chunk.received);
        let data = &data[..data
            .len()
            .min(usize::try_from(remaining).unwrap_or(usize::MAX))];
        chunk.received += data.len() as u64;
        if chunk.error.is_none() {
            if let Some(t) = txn {
                let room = match t.reservation.as_mut() {
                    Some(r) => r.make_room(&mut t.body, data.len(), max),
                    None => false,
                };
                if room {
                    t.body.extend_from_slice(data);
                } else {
                    let e = SmtpError::insufficient_memory();
                    t.fail_bdat(e.clone());
                    chunk.error = Some(e);
                }
            }
        }
        if chunk.received >= chunk.size {
            self.chunk_complete();
        }
    }

    /// The whole chunk has been read (or discarded).
    fn chunk_complete(&mut self) {
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
                Enhanced::new(2, 0, 0),
                format!("{} octets received", chunk.size),
            ));
        }
        let Some(t) = &self.txn else {
            return self.fail(SmtpError::bad_sequence("Need MAIL before BDAT"));
        };
        let declared = t.eight_bit || t.utf8;
        let flags = OctetFlags::scan(&t.body);
        match flags.refusal() {
            Some(e) => self.message_refused(e),
            None => {
                flags.count_undeclared(declared, self.listener());
                self.message_received()
            }
        }
    }
}

impl crate::session::Transaction {
    /// The rest of this BDAT transaction is refused with `e`; the body is dropped and
    /// its memory given back.
    fn fail_bdat(&mut self, e: SmtpError) {
        self.bdat_failed = Some(e);
        self.body = Vec::new();
        if let Some(r) = self.reservation.as_mut() {
            r.release_all();
        }
    }
}

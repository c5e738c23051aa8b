//! APPEND (RFC 9051 §6.3.12), MULTIAPPEND (RFC 3502) and APPENDUID (RFC 4315).

use crate::code::ResponseCode;
use crate::resp::{self, Sink};
use crate::seqset;
use crate::session::{bad, no, ok, store_no, to_flags, Done, Next, Session};
use bulwark_store::{Delivery, DeliveryTarget, Ingest};
use imap_codec::imap_types::command::{Command, CommandBody};
use imap_codec::imap_types::{flag::Flag, mailbox::Mailbox as WireMailbox};

impl Session {
    pub(crate) async fn append(
        &mut self,
        wire: &WireMailbox<'_>,
        flags: &[Flag<'_>],
        date: Option<i64>,
        data: &[u8],
    ) -> Done {
        self.append_all(wire, &[(flags, date, data)]).await
    }

    /// APPEND of one message or, for MULTIAPPEND (RFC 3502 §6.3.11), several: all are
    /// stored in one transaction or none is, and the OK (with `[APPENDUID v set]`,
    /// RFC 4315) goes out only once they are durable.
    pub(crate) async fn append_all(
        &mut self,
        wire: &WireMailbox<'_>,
        messages: &[(&[Flag<'_>], Option<i64>, &[u8])],
    ) -> Done {
        let mb = match self.find_mailbox(wire).await {
            Ok(m) => m,
            // RFC 9051 §6.3.12: TRYCREATE tells the client to create it first.
            Err(Done::No(r)) if r.has(&ResponseCode::Nonexistent) => {
                return no(ResponseCode::TryCreate.text("No such mailbox"))
            }
            Err(d) => return d,
        };
        let now = self.clock.now();
        let mut ingests = Vec::with_capacity(messages.len());
        let mut size = 0u64;
        for (flags, date, data) in messages {
            if data.is_empty() {
                return no("Empty message; nothing was stored");
            }
            // The limits SMTP applies at intake (bulwark_mime::measure), before anything
            // parses the message; RFC 9051 §7.1: [LIMIT] for a server limit.
            let limits = bulwark_mime::Limits {
                depth: bulwark_mime::MAX_NESTING,
                parts: self.cfg.max_mime_parts,
            };
            if let Err(e) = bulwark_mime::measure(data, limits) {
                let reason = match e {
                    bulwark_mime::StructureError::TooDeep { .. } => "mime_too_deep",
                    bulwark_mime::StructureError::TooManyParts { .. } => "mime_parts",
                };
                metrics::counter!("bulwark_imap_bad_input_total", "listener" => self.cfg.listener, "reason" => reason).increment(1);
                return no(
                    ResponseCode::Limit.text(format!("Message refused: {e}; nothing was stored"))
                );
            }
            // RFC 3516 §4.3: binary parts (NULs, from a `~{n}` literal8) are stored
            // base64-encoded, before line ends are touched.
            let data = crate::binary::encode_binary_parts(data);
            // RFC 9051 §6.3.12 wants CRLF line ends; a bare LF is stored as CRLF, so
            // the stored size is what every protocol then sends (POP3 LIST/STAT, RETR).
            let data = crlf(&data);
            size += data.len() as u64;
            ingests.push(Ingest {
                data: data.into_owned(),
                internal_date: date.unwrap_or(now),
                deliveries: vec![Delivery {
                    target: DeliveryTarget::Mailbox(mb.id),
                    flags: to_flags(flags),
                }],
                queue: None,
            });
        }
        let count = ingests.len() as u64;
        // The OK goes out only after the store returned: the messages are durable.
        let receipts = if count == 1 {
            match ingests.pop() {
                Some(i) => self.store.ingest(i).await.map(|r| vec![r]),
                None => Ok(Vec::new()),
            }
        } else {
            self.store.ingest_all(ingests).await
        };
        match receipts {
            Ok(receipts) => {
                metrics::counter!("bulwark_imap_messages_appended_total", "listener" => self.cfg.listener)
                    .increment(count);
                metrics::counter!("bulwark_imap_message_bytes_appended_total", "listener" => self.cfg.listener).increment(size);
                if self.view.as_ref().is_some_and(|v| v.mailbox == mb.id) {
                    self.mark_dirty();
                }
                let uids: Vec<u32> = receipts
                    .iter()
                    .filter_map(|r| r.delivered.first().map(|d| d.2))
                    .collect();
                match receipts.first().and_then(|r| r.delivered.first()) {
                    Some((_, uidvalidity, _)) => ok(ResponseCode::AppendUid {
                        uidvalidity: *uidvalidity,
                        uids: seqset::compress(&uids),
                    }
                    .text("APPEND completed")),
                    None => ok("APPEND completed"),
                }
            }
            Err(e) => store_no(&e),
        }
    }

    /// A MULTIAPPEND command, split by `multiappend::split` into single APPENDs that
    /// imap-codec decodes; any part that does not decode makes the whole command BAD.
    pub(crate) async fn handle_multiappend(
        &mut self,
        parts: &[Vec<u8>],
        sink: &mut dyn Sink,
    ) -> std::io::Result<Next> {
        use imap_codec::decode::Decoder;
        use imap_codec::imap_types::extensions::binary::LiteralOrLiteral8 as L;
        let tag = crate::framing::guess_tag(parts.first().map_or(&[][..], |p| p))
            .unwrap_or_else(|| "*".into());
        let mut decoded = Vec::with_capacity(parts.len());
        for p in parts {
            match imap_codec::CommandCodec::default().decode(p) {
                Ok((
                    _,
                    Command {
                        body:
                            CommandBody::Append {
                                mailbox,
                                flags,
                                date,
                                message,
                            },
                        ..
                    },
                )) => {
                    decoded.push((mailbox, flags, date, message));
                }
                _ => {
                    metrics::counter!("bulwark_imap_bad_input_total", "listener" => self.cfg.listener, "reason" => "malformed").increment(1);
                    resp::line(sink, &format!("{tag} BAD Syntax error in APPEND")).await?;
                    return Ok(Next::Continue);
                }
            }
        }
        let done = if self.account.is_none() {
            bad("Log in first (STARTTLS, then LOGIN or AUTHENTICATE)")
        } else {
            let messages: Vec<(&[Flag<'_>], Option<i64>, &[u8])> = decoded
                .iter()
                .map(|(_, flags, date, message)| {
                    let data: &[u8] = match message {
                        L::Literal(l) => l.data(),
                        L::Literal8(l) => l.data.as_ref(),
                    };
                    (
                        &flags[..],
                        date.as_ref().map(|d| d.as_ref().timestamp()),
                        data,
                    )
                })
                .collect();
            // Every part names the same mailbox: split copies it from the command.
            match decoded.first() {
                Some((mailbox, ..)) => self.append_all(mailbox, &messages).await,
                None => bad("No message"),
            }
        };
        self.conclude(&tag, "APPEND", done, sink).await?;
        Ok(Next::Continue)
    }
}

/// Bare LF line ends as CRLF (borrowed when there are none).
pub(crate) fn crlf(data: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let bare = data
        .iter()
        .enumerate()
        .any(|(i, c)| *c == b'\n' && (i == 0 || data[i - 1] != b'\r'));
    if !bare {
        return std::borrow::Cow::Borrowed(data);
    }
    let mut out = Vec::with_capacity(data.len() + data.len() / 32);
    for (i, &c) in data.iter().enumerate() {
        if c == b'\n' && (i == 0 || data[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(c);
    }
    std::borrow::Cow::Owned(out)
}

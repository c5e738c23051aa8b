//! STATUS (RFC 9051 §6.3.11) with STATUS=SIZE (RFC 8438) and HIGHESTMODSEQ (RFC 7162).

use crate::names::encode_mutf7;
use crate::resp::{Resp, Sink};
use crate::session::{ok, store_no, Done, Session};
use bulwark_store::{Flags, Mailbox};
use imap_codec::imap_types::{mailbox::Mailbox as WireMailbox, status::StatusDataItemName};

impl Session {
    pub(crate) async fn status(
        &mut self,
        wire: &WireMailbox<'_>,
        items: &[StatusDataItemName],
        sink: &mut dyn Sink,
    ) -> std::io::Result<Done> {
        let mb = match self.find_mailbox(wire).await {
            Ok(m) => m,
            Err(d) => return Ok(d),
        };
        Ok(match self.write_status(&mb, items, sink).await? {
            Ok(()) => ok("STATUS completed"),
            Err(d) => d,
        })
    }

    /// One `* STATUS` response (RFC 9051 §7.3.2), for STATUS and LIST-STATUS.
    pub(crate) async fn write_status(
        &mut self,
        mb: &Mailbox,
        items: &[StatusDataItemName],
        sink: &mut dyn Sink,
    ) -> std::io::Result<Result<(), Done>> {
        let st = match self.store.mailbox_status(mb.id).await {
            Ok(s) => s,
            Err(e) => return Ok(Err(store_no(&e))),
        };
        let mut parts = Vec::new();
        for it in items {
            match it {
                StatusDataItemName::Messages => parts.push(format!("MESSAGES {}", st.messages)),
                StatusDataItemName::Recent => parts.push(format!("RECENT {}", st.recent)),
                StatusDataItemName::UidNext => {
                    parts.push(format!("UIDNEXT {}", st.mailbox.uidnext))
                }
                StatusDataItemName::UidValidity => {
                    parts.push(format!("UIDVALIDITY {}", st.mailbox.uidvalidity))
                }
                StatusDataItemName::Unseen => parts.push(format!("UNSEEN {}", st.unseen)),
                StatusDataItemName::Deleted => {
                    let n = match self.store.list_messages(mb.id).await {
                        Ok(m) => m.iter().filter(|m| m.flags.has(Flags::DELETED)).count(),
                        Err(e) => return Ok(Err(store_no(&e))),
                    };
                    parts.push(format!("DELETED {n}"));
                }
                StatusDataItemName::DeletedStorage => {}
                // RFC 8438: the total of the messages' RFC822.SIZE.
                StatusDataItemName::Size => parts.push(format!("SIZE {}", st.size)),
                StatusDataItemName::HighestModSeq => {
                    parts.push(format!("HIGHESTMODSEQ {}", st.mailbox.highest_modseq))
                }
            }
        }
        let mut r = Resp::new();
        r.text("* STATUS ");
        r.astring(encode_mutf7(&mb.name).as_bytes());
        r.text(&format!(" ({})", parts.join(" ")));
        r.send(sink).await?;
        Ok(Ok(()))
    }
}

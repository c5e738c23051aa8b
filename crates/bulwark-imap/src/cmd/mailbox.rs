//! CREATE, DELETE, RENAME, SUBSCRIBE and UNSUBSCRIBE (RFC 9051 §6.3.4-§6.3.8).

use crate::code::ResponseCode;
use crate::names::{self, parse_name, DELIMITER};
use crate::session::{no, ok, store_no, Done, Session};
use bulwark_store::{StoreError, Uid};
use imap_codec::imap_types::mailbox::Mailbox as WireMailbox;

impl Session {
    pub(crate) async fn create(&mut self, wire: &WireMailbox<'_>) -> Done {
        let name = match mailbox_name(wire) {
            Ok(n) => n,
            Err(d) => return d,
        };
        if name == "INBOX" {
            return no(ResponseCode::AlreadyExists.text("INBOX always exists"));
        }
        // Create missing superiors too (RFC 9051 §6.3.4).
        let mut prefix = String::new();
        let levels: Vec<&str> = name.split(DELIMITER).collect();
        for (i, level) in levels.iter().enumerate() {
            if i > 0 {
                prefix.push(DELIMITER);
            }
            prefix.push_str(level);
            let last = i + 1 == levels.len();
            match self.store.mailbox(self.account_id(), &prefix).await {
                Ok(Some(_)) if last => {
                    return no(ResponseCode::AlreadyExists.text("Mailbox already exists"))
                }
                Ok(Some(_)) => continue,
                Ok(None) => {}
                Err(e) => return store_no(&e),
            }
            if let Err(e) = self
                .store
                .create_mailbox(self.account_id(), &prefix, None)
                .await
            {
                if !matches!(e, StoreError::AlreadyExists(_)) || last {
                    return store_no(&e);
                }
            }
        }
        ok("CREATE completed")
    }

    pub(crate) async fn delete(&mut self, wire: &WireMailbox<'_>) -> Done {
        let mb = match self.find_mailbox(wire).await {
            Ok(m) => m,
            Err(d) => return d,
        };
        if mb.name == "INBOX" {
            return no(ResponseCode::Cannot.text("INBOX cannot be deleted"));
        }
        // RFC 3501 §6.3.4: a mailbox with inferiors loses its messages and keeps its
        // name as \Noselect. The store keeps no \Noselect mailboxes; LIST shows
        // the name as \Noselect for as long as something below it exists, which is
        // the same thing. (Deleting that name again is the error the RFC asks for:
        // it no longer exists.)
        if let Err(e) = self.store.delete_mailbox(self.account_id(), &mb.name).await {
            return store_no(&e);
        }
        if self.view.as_ref().is_some_and(|v| v.mailbox == mb.id) {
            self.unselect();
        }
        ok("DELETE completed")
    }

    pub(crate) async fn rename(&mut self, from: &WireMailbox<'_>, to: &WireMailbox<'_>) -> Done {
        let src = match self.find_mailbox(from).await {
            Ok(m) => m,
            Err(d) => return d,
        };
        let to = match mailbox_name(to) {
            Ok(n) => n,
            Err(d) => return d,
        };
        let account = self.account_id();
        if src.name == "INBOX" {
            // RFC 9051 §6.3.6: renaming INBOX moves its messages to a new mailbox and
            // leaves INBOX empty.
            let dst = match self.store.create_mailbox(account, &to, None).await {
                Ok(m) => m,
                Err(e) => return store_no(&e),
            };
            let uids: Vec<Uid> = match self.store.list_messages(src.id).await {
                Ok(m) => m.iter().map(|m| m.uid).collect(),
                Err(e) => return store_no(&e),
            };
            if let Err(e) = self.store.move_messages(src.id, &uids, dst.id).await {
                return store_no(&e);
            }
            if self.view.as_ref().is_some_and(|v| v.mailbox == src.id) {
                self.mark_dirty();
            }
            if let Err(e) = self.create_superiors(&to).await {
                return store_no(&e);
            }
            return ok("RENAME completed");
        }
        if to == "INBOX" {
            return no(ResponseCode::AlreadyExists.text("INBOX already exists"));
        }
        match self.store.rename_mailbox(account, &src.name, &to).await {
            Ok(()) => {
                // RFC 9051 §6.3.6: superiors the new name needs are created.
                if let Err(e) = self.create_superiors(&to).await {
                    return store_no(&e);
                }
                if let Some(v) = self.view.as_mut() {
                    if v.mailbox == src.id {
                        v.name = to;
                    }
                }
                ok("RENAME completed")
            }
            Err(e) => store_no(&e),
        }
    }

    /// Creates the missing superiors of `name` ("a" and "a/b" for "a/b/c").
    pub(crate) async fn create_superiors(&self, name: &str) -> Result<(), StoreError> {
        let mut end = 0;
        while let Some(i) = name[end..].find(DELIMITER) {
            end += i;
            let prefix = &name[..end];
            end += DELIMITER.len_utf8();
            if self
                .store
                .mailbox(self.account_id(), prefix)
                .await?
                .is_some()
            {
                continue;
            }
            match self
                .store
                .create_mailbox(self.account_id(), prefix, None)
                .await
            {
                Ok(_) | Err(StoreError::AlreadyExists(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// RFC 9051 §6.3.7/§6.3.8: subscriptions are names. SUBSCRIBE checks that the
    /// mailbox exists (allowed by the RFC); UNSUBSCRIBE works on any subscribed name,
    /// including ones whose mailbox is gone.
    pub(crate) async fn subscribe(&mut self, wire: &WireMailbox<'_>, on: bool) -> Done {
        if on {
            let mb = match self.find_mailbox(wire).await {
                Ok(m) => m,
                Err(d) => return d,
            };
            return match self
                .store
                .add_subscription(self.account_id(), &mb.name)
                .await
            {
                Ok(()) => ok("SUBSCRIBE completed"),
                Err(e) => store_no(&e),
            };
        }
        let name = match mailbox_name(wire) {
            Ok(n) => n,
            Err(d) => return d,
        };
        match self
            .store
            .remove_subscription(self.account_id(), &name)
            .await
        {
            Ok(true) => ok("UNSUBSCRIBE completed"),
            Ok(false) => no(ResponseCode::Nonexistent.text("Not subscribed to that name")),
            Err(e) => store_no(&e),
        }
    }
}

/// A decoded, checked mailbox name from the wire.
pub(crate) fn mailbox_name(wire: &WireMailbox<'_>) -> Result<String, Done> {
    match wire {
        WireMailbox::Inbox => Ok("INBOX".to_string()),
        WireMailbox::Other(o) => parse_name(o.as_ref()).map_err(|e| match e {
            // RFC 3501 §5.1.3 / §7.1.3: the command is well-formed, the name is
            // just not one we can have — NO (imaptest `atoms`), as for a forbidden one.
            names::NameError::BadEncoding => {
                no(ResponseCode::Cannot.text("Mailbox name is not valid modified UTF-7"))
            }
            names::NameError::Forbidden => no(ResponseCode::Cannot.text("Invalid mailbox name")),
        }),
    }
}

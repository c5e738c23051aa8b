//! The store's identifiers as distinct types, so an account id can never be passed
//! where a mailbox id is expected. Each wraps the raw value the schema stores (SQLite
//! `INTEGER`) or the protocol sends (IMAP UIDs, MODSEQs); the raw value crosses a
//! boundary only through `get()` / `From`, at the SQL row or the wire number.

use std::fmt;

use rusqlite::types::{FromSql, FromSqlResult, ToSql, ToSqlOutput, ValueRef};

/// Declares one identifier newtype over a raw integer type, with its conversions and
/// its SQL mapping (stored as the raw integer; the schema is unchanged).
macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident($raw:ty)) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(transparent)]
        pub struct $name(pub $raw);

        impl $name {
            /// The raw value, for SQL, the wire or arithmetic the type does not offer.
            pub const fn get(self) -> $raw {
                self.0
            }
        }

        impl From<$raw> for $name {
            fn from(raw: $raw) -> Self {
                $name(raw)
            }
        }

        impl From<$name> for $raw {
            fn from(id: $name) -> Self {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                self.0.to_sql()
            }
        }

        impl FromSql for $name {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                <$raw>::column_result(value).map($name)
            }
        }
    };
}

id_type!(
    /// A mail domain's row id.
    DomainId(i64)
);
id_type!(
    /// An account's row id.
    AccountId(i64)
);
id_type!(
    /// A mailbox's row id (not its IMAP name, which can be renamed).
    MailboxId(i64)
);
id_type!(
    /// A stored message body's row id; bodies are immutable and shared by copies.
    BlobId(i64)
);
id_type!(
    /// An outbound queue entry's id, as `bulwark queue show` prints it.
    QueueId(i64)
);
id_type!(
    /// A message's IMAP UID within its mailbox (RFC 9051 §2.3.1.1), as the wire sends it.
    Uid(u32)
);
id_type!(
    /// A modification sequence (RFC 7162 MODSEQ) of a message or a mailbox.
    ModSeq(u64)
);

impl Uid {
    /// Raw wire UIDs (an IMAP set's members, POP3's list) as the store's type, for a
    /// store call.
    pub fn from_raw(raw: &[u32]) -> Vec<Uid> {
        raw.iter().copied().map(Uid).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_round_trip_and_display_is_the_raw_number() {
        let a = AccountId::from(42);
        assert_eq!(a.get(), 42);
        assert_eq!(i64::from(a), 42);
        assert_eq!(a.to_string(), "42");
        assert_eq!(format!("{:>4}", QueueId(7)), "   7");
        assert!(MailboxId(1) < MailboxId(2));
    }

    #[test]
    fn ids_are_stored_as_their_raw_integer() {
        let db = rusqlite::Connection::open_in_memory().expect("in-memory db");
        let back: BlobId = db
            .query_row("SELECT ?1", [BlobId(9)], |r| r.get(0))
            .expect("query");
        assert_eq!(back, BlobId(9));
        let raw: i64 = db
            .query_row("SELECT ?1", [MailboxId(-3)], |r| r.get(0))
            .expect("query");
        assert_eq!(raw, -3);
    }

    #[test]
    fn uid_and_modseq_print_and_store_the_bare_number() {
        assert_eq!(Uid(4_000_000_000).to_string(), "4000000000");
        assert_eq!(u32::from(Uid::from(5)), 5);
        assert_eq!(ModSeq(1 << 40).to_string(), "1099511627776");
        assert!(Uid(2) < Uid(10));
        assert_eq!(Uid::from_raw(&[3, 1]), vec![Uid(3), Uid(1)]);
        let db = rusqlite::Connection::open_in_memory().expect("in-memory db");
        let back: (Uid, ModSeq) = db
            .query_row(
                "SELECT ?1, ?2",
                rusqlite::params![Uid(u32::MAX), ModSeq(77)],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("query");
        assert_eq!(back, (Uid(u32::MAX), ModSeq(77)));
    }
}

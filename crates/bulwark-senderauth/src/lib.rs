//! Who sent it: SPF (RFC 7208), Sender ID (RFC 4406/4407), DKIM (RFC 6376/8463) and
//! DMARC (RFC 7489) for mail received on port 25, the Authentication-Results /
//! Received-SPF headers that record them, the policy that turns results into an SMTP
//! action, and DKIM signing of mail our users submit.
//!
//! Must not: know about SMTP sessions or sockets. The SMTP server calls
//! [`SenderAuth::check_mail_from`] at MAIL and [`SenderAuth::check_message`] after
//! DATA and acts on the returned [`Action`]; pure parts (PRA selection, the Received
//! walk, header building) are plain functions tested without DNS.

pub mod check;
pub mod dns;
/// Harnesses for fuzz targets and seeded property tests (not part of the checks).
#[doc(hidden)]
pub mod fuzzing;
pub mod headers;
pub mod keyfile;
pub mod pra;
pub mod received;
pub mod record;
pub mod sign;
pub mod spf;

pub use check::{
    Action, DkimCheck, DmarcCheck, Results, SenderAuth, SenderIdOutcome, SpfOutcome, Verdict,
};
pub use pra::{NoPra, Pra, PraSelector};
pub use sign::{DkimSigner, GeneratedKey, KeyAlgorithm};
pub use spf::{Evaluation, Scope, SpfResult};

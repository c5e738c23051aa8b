//! The SMTP wire vocabulary: the concepts every mail crate speaks about in the same
//! terms (hickory's `proto` move).
//!
//! Owns: the RFC 3463 enhanced status code ([`Enhanced`]), reply codes and their class
//! ([`ReplyCode`], [`Class`]), a [`Reply`] with a bounded parser ([`ReplyBuffer`]) and
//! the one writer of the `250-`/`250 ` form ([`write_reply`]), the transaction
//! [`Stage`], and the streaming dot-stuffer ([`DotStuffer`], RFC 5321 §4.5.2 /
//! RFC 1939 §3).
//!
//! Must not: do I/O, depend on another bulwark crate, or know about sessions, queues
//! or policy. Everything here is a pure function of its input.

pub mod dotstuff;
pub mod enhanced;
pub mod reply;
pub mod stage;

pub use dotstuff::DotStuffer;
pub use enhanced::{Enhanced, EnhancedError};
pub use reply::{write_reply, Class, Reply, ReplyBuffer, ReplyCode, ReplyError};
pub use stage::Stage;

//! The result of trying to deliver to one recipient.

use bulwark_wire::{Enhanced, Reply, Stage};

/// How a recipient's attempt ended: what the queue does with the recipient next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// The server took responsibility (250 after the data).
    Delivered,
    /// Temporary: try again later.
    Deferred,
    /// Permanent: notify the sender.
    Failed,
}

impl Verdict {
    /// The lowercase name used in logs and the `result` metric label.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Delivered => "delivered",
            Verdict::Deferred => "deferred",
            Verdict::Failed => "failed",
        }
    }
}

/// One recipient's result: the verdict and the words that go into logs and notices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Delivered, deferred or failed.
    pub verdict: Verdict,
    /// RFC 3463 status, e.g. 5.1.1.
    pub status: Enhanced,
    /// The server's reply on one line ("550 5.1.1 No such user"), or what went wrong
    /// on our side ("connection refused").
    pub text: String,
    /// True when `text` is an SMTP reply from the remote server (a DSN then carries it
    /// as `Diagnostic-Code: smtp; …`).
    pub remote: bool,
    /// Which command the reply answered, for the human part of a notice.
    pub stage: Option<Stage>,
}

impl Outcome {
    /// The outcome a reply means for the recipients it concerns.
    pub fn from_reply(r: &Reply, stage: Stage) -> Outcome {
        let verdict = if r.is_positive() && stage.ends_message() {
            Verdict::Delivered
        } else if r.is_permanent() {
            Verdict::Failed
        } else {
            Verdict::Deferred
        };
        let status = match verdict {
            Verdict::Deferred if !r.is_transient() => Enhanced::new(4, 0, 0),
            _ => r.status(),
        };
        Outcome {
            verdict,
            status,
            text: r.one_line(),
            remote: true,
            stage: Some(stage),
        }
    }

    /// A temporary problem on the way (connection, TLS, DNS).
    pub fn deferred(status: Enhanced, text: impl Into<String>) -> Outcome {
        Outcome {
            verdict: Verdict::Deferred,
            status,
            text: text.into(),
            remote: false,
            stage: None,
        }
    }

    /// A permanent problem found on our side (null MX, message too big, …).
    pub fn failed(status: Enhanced, text: impl Into<String>) -> Outcome {
        Outcome {
            verdict: Verdict::Failed,
            status,
            text: text.into(),
            remote: false,
            stage: None,
        }
    }
}

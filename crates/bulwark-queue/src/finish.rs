//! The end of one delivery attempt of a queue entry, planned without I/O: which
//! recipients failed (expiry included), which notices to send (failure and relayed,
//! delay), and what to record. The worker's `finish` executes the plan: it builds and
//! sends the notices and records the recipient updates.
//!
//! Notices are never sent to the null sender (notices are sent from `<>` themselves,
//! so bounce loops are impossible, RFC 3464 §2) nor to a sender that failed SPF/DMARC
//! at intake (`DeliveryParams::wants`: no backscatter).

use std::collections::HashSet;

use bulwark_store::{QueuedMessage, RecipientStatus, RecipientUpdate};
use bulwark_wire::Enhanced;

use crate::dsn::{Action, DsnRecipient};
use crate::outcome::{Outcome, Verdict};
use crate::params::{DeliveryParams, NotifyOn};

/// What one destination's delivery decided for one recipient.
#[derive(Debug, Clone)]
pub(crate) struct RecipientResult {
    pub address: String,
    pub outcome: Outcome,
    /// The host that answered, when one did.
    pub remote: Option<String>,
    /// The server that took it announced DSN (RFC 3461), so success notices are its job.
    pub remote_dsn: bool,
}

/// A delivered recipient whose NOTIFY=SUCCESS is now ours to honour: the server that
/// took the message did not announce DSN, so it will not send the success notice.
pub(crate) fn wants_relayed_notice(params: &DeliveryParams, r: &RecipientResult) -> bool {
    r.outcome.verdict == Verdict::Delivered
        && !r.remote_dsn
        && params.wants(&r.address, NotifyOn::Success)
}

/// The configuration `plan_finish` needs (seconds).
#[derive(Debug, Clone, Copy)]
pub(crate) struct FinishPolicy {
    /// How long an entry may stay queued (`max_queue_lifetime_secs`).
    pub lifetime: i64,
    /// When a delay notice goes out (`delay_notice_after_secs`).
    pub delay_notice_after: i64,
    /// When a failed recipient whose notice could not be sent is tried again.
    pub retry_initial: i64,
}

/// The entry and what this attempt decided.
pub(crate) struct FinishInput<'a> {
    pub entry: &'a QueuedMessage,
    pub params: &'a DeliveryParams,
    pub results: &'a [RecipientResult],
    /// When the attempt started (the notices' Last-Attempt-Date).
    pub started: i64,
    pub now: i64,
}

/// A recipient that failed for good in this attempt, with the text to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FailedRecipient {
    pub address: String,
    pub text: String,
}

/// The failure (and relayed) notice of this attempt.
#[derive(Debug, Clone)]
pub(crate) enum FailureNotice {
    /// Nobody asked for one.
    None,
    /// Wanted for this many recipients, but the sender is `<>`: none goes out.
    NullSender { recipients: usize },
    /// Send to the sender, for these recipients.
    Send(Vec<DsnRecipient>),
}

/// The delay notice of this attempt.
#[derive(Debug, Clone)]
pub(crate) enum DelayNotice {
    /// Not due (already sent, too early, or nothing pending).
    NotDue,
    /// Due, but nobody wants one (or the sender is `<>`): record it as done.
    Skip,
    /// Send to the sender, for these recipients; recorded as done once sent.
    Send(Vec<DsnRecipient>),
}

/// What `finish` does, in order: the failure notice, the recipient updates, the delay
/// notice, the closing update.
#[derive(Debug, Clone)]
pub(crate) struct FinishPlan {
    pub failed: Vec<FailedRecipient>,
    /// Failed recipients whose notice is withheld because the sender failed SPF/DMARC
    /// at intake (only logged: the failure leaves no other trace).
    pub backscatter_withheld: usize,
    pub failure_notice: FailureNotice,
    pub delay_notice: DelayNotice,
    /// Until when the entry is retried (a delay notice's Retry-Until-Date).
    pub expires: i64,
    /// When a failed recipient is tried again if its notice could not be sent.
    pub retry_at: i64,
    /// The entry's delay-notice mark before this attempt.
    pub delay_notified: bool,
}

impl FinishPlan {
    /// The failed recipients' updates: failed once the notice went out (or none was
    /// due); still pending otherwise, so the notice is not lost.
    pub(crate) fn updates(&self, notice_sent: bool) -> Vec<RecipientUpdate> {
        self.failed
            .iter()
            .map(|f| RecipientUpdate {
                address: f.address.clone(),
                status: if notice_sent {
                    RecipientStatus::Failed
                } else {
                    RecipientStatus::Pending
                },
                reply: f.text.clone(),
                next_attempt: if notice_sent { 0 } else { self.retry_at },
            })
            .collect()
    }

    /// The entry's delay-notice mark after this attempt.
    pub(crate) fn delay_notified(&self, delay_sent: bool) -> bool {
        match self.delay_notice {
            DelayNotice::NotDue => self.delay_notified,
            DelayNotice::Skip => true,
            DelayNotice::Send(_) => self.delay_notified || delay_sent,
        }
    }
}

/// Plans the end of an attempt (see the module comment).
pub(crate) fn plan_finish(input: &FinishInput<'_>, policy: &FinishPolicy) -> FinishPlan {
    let e = input.entry;
    let expires = e.created + policy.lifetime;
    let mut failed: Vec<(&RecipientResult, Outcome)> = Vec::new();
    let mut relayed: Vec<&RecipientResult> = Vec::new();
    let mut decided: HashSet<&str> = HashSet::new();
    for r in input.results {
        match r.outcome.verdict {
            Verdict::Failed => {
                failed.push((r, r.outcome.clone()));
                decided.insert(&r.address);
            }
            Verdict::Deferred if input.now >= expires => {
                failed.push((r, expired(&r.outcome, policy.lifetime)));
                decided.insert(&r.address);
            }
            Verdict::Delivered => {
                decided.insert(&r.address);
                if wants_relayed_notice(input.params, r) {
                    relayed.push(r);
                }
            }
            Verdict::Deferred => {}
        }
    }
    let notify: Vec<DsnRecipient> = failed
        .iter()
        .filter(|(r, _)| input.params.wants(&r.address, NotifyOn::Failure))
        .map(|(r, o)| dsn_recipient(input, r, o, Action::Failed))
        .chain(relayed.iter().map(|r| {
            let mut d = dsn_recipient(input, r, &r.outcome, Action::Relayed);
            d.status = Enhanced::new(2, 0, 0);
            d
        }))
        .collect();
    let failure_notice = if notify.is_empty() {
        FailureNotice::None
    } else if e.return_path.is_empty() {
        FailureNotice::NullSender {
            recipients: notify.len(),
        }
    } else {
        FailureNotice::Send(notify)
    };
    FinishPlan {
        backscatter_withheld: if input.params.sender_auth_failed {
            failed.len()
        } else {
            0
        },
        failed: failed
            .iter()
            .map(|(r, o)| FailedRecipient {
                address: r.address.clone(),
                text: o.text.clone(),
            })
            .collect(),
        failure_notice,
        delay_notice: delay_notice(input, policy, &decided),
        expires,
        retry_at: input.now + policy.retry_initial,
        delay_notified: e.delay_notified,
    }
}

/// A deferral past the queue lifetime is a failure (RFC 5321 §4.5.4.1).
fn expired(o: &Outcome, lifetime: i64) -> Outcome {
    let days = lifetime / 86400;
    let mut f = o.clone();
    f.verdict = Verdict::Failed;
    f.text = format!(
        "delivery time expired after {} ({}); last error: {}",
        if days > 0 {
            format!("{days} day(s)")
        } else {
            format!("{lifetime}s")
        },
        "RFC 5321 §4.5.4.1",
        o.text
    );
    if !f.status.is_transient() && !f.status.is_permanent() {
        f.status = Enhanced::new(4, 4, 7);
    }
    f
}

/// A delay notice, once, for what is still pending after the configured time.
fn delay_notice(
    input: &FinishInput<'_>,
    policy: &FinishPolicy,
    decided: &HashSet<&str>,
) -> DelayNotice {
    let e = input.entry;
    if e.delay_notified || input.now - e.created < policy.delay_notice_after {
        return DelayNotice::NotDue;
    }
    let pending: Vec<_> = e
        .recipients
        .iter()
        .filter(|q| q.status == RecipientStatus::Pending && !decided.contains(q.address.as_str()))
        .collect();
    if pending.is_empty() {
        return DelayNotice::NotDue;
    }
    let still: Vec<DsnRecipient> = pending
        .into_iter()
        .filter(|q| input.params.wants(&q.address, NotifyOn::Delay))
        .map(|q| {
            let now_result = input.results.iter().find(|r| r.address == q.address);
            let (status, text, remote, diag) = match now_result {
                Some(r) => (
                    r.outcome.status,
                    explain(r, &r.outcome),
                    r.remote.clone(),
                    r.outcome.remote.then(|| r.outcome.text.clone()),
                ),
                None => (
                    Enhanced::new(4, 0, 0),
                    q.last_reply
                        .clone()
                        .unwrap_or_else(|| "not yet attempted".into()),
                    None,
                    None,
                ),
            };
            DsnRecipient {
                address: q.address.clone(),
                original: input.params.orcpt(&q.address).map(str::to_string),
                action: Action::Delayed,
                status,
                remote_mta: remote,
                smtp_diagnostic: diag,
                explanation: text,
                last_attempt: Some(input.now),
            }
        })
        .collect();
    if still.is_empty() || e.return_path.is_empty() {
        DelayNotice::Skip
    } else {
        DelayNotice::Send(still)
    }
}

/// The human part of a notice about `r`: the remote server's words when one answered.
pub(crate) fn explain(r: &RecipientResult, o: &Outcome) -> String {
    match (&r.remote, o.remote, o.stage) {
        (Some(host), true, Some(stage)) => {
            format!("host {host} said: {} (in reply to {stage})", o.text)
        }
        (Some(host), true, None) => format!("host {host} said: {}", o.text),
        _ => o.text.clone(),
    }
}

fn dsn_recipient(
    input: &FinishInput<'_>,
    r: &RecipientResult,
    o: &Outcome,
    action: Action,
) -> DsnRecipient {
    DsnRecipient {
        address: r.address.clone(),
        original: input.params.orcpt(&r.address).map(str::to_string),
        action,
        status: o.status,
        remote_mta: r.remote.clone(),
        smtp_diagnostic: o.remote.then(|| o.text.clone()),
        explanation: explain(r, o),
        last_attempt: Some(input.started),
    }
}

#[cfg(test)]
mod tests {
    use bulwark_store::{BlobId, QueueId, QueueRecipient, RecipientParams};
    use bulwark_wire::Stage;

    use super::*;

    const DAY: i64 = 86400;
    const POLICY: FinishPolicy = FinishPolicy {
        lifetime: 5 * DAY,
        delay_notice_after: 4 * 3600,
        retry_initial: 60,
    };

    fn entry(return_path: &str, rcpts: &[&str]) -> QueuedMessage {
        QueuedMessage {
            id: QueueId(1),
            blob_id: BlobId(1),
            size: 10,
            return_path: return_path.into(),
            created: 1000,
            next_attempt: 0,
            delay_notified: false,
            params: DeliveryParams::default(),
            recipients: rcpts
                .iter()
                .map(|a| QueueRecipient {
                    address: a.to_string(),
                    status: RecipientStatus::Pending,
                    attempts: 1,
                    next_attempt: 0,
                    last_reply: Some("451 earlier".into()),
                })
                .collect(),
        }
    }

    fn result(address: &str, outcome: Outcome, remote_dsn: bool) -> RecipientResult {
        RecipientResult {
            address: address.into(),
            outcome,
            remote: Some("mx.remote.test".into()),
            remote_dsn,
        }
    }

    fn delivered() -> Outcome {
        Outcome {
            verdict: Verdict::Delivered,
            status: Enhanced::new(2, 0, 0),
            text: "250 ok".into(),
            remote: true,
            stage: Some(Stage::EndOfData),
        }
    }

    fn plan(e: &QueuedMessage, p: &DeliveryParams, r: &[RecipientResult], now: i64) -> FinishPlan {
        plan_finish(
            &FinishInput {
                entry: e,
                params: p,
                results: r,
                started: now - 5,
                now,
            },
            &POLICY,
        )
    }

    #[test]
    fn a_permanent_failure_sends_a_failure_notice_then_fails_the_recipient() {
        let e = entry("alice@example.test", &["x@remote.test"]);
        let p = DeliveryParams::default();
        let r = [result(
            "x@remote.test",
            Outcome::failed(Enhanced::new(5, 1, 1), "550 no"),
            false,
        )];
        let plan = plan(&e, &p, &r, 2000);
        let FailureNotice::Send(n) = &plan.failure_notice else {
            panic!("{:?}", plan.failure_notice);
        };
        assert_eq!(n.len(), 1);
        assert_eq!(
            (n[0].action, n[0].status.to_string().as_str()),
            (Action::Failed, "5.1.1")
        );
        assert_eq!(n[0].last_attempt, Some(1995));
        let u = plan.updates(true);
        assert_eq!(u[0].status, RecipientStatus::Failed);
        assert_eq!((u[0].reply.as_str(), u[0].next_attempt), ("550 no", 0));
        // The notice could not be stored: kept pending, tried again.
        let u = plan.updates(false);
        assert_eq!(
            (u[0].status, u[0].next_attempt),
            (RecipientStatus::Pending, 2060)
        );
        assert!(matches!(plan.delay_notice, DelayNotice::NotDue));
        assert_eq!(plan.backscatter_withheld, 0);
        assert!(!plan.delay_notified(false));
    }

    #[test]
    fn a_deferral_past_the_lifetime_fails_as_expired() {
        let e = entry("alice@example.test", &["x@remote.test"]);
        let p = DeliveryParams::default();
        let r = [result(
            "x@remote.test",
            Outcome::deferred(Enhanced::new(4, 4, 1), "no answer"),
            false,
        )];
        let before = plan(&e, &p, &r, 1000 + 5 * DAY - 1);
        assert!(before.failed.is_empty());
        let after = plan(&e, &p, &r, 1000 + 5 * DAY);
        assert_eq!(after.failed.len(), 1);
        assert!(
            after.failed[0].text.starts_with(
                "delivery time expired after 5 day(s) (RFC 5321 §4.5.4.1); last error: no answer"
            ),
            "{}",
            after.failed[0].text
        );
        assert!(matches!(after.failure_notice, FailureNotice::Send(_)));
        // Decided now: no delay notice for it.
        assert!(matches!(after.delay_notice, DelayNotice::NotDue));
        // A status that is not a deferral's gets 4.4.7.
        let o = expired(&Outcome::deferred(Enhanced::new(2, 0, 0), "x"), 30);
        assert_eq!(
            (o.status.to_string().as_str(), o.verdict),
            ("4.4.7", Verdict::Failed)
        );
        assert!(o.text.starts_with("delivery time expired after 30s"));
    }

    #[test]
    fn a_delay_notice_goes_once_for_what_is_still_pending() {
        let mut e = entry("alice@example.test", &["x@remote.test", "y@remote.test"]);
        let p = DeliveryParams::default();
        let r = [
            result(
                "x@remote.test",
                Outcome::deferred(Enhanced::new(4, 4, 1), "no answer"),
                false,
            ),
            result("y@remote.test", delivered(), false),
        ];
        assert!(matches!(
            plan(&e, &p, &r, 1000 + 3600).delay_notice,
            DelayNotice::NotDue
        ));
        let now = 1000 + 4 * 3600;
        let due = plan(&e, &p, &r, now);
        let DelayNotice::Send(n) = &due.delay_notice else {
            panic!("{:?}", due.delay_notice);
        };
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].address, "x@remote.test");
        assert_eq!(
            (n[0].action, n[0].last_attempt),
            (Action::Delayed, Some(now))
        );
        assert_eq!(due.expires, 1000 + 5 * DAY);
        assert!(due.delay_notified(true));
        assert!(!due.delay_notified(false));
        e.delay_notified = true;
        let again = plan(&e, &p, &r, now);
        assert!(matches!(again.delay_notice, DelayNotice::NotDue));
        assert!(again.delay_notified(false));
        // Not attempted this time: the last reply explains it.
        let n = match plan(&entry("a@b.test", &["z@remote.test"]), &p, &[], now).delay_notice {
            DelayNotice::Send(n) => n,
            d => panic!("{d:?}"),
        };
        assert_eq!(
            (n[0].status.to_string().as_str(), n[0].explanation.as_str()),
            ("4.0.0", "451 earlier")
        );
    }

    #[test]
    fn notify_never_and_the_null_sender_get_no_notice() {
        let mut p = DeliveryParams::default();
        p.rcpt.insert(
            "x@remote.test".into(),
            RecipientParams {
                notify: Some(vec![NotifyOn::Never]),
                orcpt: None,
            },
        );
        let r = [result(
            "x@remote.test",
            Outcome::failed(Enhanced::new(5, 1, 1), "550 no"),
            false,
        )];
        let e = entry("alice@example.test", &["x@remote.test"]);
        let never = plan(&e, &p, &r, 1000 + 4 * 3600);
        assert!(matches!(never.failure_notice, FailureNotice::None));
        assert_eq!(never.updates(true)[0].status, RecipientStatus::Failed);
        let z = [result(
            "z@remote.test",
            Outcome::deferred(Enhanced::new(4, 4, 1), "x"),
            false,
        )];
        let e = entry("alice@example.test", &["x@remote.test", "z@remote.test"]);
        let never_delay = plan(&e, &p, &[z[0].clone()], 1000 + 4 * 3600);
        assert!(matches!(never_delay.delay_notice, DelayNotice::Send(_)));

        let e = entry("", &["x@remote.test"]);
        let null = plan(&e, &DeliveryParams::default(), &r, 2000);
        assert!(matches!(
            null.failure_notice,
            FailureNotice::NullSender { recipients: 1 }
        ));
        let null = plan(&e, &DeliveryParams::default(), &z, 1000 + 4 * 3600);
        // Due but not sent to <>: marked done.
        assert!(matches!(null.delay_notice, DelayNotice::Skip));
        assert!(null.delay_notified(false));
    }

    #[test]
    fn a_sender_that_failed_authentication_gets_no_notice_and_it_is_counted() {
        let p = DeliveryParams {
            sender_auth_failed: true,
            ..Default::default()
        };
        let e = entry("forged@elsewhere.test", &["x@remote.test", "z@remote.test"]);
        let r = [
            result(
                "x@remote.test",
                Outcome::failed(Enhanced::new(5, 1, 1), "550 no"),
                false,
            ),
            result(
                "z@remote.test",
                Outcome::deferred(Enhanced::new(4, 4, 1), "later"),
                false,
            ),
        ];
        let plan = plan(&e, &p, &r, 1000 + 4 * 3600);
        assert!(matches!(plan.failure_notice, FailureNotice::None));
        assert_eq!(plan.backscatter_withheld, 1);
        assert!(matches!(plan.delay_notice, DelayNotice::Skip));
        assert_eq!(plan.updates(true).len(), 1);
    }

    #[test]
    fn notify_success_to_a_server_without_dsn_is_a_relayed_notice() {
        let mut p = DeliveryParams::default();
        p.rcpt.insert(
            "x@remote.test".into(),
            RecipientParams {
                notify: Some(vec![NotifyOn::Success]),
                orcpt: Some("rfc822;X@remote.test".into()),
            },
        );
        let e = entry("alice@example.test", &["x@remote.test"]);
        let without = plan(&e, &p, &[result("x@remote.test", delivered(), false)], 2000);
        let FailureNotice::Send(n) = &without.failure_notice else {
            panic!("{:?}", without.failure_notice);
        };
        assert_eq!(
            (n[0].action, n[0].status.to_string().as_str()),
            (Action::Relayed, "2.0.0")
        );
        assert_eq!(n[0].original.as_deref(), Some("rfc822;X@remote.test"));
        assert_eq!(
            n[0].explanation,
            "host mx.remote.test said: 250 ok (in reply to end of data)"
        );
        assert!(without.failed.is_empty());
        let with = plan(&e, &p, &[result("x@remote.test", delivered(), true)], 2000);
        assert!(matches!(with.failure_notice, FailureNotice::None));
    }
}

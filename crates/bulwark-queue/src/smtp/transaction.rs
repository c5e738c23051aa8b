//! One mail transaction (RFC 5321 §3.3) as a state machine without I/O: it says what to
//! send, takes the replies in order, and ends with an outcome per recipient. PIPELINING
//! (RFC 2920) changes only when commands are sent, not how replies are judged.

use std::collections::VecDeque;

use bulwark_wire::{Enhanced, Stage};

use crate::message::{needs_utf8, MessageInfo};
use crate::outcome::{Outcome, Verdict};
use crate::params::{xtext, DeliveryParams, NotifyOn, Ret};
use crate::smtp::reply::{Capabilities, Reply};

/// The MAIL and RCPT commands for a transaction, without CRLF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The MAIL FROM command.
    pub mail: String,
    /// One RCPT TO command per recipient, in envelope order.
    pub rcpts: Vec<String>,
}

/// Builds the envelope commands for what the server announced, or refuses (a
/// permanent outcome for every recipient) when the message cannot go to this server
/// as it is. 8-bit content for a server without 8BITMIME arrives here already
/// converted (`downgrade`, RFC 6152 §3); refusing it here is the safety net. An
/// address that needs UTF-8 to a server without SMTPUTF8 is refused (RFC 6531 §3.2). UTF-8 only in header fields goes as 8BITMIME and with the
/// SMTPUTF8 parameter when the server offers it.
pub fn plan(
    caps: &Capabilities,
    return_path: &str,
    recipients: &[String],
    info: &MessageInfo,
    params: &DeliveryParams,
) -> Result<Plan, Outcome> {
    if let Some(limit) = caps.size {
        if info.size as u64 > limit {
            // RFC 1870 §6.1: do not send what the server announced it will refuse.
            return Err(Outcome::failed(
                Enhanced::new(5, 3, 4),
                format!(
                    "the message ({} octets) is larger than the server accepts ({limit} octets, RFC 1870 SIZE)",
                    info.size
                ),
            ));
        }
    }
    if info.eight_bit && !caps.eight_bit_mime {
        return Err(Outcome::failed(
            Enhanced::new(5, 6, 3),
            "the message has 8-bit content and the server does not offer 8BITMIME (RFC 6152)",
        ));
    }
    let utf8_envelope =
        needs_utf8(return_path) || recipients.iter().any(|r| needs_utf8(r.as_str()));
    if utf8_envelope && !caps.smtputf8 {
        return Err(Outcome::failed(
            Enhanced::new(5, 6, 7),
            "an address needs UTF-8 and the server does not offer SMTPUTF8 (RFC 6531)",
        ));
    }

    let mut mail = format!("MAIL FROM:<{return_path}>");
    if caps.size.is_some() {
        mail.push_str(&format!(" SIZE={}", info.size));
    }
    if info.eight_bit {
        mail.push_str(" BODY=8BITMIME");
    }
    if caps.smtputf8 && (utf8_envelope || info.utf8_headers || params.smtputf8) {
        mail.push_str(" SMTPUTF8");
    }
    if caps.dsn {
        // RFC 3461 §5.2: a relaying MTA passes the DSN parameters on.
        if let Some(ret) = params.ret {
            mail.push_str(match ret {
                Ret::Full => " RET=FULL",
                Ret::Hdrs => " RET=HDRS",
            });
        }
        if let Some(envid) = &params.envid {
            mail.push_str(&format!(" ENVID={}", xtext(envid)));
        }
    }
    let rcpts = recipients
        .iter()
        .map(|r| {
            let mut c = format!("RCPT TO:<{r}>");
            if caps.dsn {
                if let Some(notify) = params.notify(r) {
                    let words: Vec<&str> = notify
                        .iter()
                        .map(|n| match n {
                            NotifyOn::Never => "NEVER",
                            NotifyOn::Success => "SUCCESS",
                            NotifyOn::Failure => "FAILURE",
                            NotifyOn::Delay => "DELAY",
                        })
                        .collect();
                    if !words.is_empty() {
                        c.push_str(&format!(" NOTIFY={}", words.join(",")));
                    }
                }
                if let Some(orcpt) = params.orcpt(r) {
                    let (kind, addr) = orcpt.split_once(';').unwrap_or(("rfc822", orcpt));
                    c.push_str(&format!(" ORCPT={kind};{}", xtext(addr)));
                }
            }
            c
        })
        .collect();
    Ok(Plan { mail, rcpts })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Mail,
    Rcpt(usize),
    Data,
    End,
    /// The reply to a lone "." sent only to close a DATA nobody should have accepted.
    IgnoredEnd,
}

/// What the I/O shell does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Write these octets, then read the next reply.
    Send(Vec<u8>),
    /// Write the dot-stuffed message, then read the next reply (with the data timeout).
    SendMessage,
    /// Read the next reply.
    Read,
    /// The transaction is over; `outcomes()` has the result.
    Done,
}

/// One SMTP mail transaction (MAIL, RCPT…, DATA, message) as a state machine without I/O: it says what to send and reads replies until each recipient has an outcome.
#[derive(Debug)]
pub struct Transaction {
    plan: Plan,
    pipelining: bool,
    expect: VecDeque<Expect>,
    mail: Option<Reply>,
    rcpt: Vec<Option<Reply>>,
    data: Option<Reply>,
    end: Option<Reply>,
    message_sent: bool,
}

fn line(cmd: &str) -> Vec<u8> {
    let mut v = cmd.as_bytes().to_vec();
    v.extend_from_slice(b"\r\n");
    v
}

impl Transaction {
    /// A transaction for `plan`, pipelined (RFC 2920) when the server offered PIPELINING.
    pub fn new(plan: Plan, pipelining: bool) -> Transaction {
        let n = plan.rcpts.len();
        Transaction {
            plan,
            pipelining,
            expect: VecDeque::new(),
            mail: None,
            rcpt: vec![None; n],
            data: None,
            end: None,
            message_sent: false,
        }
    }

    /// The first octets to write. With PIPELINING: MAIL, every RCPT and DATA in one
    /// go (RFC 2920 §3.1: DATA ends the group); without: MAIL alone.
    pub fn start(&mut self) -> Vec<u8> {
        let mut out = line(&self.plan.mail);
        self.expect.push_back(Expect::Mail);
        if self.pipelining {
            for (i, r) in self.plan.rcpts.iter().enumerate() {
                out.extend(line(r));
                self.expect.push_back(Expect::Rcpt(i));
            }
            out.extend(line("DATA"));
            self.expect.push_back(Expect::Data);
        }
        out
    }

    /// True while the next reply is the one to the message data (it gets the longer
    /// timeout of RFC 5321 §4.5.3.2.6).
    pub fn awaiting_end(&self) -> bool {
        self.expect.front() == Some(&Expect::End)
    }

    /// True once the message data has been written: a failure after this point may
    /// mean the server has it although we never saw its 250.
    pub fn message_sent(&self) -> bool {
        self.message_sent
    }

    /// Records that the message data has been written (see `message_sent`).
    pub fn mark_message_sent(&mut self) {
        self.message_sent = true;
    }

    fn mail_ok(&self) -> bool {
        self.mail.as_ref().is_some_and(Reply::is_positive)
    }

    fn any_accepted(&self) -> bool {
        self.rcpt
            .iter()
            .any(|r| r.as_ref().is_some_and(Reply::is_positive))
    }

    /// True once any RCPT got an answer: from then on the recipients have individual
    /// outcomes with this server, and trying another host is no longer right.
    pub fn has_recipient_replies(&self) -> bool {
        self.rcpt.iter().any(Option::is_some)
    }

    /// Feeds the next reply from the server; says what to do next.
    pub fn on_reply(&mut self, r: Reply) -> Step {
        let Some(what) = self.expect.pop_front() else {
            return Step::Done;
        };
        match what {
            Expect::Mail => {
                let ok = r.is_positive();
                self.mail = Some(r);
                if self.pipelining {
                    Step::Read
                } else if ok && !self.plan.rcpts.is_empty() {
                    self.expect.push_back(Expect::Rcpt(0));
                    Step::Send(line(&self.plan.rcpts[0]))
                } else {
                    Step::Done
                }
            }
            Expect::Rcpt(i) => {
                if let Some(slot) = self.rcpt.get_mut(i) {
                    *slot = Some(r);
                }
                if self.pipelining {
                    return Step::Read;
                }
                if i + 1 < self.plan.rcpts.len() {
                    self.expect.push_back(Expect::Rcpt(i + 1));
                    Step::Send(line(&self.plan.rcpts[i + 1]))
                } else if self.any_accepted() {
                    self.expect.push_back(Expect::Data);
                    Step::Send(line("DATA"))
                } else {
                    Step::Done
                }
            }
            Expect::Data => {
                let go = r.code.get() == 354;
                self.data = Some(r);
                if go && self.mail_ok() && self.any_accepted() {
                    self.expect.push_back(Expect::End);
                    Step::SendMessage
                } else if go {
                    // RFC 2920 §3.1: a server that says 354 although every recipient
                    // failed gets an empty message it will refuse.
                    self.expect.push_back(Expect::IgnoredEnd);
                    Step::Send(line("."))
                } else {
                    Step::Done
                }
            }
            Expect::End => {
                self.end = Some(r);
                Step::Done
            }
            Expect::IgnoredEnd => Step::Done,
        }
    }

    fn outcome(&self, i: usize, lost: Option<&str>) -> Outcome {
        let deferred = |why: &str| Outcome::deferred(Enhanced::new(4, 4, 2), why.to_string());
        match &self.mail {
            Some(m) if !m.is_positive() => return Outcome::from_reply(m, Stage::MailFrom),
            Some(_) => {}
            None => return deferred(lost.unwrap_or("no reply to MAIL FROM")),
        }
        match self.rcpt.get(i).and_then(Option::as_ref) {
            Some(r) if !r.is_positive() => return Outcome::from_reply(r, Stage::RcptTo),
            Some(_) => {}
            None => return deferred(lost.unwrap_or("no reply to RCPT TO")),
        }
        match &self.data {
            Some(d) if d.code.get() != 354 => return Outcome::from_reply(d, Stage::Data),
            Some(_) => {}
            None => return deferred(lost.unwrap_or("no reply to DATA")),
        }
        match &self.end {
            Some(e) => Outcome::from_reply(e, Stage::EndOfData),
            None => deferred(lost.unwrap_or("no reply to the end of data")),
        }
    }

    /// One outcome per recipient, in plan order, once `Step::Done` was returned.
    pub fn outcomes(&self) -> Vec<Outcome> {
        (0..self.rcpt.len())
            .map(|i| self.outcome(i, None))
            .collect()
    }

    /// The outcomes when the connection broke or timed out mid-transaction: what the
    /// server already decided stands, everything else is deferred with `reason`.
    pub fn abort(&self, reason: &str) -> Vec<Outcome> {
        (0..self.rcpt.len())
            .map(|i| self.outcome(i, Some(reason)))
            .collect()
    }

    /// Recipients refused with 452 (RFC 5321 §4.5.3.1.10: too many recipients) in a
    /// transaction that delivered others: send them again at once in a new one.
    pub fn resend_now(&self) -> Vec<usize> {
        let outcomes = self.outcomes();
        if !outcomes.iter().any(|o| o.verdict == Verdict::Delivered) {
            return Vec::new();
        }
        self.rcpt
            .iter()
            .enumerate()
            .filter(|(_, r)| r.as_ref().is_some_and(|r| r.code.get() == 452))
            .map(|(i, _)| i)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::RecipientParams;
    use crate::smtp::reply::parse;

    fn caps() -> Capabilities {
        Capabilities {
            esmtp: true,
            pipelining: true,
            eight_bit_mime: true,
            size: Some(1000),
            ..Default::default()
        }
    }

    fn info(size: usize, eight_bit: bool) -> MessageInfo {
        MessageInfo {
            size,
            eight_bit,
            utf8_headers: false,
        }
    }

    fn r(s: &str) -> Reply {
        parse(format!("{s}\r\n").as_bytes()).unwrap()
    }

    fn rcpts(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("r{i}@remote.test")).collect()
    }

    #[test]
    fn plan_adds_extensions_the_server_offers() {
        let mut params = DeliveryParams {
            ret: Some(Ret::Hdrs),
            envid: Some("id+1".into()),
            ..Default::default()
        };
        params.rcpt.insert(
            "r0@remote.test".into(),
            RecipientParams {
                notify: Some(vec![NotifyOn::Failure, NotifyOn::Delay]),
                orcpt: Some("rfc822;R0@remote.test".into()),
            },
        );
        let p = plan(&caps(), "a@x.test", &rcpts(1), &info(10, true), &params).unwrap();
        assert_eq!(p.mail, "MAIL FROM:<a@x.test> SIZE=10 BODY=8BITMIME");
        assert_eq!(p.rcpts, vec!["RCPT TO:<r0@remote.test>"]);
        let mut c = caps();
        c.dsn = true;
        let p = plan(&c, "", &rcpts(1), &info(10, false), &params).unwrap();
        assert_eq!(p.mail, "MAIL FROM:<> SIZE=10 RET=HDRS ENVID=id+2B1");
        assert_eq!(
            p.rcpts,
            vec!["RCPT TO:<r0@remote.test> NOTIFY=FAILURE,DELAY ORCPT=rfc822;R0@remote.test"]
        );
    }

    #[test]
    fn plan_refuses_what_the_server_cannot_take() {
        let p = DeliveryParams::default();
        let e = plan(&caps(), "a@x.test", &rcpts(1), &info(1001, false), &p).unwrap_err();
        assert_eq!(
            (e.verdict, e.status.to_string().as_str()),
            (Verdict::Failed, "5.3.4")
        );
        let mut c = caps();
        c.eight_bit_mime = false;
        let e = plan(&c, "a@x.test", &rcpts(1), &info(10, true), &p).unwrap_err();
        assert_eq!(e.status.to_string(), "5.6.3");
        assert!(plan(&c, "a@x.test", &rcpts(1), &info(10, false), &p).is_ok());
        let utf8 = vec!["j\u{f6}rg@remote.test".to_string()];
        let e = plan(&caps(), "a@x.test", &utf8, &info(10, false), &p).unwrap_err();
        assert_eq!(e.status.to_string(), "5.6.7");
        let mut c = caps();
        c.smtputf8 = true;
        let ok = plan(&c, "a@x.test", &utf8, &info(10, false), &p).unwrap();
        assert!(ok.mail.ends_with(" SMTPUTF8"), "{}", ok.mail);
    }

    fn simple_plan(n: usize) -> Plan {
        plan(
            &caps(),
            "a@x.test",
            &rcpts(n),
            &info(10, false),
            &DeliveryParams::default(),
        )
        .unwrap()
    }

    #[test]
    fn pipelined_transaction_with_mixed_recipients() {
        let mut t = Transaction::new(simple_plan(3), true);
        let start = String::from_utf8(t.start()).unwrap();
        assert_eq!(
            start,
            "MAIL FROM:<a@x.test> SIZE=10\r\nRCPT TO:<r0@remote.test>\r\nRCPT TO:<r1@remote.test>\r\nRCPT TO:<r2@remote.test>\r\nDATA\r\n"
        );
        assert_eq!(t.on_reply(r("250 2.1.0 ok")), Step::Read);
        assert_eq!(t.on_reply(r("250 2.1.5 ok")), Step::Read);
        assert_eq!(t.on_reply(r("550 5.1.1 no such user")), Step::Read);
        assert_eq!(t.on_reply(r("451 4.3.0 later")), Step::Read);
        assert_eq!(t.on_reply(r("354 go")), Step::SendMessage);
        assert!(t.awaiting_end());
        t.mark_message_sent();
        assert_eq!(t.on_reply(r("250 2.0.0 queued as X")), Step::Done);
        let o = t.outcomes();
        assert_eq!(o[0].verdict, Verdict::Delivered);
        assert_eq!(o[0].text, "250 2.0.0 queued as X");
        assert_eq!(
            (o[1].verdict, o[1].status.to_string().as_str()),
            (Verdict::Failed, "5.1.1")
        );
        assert_eq!(o[1].stage, Some(Stage::RcptTo));
        assert_eq!(
            (o[2].verdict, o[2].status.to_string().as_str()),
            (Verdict::Deferred, "4.3.0")
        );
        assert!(t.resend_now().is_empty());
    }

    #[test]
    fn pipelined_all_refused_closes_an_unexpected_354() {
        let mut t = Transaction::new(simple_plan(1), true);
        t.start();
        t.on_reply(r("250 ok"));
        t.on_reply(r("550 5.1.1 no"));
        assert_eq!(
            t.on_reply(r("354 go anyway")),
            Step::Send(b".\r\n".to_vec())
        );
        assert_eq!(t.on_reply(r("554 no valid recipients")), Step::Done);
        assert_eq!(t.outcomes()[0].status.to_string(), "5.1.1");
    }

    #[test]
    fn sequential_transaction_stops_early() {
        let mut t = Transaction::new(simple_plan(2), false);
        assert_eq!(t.start(), b"MAIL FROM:<a@x.test> SIZE=10\r\n".to_vec());
        assert_eq!(
            t.on_reply(r("250 ok")),
            Step::Send(b"RCPT TO:<r0@remote.test>\r\n".to_vec())
        );
        assert_eq!(
            t.on_reply(r("550 no")),
            Step::Send(b"RCPT TO:<r1@remote.test>\r\n".to_vec())
        );
        assert_eq!(
            t.on_reply(r("550 no")),
            Step::Done,
            "no DATA without recipients"
        );
        assert!(t.outcomes().iter().all(|o| o.verdict == Verdict::Failed));

        let mut t = Transaction::new(simple_plan(2), false);
        t.start();
        assert_eq!(t.on_reply(r("452 4.3.1 full")), Step::Done);
        let o = t.outcomes();
        assert!(o
            .iter()
            .all(|o| o.verdict == Verdict::Deferred && o.stage == Some(Stage::MailFrom)));

        let mut t = Transaction::new(simple_plan(1), false);
        t.start();
        t.on_reply(r("250 ok"));
        assert_eq!(t.on_reply(r("250 ok")), Step::Send(b"DATA\r\n".to_vec()));
        assert_eq!(t.on_reply(r("554 5.7.1 go away")), Step::Done);
        assert_eq!(t.outcomes()[0].verdict, Verdict::Failed);
    }

    #[test]
    fn a_broken_connection_keeps_decided_outcomes() {
        let mut t = Transaction::new(simple_plan(2), true);
        t.start();
        assert!(!t.has_recipient_replies());
        t.on_reply(r("250 ok"));
        t.on_reply(r("550 5.1.1 no"));
        assert!(t.has_recipient_replies());
        let o = t.abort("connection closed");
        assert_eq!(o[0].verdict, Verdict::Failed);
        assert_eq!(
            (o[1].verdict, o[1].text.as_str()),
            (Verdict::Deferred, "connection closed")
        );
    }

    #[test]
    fn too_many_recipients_are_resent_in_a_new_transaction() {
        let mut t = Transaction::new(simple_plan(3), true);
        t.start();
        t.on_reply(r("250 ok"));
        t.on_reply(r("250 ok"));
        t.on_reply(r("452 4.5.3 too many recipients"));
        t.on_reply(r("452 4.5.3 too many recipients"));
        t.on_reply(r("354 go"));
        t.on_reply(r("250 ok"));
        assert_eq!(t.resend_now(), vec![1, 2]);
    }

    #[test]
    fn a_positive_reply_to_mail_does_not_count_as_delivery() {
        // 2xx anywhere but after the data is no delivery.
        let o = Outcome::from_reply(&r("250 ok"), Stage::RcptTo);
        assert_eq!(
            (o.verdict, o.status.to_string().as_str()),
            (Verdict::Deferred, "4.0.0")
        );
    }
}

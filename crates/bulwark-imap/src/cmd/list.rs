//! LIST and LSUB (RFC 9051 §6.3.9, RFC 3501 §6.3.9), LIST-EXTENDED (RFC 5258),
//! SPECIAL-USE (RFC 6154) and LIST-STATUS (RFC 5819).

use std::collections::{BTreeMap, BTreeSet};

use crate::code::ResponseCode;
use crate::names::{self, encode_mutf7, Pattern, DELIMITER};
use crate::resp::{self, Resp, Sink};
use crate::session::{bad, no, ok, store_no, Done, Next, Session};
use bulwark_store::Mailbox;
use imap_codec::imap_types::{
    mailbox::{ListMailbox, Mailbox as WireMailbox},
    status::StatusDataItemName,
};

impl Session {
    pub(crate) async fn handle_list_extended(
        &mut self,
        ext: crate::list_ext::ListExt,
        sink: &mut dyn Sink,
    ) -> std::io::Result<Next> {
        let tag = ext.tag.clone();
        let done = if self.account.is_none() {
            bad("Log in first (STARTTLS, then LOGIN or AUTHENTICATE)")
        } else {
            let req = ListRequest {
                lsub: false,
                reference: lenient_name(&ext.reference),
                patterns: ext.patterns.iter().map(|p| lenient_name(p)).collect(),
                select_subscribed: ext.select_subscribed,
                select_special_use: ext.select_special_use,
                return_subscribed: ext.return_subscribed || ext.select_subscribed,
                extended: true,
                recursive_match: ext.recursive_match,
                status: ext.status,
            };
            self.list(req, sink).await?
        };
        self.conclude(&tag, "LIST", done, sink).await?;
        Ok(if self.closing {
            Next::Close
        } else {
            Next::Continue
        })
    }

    /// LIST and LSUB (RFC 9051 §6.3.9, RFC 3501 §6.3.9), with the RFC 5258 selection
    /// and return options SUBSCRIBED and SPECIAL-USE (RFC 6154 §5.2).
    pub(crate) async fn list(
        &mut self,
        req: ListRequest,
        sink: &mut dyn Sink,
    ) -> std::io::Result<Done> {
        let verb = if req.lsub { "LSUB" } else { "LIST" };
        if req.patterns.len() == 1 && req.patterns[0].is_empty() && !req.extended {
            // RFC 9051 §6.3.9: the hierarchy delimiter and root.
            resp::line(sink, &format!("* {verb} (\\Noselect) \"/\" \"\"")).await?;
            return Ok(ok(format!("{verb} completed")));
        }
        let Some(patterns) = Patterns::new(&req) else {
            return Ok(no(ResponseCode::Limit.text(format!(
                "Patterns are limited to {} characters",
                names::MAX_PATTERN
            ))));
        };
        let all = match self.store.list_mailboxes(self.account_id()).await {
            Ok(a) => a,
            Err(e) => return Ok(store_no(&e)),
        };
        let subscriptions: BTreeSet<String> =
            if req.lsub || req.select_subscribed || req.return_subscribed {
                match self.store.subscriptions(self.account_id()).await {
                    Ok(s) => s.into_iter().collect(),
                    Err(e) => return Ok(store_no(&e)),
                }
            } else {
                Default::default()
            };
        let catalogue = Catalogue::new(&req, &all, &subscriptions);
        for (attrs, name, childinfo) in catalogue.listed(&patterns) {
            let mut r = Resp::new();
            r.text(&format!("* {verb} ({attrs}) \"/\" "));
            r.astring(encode_mutf7(&name).as_bytes());
            if childinfo {
                r.text(" (\"CHILDINFO\" (\"SUBSCRIBED\"))");
            }
            r.send(sink).await?;
            // RFC 5819 §2: a STATUS response follows the LIST response of each listed
            // mailbox that can be selected (none for \NonExistent or \Noselect).
            if let (Some(items), Some(mb)) = (&req.status, catalogue.by_name.get(name.as_str())) {
                if let Err(d) = self.write_status(mb, items, sink).await? {
                    return Ok(d);
                }
            }
        }
        Ok(ok(format!("{verb} completed")))
    }
}

/// What a LIST or LSUB asks for (the default: plain LIST, no options).
#[derive(Default)]
pub(crate) struct ListRequest {
    pub(crate) lsub: bool,
    /// Decoded reference, prefixed to each pattern.
    pub(crate) reference: String,
    pub(crate) patterns: Vec<String>,
    pub(crate) select_subscribed: bool,
    pub(crate) select_special_use: bool,
    pub(crate) return_subscribed: bool,
    /// LIST-EXTENDED syntax: no implied superiors, no empty-pattern special case.
    pub(crate) extended: bool,
    /// RFC 5258 §3.1 RECURSIVEMATCH with SUBSCRIBED.
    pub(crate) recursive_match: bool,
    /// RFC 5819 LIST-STATUS items.
    pub(crate) status: Option<Vec<StatusDataItemName>>,
}

impl ListRequest {
    pub(crate) fn basic(
        reference: &WireMailbox<'_>,
        pattern: &ListMailbox<'_>,
        lsub: bool,
    ) -> ListRequest {
        let reference = match reference {
            WireMailbox::Inbox => "INBOX".to_string(),
            WireMailbox::Other(o) => lenient_name(o.as_ref()),
        };
        let pattern_bytes: &[u8] = match pattern {
            ListMailbox::Token(t) => t.as_ref(),
            ListMailbox::String(s) => s.as_ref(),
        };
        ListRequest {
            lsub,
            reference,
            patterns: vec![lenient_name(pattern_bytes)],
            ..ListRequest::default()
        }
    }
}

/// LIST references and patterns: decoded when they are valid mUTF-7, else taken as
/// they are (they may contain wildcards and partial names).
pub(crate) fn lenient_name(b: &[u8]) -> String {
    names::decode_mutf7(b).unwrap_or_else(|_| String::from_utf8_lossy(b).into_owned())
}

/// The patterns of a request, each with the reference prefixed, compiled as given
/// and upper-cased (INBOX matches case-insensitively, RFC 9051 §5.1).
struct Patterns(Vec<(Pattern, Pattern)>);

impl Patterns {
    /// `None` when a pattern is longer than `names::MAX_PATTERN`.
    fn new(req: &ListRequest) -> Option<Patterns> {
        let mut compiled = Vec::with_capacity(req.patterns.len());
        for p in &req.patterns {
            let full = format!("{}{p}", req.reference);
            compiled.push((Pattern::new(&full)?, Pattern::new(&full.to_uppercase())?));
        }
        Some(Patterns(compiled))
    }

    fn matches(&self, n: &str) -> bool {
        self.0.iter().any(|(exact, upper)| {
            exact.matches(n)
                || ((n == "INBOX" || n.starts_with("INBOX/")) && upper.matches(&n.to_uppercase()))
        })
    }
}

/// The superiors of a hierarchical name, nearest first (`a/b/c`: `a/b`, then `a`).
fn superiors(name: &str) -> impl Iterator<Item = &str> {
    std::iter::successors(Some(name), |p| p.rfind(DELIMITER).map(|i| &p[..i])).skip(1)
}

/// One LIST/LSUB response: attributes, name, RFC 5258 CHILDINFO ("SUBSCRIBED").
type Listed = (String, String, bool);

/// The account's mailboxes and subscriptions as one LIST request sees them; what it
/// lists is computed here without I/O.
struct Catalogue<'a> {
    req: &'a ListRequest,
    all: &'a [Mailbox],
    subscriptions: &'a BTreeSet<String>,
    by_name: BTreeMap<&'a str, &'a Mailbox>,
}

impl<'a> Catalogue<'a> {
    fn new(
        req: &'a ListRequest,
        all: &'a [Mailbox],
        subscriptions: &'a BTreeSet<String>,
    ) -> Catalogue<'a> {
        let by_name = all.iter().map(|m| (m.name.as_str(), m)).collect();
        Catalogue {
            req,
            all,
            subscriptions,
            by_name,
        }
    }

    fn has_children(&self, n: &str) -> bool {
        let p = format!("{n}{DELIMITER}");
        self.by_name
            .range(p.as_str()..)
            .next()
            .is_some_and(|(x, _)| x.starts_with(&p))
    }

    fn attributes(&self, m: &Mailbox) -> String {
        let mut attrs: Vec<&str> = vec![if self.has_children(&m.name) {
            "\\HasChildren"
        } else {
            "\\HasNoChildren"
        }];
        if let Some(u) = m.special_use {
            attrs.push(u.attribute());
        }
        if self.req.return_subscribed && self.subscriptions.contains(&m.name) {
            attrs.push("\\Subscribed");
        }
        attrs.join(" ")
    }

    /// What the request lists, in the order it is sent.
    fn listed(&self, patterns: &Patterns) -> Vec<Listed> {
        if self.req.lsub || self.req.select_subscribed {
            let mut out = self.listed_subscribed(patterns);
            if self.req.recursive_match {
                self.add_childinfo(patterns, &mut out);
            }
            out
        } else {
            self.listed_existing(patterns)
        }
    }

    /// Subscribed names, whether or not the mailbox exists.
    fn listed_subscribed(&self, patterns: &Patterns) -> Vec<Listed> {
        let mut out = Vec::new();
        let mut parents: BTreeSet<String> = Default::default();
        for name in self.subscriptions {
            if patterns.matches(name) {
                let attrs = match self.by_name.get(name.as_str()) {
                    Some(m) => self.attributes(m),
                    None if self.req.lsub => "\\Noselect".to_string(),
                    None => "\\NonExistent \\Subscribed".to_string(),
                };
                out.push((attrs, name.clone(), false));
            } else if self.req.lsub {
                // RFC 3501 §6.3.9: with "%", a subscribed child's superior that
                // matches is listed \Noselect, even though it is not subscribed.
                for p in superiors(name) {
                    if !self.subscriptions.contains(p) && patterns.matches(p) {
                        parents.insert(p.to_string());
                    }
                }
            }
        }
        for p in parents {
            out.push(("\\Noselect".to_string(), p, false));
        }
        out
    }

    /// RFC 5258 §3.1/§4: a matching superior of a subscribed name that the patterns
    /// do not match itself is listed with CHILDINFO ("SUBSCRIBED"), whether or not it
    /// is subscribed (then it is already in `out`).
    fn add_childinfo(&self, patterns: &Patterns, out: &mut Vec<Listed>) {
        let mut parents: BTreeSet<&str> = Default::default();
        for name in self.subscriptions.iter().filter(|n| !patterns.matches(n)) {
            for p in superiors(name) {
                if patterns.matches(p) {
                    parents.insert(p);
                }
            }
        }
        for p in parents {
            if let Some(e) = out.iter_mut().find(|e| e.1 == p) {
                e.2 = true;
            } else {
                let attrs = match self.by_name.get(p) {
                    Some(m) => self.attributes(m),
                    None => "\\NonExistent".to_string(),
                };
                out.push((attrs, p.to_string(), true));
            }
        }
    }

    /// Existing mailboxes, and (without LIST-EXTENDED) their matching superiors that
    /// do not exist ("%" stops at them).
    fn listed_existing(&self, patterns: &Patterns) -> Vec<Listed> {
        let mut out = Vec::new();
        let mut implied: BTreeSet<String> = Default::default();
        for m in self.all {
            if self.req.select_special_use && m.special_use.is_none() {
                continue;
            }
            if patterns.matches(&m.name) {
                out.push((self.attributes(m), m.name.clone(), false));
            }
            if self.req.extended {
                continue;
            }
            for p in superiors(&m.name) {
                if !self.by_name.contains_key(p) && patterns.matches(p) {
                    implied.insert(p.to_string());
                }
            }
        }
        for p in implied {
            out.push(("\\Noselect \\HasChildren".to_string(), p, false));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulwark_store::{AccountId, MailboxId};

    fn mailbox(name: &str) -> Mailbox {
        Mailbox {
            id: MailboxId(1),
            account_id: AccountId(1),
            name: name.into(),
            uidvalidity: 1,
            uidnext: 1,
            highest_modseq: bulwark_store::ModSeq(1),
            special_use: None,
            subscribed: false,
            first_recent_uid: 1,
        }
    }

    fn request(pattern: &str, lsub: bool) -> ListRequest {
        ListRequest {
            lsub,
            patterns: vec![pattern.into()],
            ..ListRequest::default()
        }
    }

    fn listed(req: &ListRequest, all: &[Mailbox], subs: &BTreeSet<String>) -> Vec<Listed> {
        let p = Patterns::new(req).unwrap();
        Catalogue::new(req, all, subs).listed(&p)
    }

    #[test]
    fn superiors_are_nearest_first() {
        assert_eq!(superiors("a/b/c").collect::<Vec<_>>(), ["a/b", "a"]);
        assert_eq!(superiors("INBOX").count(), 0);
    }

    #[test]
    fn inbox_matches_in_any_case_other_names_exactly() {
        let p = Patterns::new(&request("inbox*", false)).unwrap();
        assert!(p.matches("INBOX") && p.matches("INBOX/x"));
        assert!(p.matches("inboxes") && !p.matches("INBOXES"));
        let long = "x".repeat(names::MAX_PATTERN + 1);
        assert!(Patterns::new(&request(&long, false)).is_none());
    }

    #[test]
    fn list_implies_missing_superiors_and_marks_children() {
        let all = [mailbox("INBOX"), mailbox("a/b/c"), mailbox("a")];
        let subs = BTreeSet::new();
        assert_eq!(
            listed(&request("%", false), &all, &subs),
            vec![
                ("\\HasNoChildren".into(), "INBOX".into(), false),
                ("\\HasChildren".into(), "a".into(), false),
            ]
        );
        assert_eq!(
            listed(&request("a/%", false), &all, &subs),
            vec![("\\Noselect \\HasChildren".into(), "a/b".into(), false)]
        );
    }

    #[test]
    fn lsub_lists_unsubscribed_superiors_noselect() {
        let all = [mailbox("a/b")];
        let subs: BTreeSet<String> = ["a/b".to_string(), "gone".to_string()].into();
        assert_eq!(
            listed(&request("%", true), &all, &subs),
            vec![
                ("\\Noselect".into(), "gone".into(), false),
                ("\\Noselect".into(), "a".into(), false),
            ]
        );
    }

    #[test]
    fn recursive_match_adds_childinfo_to_superiors() {
        let all = [mailbox("a"), mailbox("a/b")];
        let subs: BTreeSet<String> = ["a/b".to_string()].into();
        let mut req = request("%", false);
        req.select_subscribed = true;
        req.recursive_match = true;
        let want = vec![("\\HasChildren".into(), "a".into(), true)];
        assert_eq!(listed(&req, &all, &subs), want);
    }
}

//! THREAD (RFC 5256 §3) with the ORDEREDSUBJECT and REFERENCES algorithms (§2.2,
//! Jamie Zawinski's threading as the RFC words it), over the messages SEARCH finds.

use std::collections::HashMap;

use imap_codec::imap_types::{
    core::Vec1, extensions::thread::ThreadingAlgorithm, search::SearchKey,
};

use crate::resp::Sink;
use crate::search::Hit;
use crate::session::{Done, Session};
use crate::sort::SortFields;

/// A thread tree node: a message (index into the found list) or a dummy.
struct Node {
    msg: Option<usize>,
    parent: Option<usize>,
    children: Vec<usize>,
}

struct Forest<'a> {
    nodes: Vec<Node>,
    found: &'a [(Hit, SortFields)],
}

impl Forest<'_> {
    fn add(&mut self, msg: Option<usize>) -> usize {
        self.nodes.push(Node {
            msg,
            parent: None,
            children: Vec::new(),
        });
        self.nodes.len() - 1
    }

    /// Whether `a` is `b` or one of its ancestors.
    fn is_ancestor(&self, a: usize, b: usize) -> bool {
        let mut at = Some(b);
        while let Some(n) = at {
            if n == a {
                return true;
            }
            at = self.nodes[n].parent;
        }
        false
    }

    fn unlink(&mut self, child: usize) {
        if let Some(p) = self.nodes[child].parent.take() {
            self.nodes[p].children.retain(|&c| c != child);
        }
    }

    fn link(&mut self, parent: usize, child: usize) {
        self.unlink(child);
        self.nodes[child].parent = Some(parent);
        self.nodes[parent].children.push(child);
    }

    /// The node's message, or a dummy's first child's (RFC 5256 §2.2 steps 5 and 6).
    fn first_msg(&self, n: usize) -> Option<usize> {
        let mut at = n;
        loop {
            if let Some(m) = self.nodes[at].msg {
                return Some(m);
            }
            at = *self.nodes[at].children.first()?;
        }
    }

    /// Sort key: sent date, then sequence number.
    fn key(&self, n: usize) -> (i64, u32) {
        self.first_msg(n).map_or((i64::MAX, u32::MAX), |m| {
            (self.found[m].1.date, self.found[m].0.seq)
        })
    }

    fn sort_children(&mut self, n: usize) {
        let mut kids = std::mem::take(&mut self.nodes[n].children);
        for &k in &kids {
            self.sort_children(k);
        }
        kids.sort_by_key(|&k| self.key(k));
        self.nodes[n].children = kids;
    }

    /// Step 4: dummies without children go; a dummy's children take its place,
    /// except a root dummy with several children, which stays.
    fn prune(&mut self, list: Vec<usize>, at_root: bool) -> Vec<usize> {
        let mut out = Vec::with_capacity(list.len());
        for n in list {
            let kids = std::mem::take(&mut self.nodes[n].children);
            let kids = self.prune(kids, false);
            for &k in &kids {
                self.nodes[k].parent = Some(n);
            }
            self.nodes[n].children = kids;
            if self.nodes[n].msg.is_some() || (at_root && self.nodes[n].children.len() > 1) {
                out.push(n);
                continue;
            }
            let kids = std::mem::take(&mut self.nodes[n].children);
            let parent = self.nodes[n].parent;
            for &k in &kids {
                self.nodes[k].parent = parent;
            }
            out.extend(kids);
        }
        out
    }

    fn write(&self, n: usize, uid: bool, out: &mut String) {
        let node = &self.nodes[n];
        if let Some(m) = node.msg {
            let h = &self.found[m].0;
            out.push_str(&(if uid { h.uid } else { h.seq }).to_string());
        }
        match node.children.len() {
            0 => {}
            1 => {
                if node.msg.is_some() {
                    out.push(' ');
                }
                self.write(node.children[0], uid, out);
            }
            _ => {
                if node.msg.is_some() {
                    out.push(' ');
                }
                for &c in &node.children {
                    out.push('(');
                    self.write(c, uid, out);
                    out.push(')');
                }
            }
        }
    }
}

/// RFC 5256 §2.2 ORDEREDSUBJECT: threads of equal base subject, each message of a
/// thread a child of its first, threads by their first message's date.
fn ordered_subject<'a>(found: &'a [(Hit, SortFields)]) -> (Forest<'a>, Vec<usize>) {
    let mut f = Forest {
        nodes: Vec::new(),
        found,
    };
    let mut order: Vec<usize> = (0..found.len()).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (&found[a], &found[b]);
        (&x.1.subject, x.1.date, x.0.seq).cmp(&(&y.1.subject, y.1.date, y.0.seq))
    });
    let mut roots = Vec::new();
    let mut current: Option<(usize, &str)> = None;
    for m in order {
        let n = f.add(Some(m));
        match current {
            Some((root, s)) if s == found[m].1.subject => f.link(root, n),
            _ => {
                roots.push(n);
                current = Some((n, &found[m].1.subject));
            }
        }
    }
    roots.sort_by_key(|&r| f.key(r));
    (f, roots)
}

/// RFC 5256 §2.2 REFERENCES, steps 1 to 6.
fn references<'a>(found: &'a [(Hit, SortFields)]) -> (Forest<'a>, Vec<usize>) {
    let mut f = containers(found);
    // Step 2: the root set.
    let roots: Vec<usize> = (0..f.nodes.len())
        .filter(|&n| f.nodes[n].parent.is_none())
        .collect();
    // Step 4.
    let roots = f.prune(roots, true);
    for &r in &roots {
        f.nodes[r].parent = None;
        f.sort_children(r);
    }
    // Step 5: roots with the same base subject are gathered.
    let mut roots = gather_subjects(&mut f, &roots);
    // Step 6: siblings by sent date, then sequence number.
    for &r in &roots {
        f.nodes[r].parent = None;
        f.sort_children(r);
    }
    roots.sort_by_key(|&r| f.key(r));
    (f, roots)
}

/// RFC 5256 REFERENCES steps 1, 1A and 1B: a container per message and per
/// referenced Message-ID, linked parent to child.
fn containers<'a>(found: &'a [(Hit, SortFields)]) -> Forest<'a> {
    let mut f = Forest {
        nodes: Vec::new(),
        found,
    };
    let mut by_id: HashMap<&str, usize> = HashMap::new();
    for (i, (_, fields)) in found.iter().enumerate() {
        // Step 1: the message's container; a missing or duplicate Message-ID gets a
        // container of its own.
        let me = match fields.message_id.as_deref() {
            Some(id) => match by_id.get(id) {
                Some(&c) if f.nodes[c].msg.is_none() => {
                    f.nodes[c].msg = Some(i);
                    c
                }
                Some(_) => f.add(Some(i)),
                None => {
                    let c = f.add(Some(i));
                    by_id.insert(id, c);
                    c
                }
            },
            None => f.add(Some(i)),
        };
        let mut refs = Vec::with_capacity(fields.references.len());
        for r in &fields.references {
            let c = match by_id.get(r.as_str()) {
                Some(&c) => c,
                None => {
                    let c = f.add(None);
                    by_id.insert(r, c);
                    c
                }
            };
            refs.push(c);
        }
        // Step 1A: each reference is the parent of the next, unless linked already
        // or a loop would result.
        for w in refs.windows(2) {
            let (p, c) = (w[0], w[1]);
            if f.nodes[c].parent.is_none() && !f.is_ancestor(c, p) {
                f.link(p, c);
            }
        }
        // Step 1B: the last reference is the message's parent (replacing a parent a
        // truncated References elsewhere implied), unless that makes a loop.
        f.unlink(me);
        if let Some(&last) = refs.last() {
            if !f.is_ancestor(me, last) {
                f.link(last, me);
            }
        }
    }
    f
}

/// RFC 5256 REFERENCES step 5: roots with the same base subject are gathered under
/// one; the roots that remain.
fn gather_subjects(f: &mut Forest<'_>, roots: &[usize]) -> Vec<usize> {
    let found = f.found;
    let subject = |f: &Forest<'_>, n: usize| {
        f.first_msg(n)
            .map(|m| (found[m].1.subject.as_str(), found[m].1.reply))
    };
    let mut table: HashMap<&str, usize> = HashMap::new();
    for &r in roots {
        let Some((s, reply)) = subject(f, r) else {
            continue;
        };
        if s.is_empty() {
            continue;
        }
        match table.get(s) {
            None => {
                table.insert(s, r);
            }
            Some(&old) => {
                let old_dummy = f.nodes[old].msg.is_none();
                let this_dummy = f.nodes[r].msg.is_none();
                let old_reply = subject(f, old).is_some_and(|x| x.1);
                if !old_dummy && (this_dummy || (old_reply && !reply)) {
                    table.insert(s, r);
                }
            }
        }
    }
    let mut kept: Vec<Option<usize>> = roots.iter().map(|&r| Some(r)).collect();
    let pos: HashMap<usize, usize> = roots.iter().enumerate().map(|(i, &r)| (r, i)).collect();
    for (i, &r) in roots.iter().enumerate() {
        let Some((s, reply)) = subject(f, r) else {
            continue;
        };
        let Some(&old) = table.get(s) else {
            continue;
        };
        if old == r || s.is_empty() {
            continue;
        }
        let old_dummy = f.nodes[old].msg.is_none();
        let this_dummy = f.nodes[r].msg.is_none();
        let old_reply = subject(f, old).is_some_and(|x| x.1);
        if old_dummy && this_dummy {
            for k in std::mem::take(&mut f.nodes[r].children) {
                f.nodes[k].parent = None;
                f.link(old, k);
            }
        } else if old_dummy || (!old_reply && reply) {
            f.link(old, r);
        } else {
            let d = f.add(None);
            f.link(d, old);
            f.link(d, r);
            table.insert(s, d);
            if let Some(&p) = pos.get(&old) {
                kept[p] = Some(d);
            }
        }
        kept[i] = None;
    }
    kept.into_iter().flatten().collect()
}

impl Session {
    pub(crate) async fn thread(
        &mut self,
        algorithm: &ThreadingAlgorithm<'_>,
        charset: &str,
        search: &Vec1<SearchKey<'_>>,
        uid: bool,
        sink: &mut dyn Sink,
    ) -> std::io::Result<Done> {
        let refs = match algorithm {
            ThreadingAlgorithm::References => true,
            ThreadingAlgorithm::OrderedSubject => false,
            ThreadingAlgorithm::Other(_) => {
                return Ok(Done::Bad("Unknown threading algorithm".into()))
            }
        };
        let found = match self.matching_with_fields(charset, search, true).await? {
            Ok(f) => f,
            Err(d) => return Ok(d),
        };
        let (forest, roots) = if refs {
            references(&found)
        } else {
            ordered_subject(&found)
        };
        let mut line = String::from("* THREAD ");
        for r in roots {
            line.push('(');
            forest.write(r, uid, &mut line);
            line.push(')');
        }
        crate::resp::line(sink, line.trim_end()).await?;
        Ok(Done::Ok("THREAD completed".into()))
    }
}

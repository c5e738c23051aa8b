//! The FETCH plan and rendering (RFC 9051 §6.4.5, RFC 3516 BINARY, RFC 7162
//! CHANGEDSINCE/VANISHED/MODSEQ), without I/O.
//!
//! `FetchPlan::new` turns the decoded command into what must be loaded and sent;
//! `render` turns one message's loaded data into its response, leaving holes where
//! literals are sent piece by piece (from memory, or streamed from the store) so the
//! shell in `fetch.rs` only loads batches and writes.

use std::borrow::Cow;
use std::ops::Range;

use bulwark_store::MessageMeta;
use imap_codec::imap_types::{
    command::FetchModifier,
    fetch::{MacroOrMessageDataItemNames, MessageDataItemName, Part, Section},
};

use crate::mime::{SectionText, Summary};
use crate::resp::{internal_date, Resp};

/// One requested item, reduced to what we need to produce it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Item {
    Uid,
    Flags,
    InternalDate,
    Size,
    Envelope,
    BodyStructure,
    /// BODY without section: the non-extensible structure.
    Body,
    ModSeq,
    Section {
        /// How the item is named in the response, e.g. `BODY[HEADER]` or `RFC822`.
        label: String,
        path: Vec<u32>,
        what: SectionText,
        partial: Option<(u32, u32)>,
    },
    /// RFC 3516 `BINARY[path]<partial>` or, with `size`, `BINARY.SIZE[path]`.
    Binary {
        path: Vec<u32>,
        partial: Option<(u32, u32)>,
        size: bool,
    },
}

fn part_path(p: &Option<Part>) -> Vec<u32> {
    p.as_ref()
        .map(|p| p.0.as_ref().iter().map(|n| n.get()).collect())
        .unwrap_or_default()
}

fn path_label(path: &[u32]) -> String {
    path.iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(".")
}

fn section_spec(section: &Option<Section<'_>>) -> (Vec<u32>, SectionText, String) {
    let join = |path: &[u32], what: &str| {
        let p = path_label(path);
        if p.is_empty() {
            what.to_string()
        } else if what.is_empty() {
            p
        } else {
            format!("{p}.{what}")
        }
    };
    let names = |v: &[imap_codec::imap_types::core::AString<'_>]| -> Vec<String> {
        v.iter()
            .map(|a| String::from_utf8_lossy(a.as_ref()).to_uppercase())
            .collect()
    };
    match section {
        None => (Vec::new(), SectionText::Whole, String::new()),
        Some(Section::Part(p)) => {
            let path: Vec<u32> = p.0.as_ref().iter().map(|n| n.get()).collect();
            let label = path_label(&path);
            (path, SectionText::Whole, label)
        }
        Some(Section::Header(p)) => {
            let path = part_path(p);
            let l = join(&path, "HEADER");
            (path, SectionText::Header, l)
        }
        Some(Section::HeaderFields(p, list)) | Some(Section::HeaderFieldsNot(p, list)) => {
            let not = matches!(section, Some(Section::HeaderFieldsNot(..)));
            let path = part_path(p);
            let n = names(list.as_ref());
            let what = if not {
                "HEADER.FIELDS.NOT"
            } else {
                "HEADER.FIELDS"
            };
            let l = format!("{} ({})", join(&path, what), n.join(" "));
            (path, SectionText::HeaderFields { names: n, not }, l)
        }
        Some(Section::Text(p)) => {
            let path = part_path(p);
            let l = join(&path, "TEXT");
            (path, SectionText::Text, l)
        }
        Some(Section::Mime(p)) => {
            let path: Vec<u32> = p.0.as_ref().iter().map(|n| n.get()).collect();
            let l = join(&path, "MIME");
            (path, SectionText::Mime, l)
        }
    }
}

/// The FETCH modifiers (RFC 7162 §3.1.4 CHANGEDSINCE, §3.2.6 VANISHED), read in the
/// order given up to the first one refused.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Modifiers {
    /// CHANGEDSINCE: only messages with a greater MODSEQ (and it enables CONDSTORE).
    pub changed_since: Option<u64>,
    /// VANISHED: report UIDs expunged since CHANGEDSINCE first.
    pub vanished: bool,
    /// The BAD text when a modifier is not allowed here.
    pub refused: Option<&'static str>,
}

impl Modifiers {
    /// Reads the modifiers; VANISHED only in UID FETCH once QRESYNC is on.
    pub(crate) fn new(modifiers: &[FetchModifier], uid: bool, qresync: bool) -> Modifiers {
        let mut out = Modifiers::default();
        for m in modifiers {
            match m {
                FetchModifier::ChangedSince(n) => out.changed_since = Some(n.get()),
                FetchModifier::Vanished if qresync && uid => out.vanished = true,
                FetchModifier::Vanished => {
                    out.refused = Some("VANISHED needs ENABLE QRESYNC, UID FETCH and CHANGEDSINCE");
                    break;
                }
            }
        }
        out
    }
}

/// What one FETCH sends and what it must load for it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct FetchPlan {
    /// The items of each response, in order.
    pub items: Vec<Item>,
    /// A non-PEEK body item: `\Seen` is set before the data is sent (§6.4.5).
    pub set_seen: bool,
    /// MODSEQ was asked for by name (it enables CONDSTORE, RFC 7162 §3.1).
    pub asks_modseq: bool,
    /// Some section other than the whole message, or BINARY: the body in memory.
    pub need_parts: bool,
    /// The whole message (BODY[], RFC822): streamed from the store when not in memory.
    pub need_whole: bool,
    /// ENVELOPE, BODYSTRUCTURE or BODY: the cached summary (or the body to make it).
    pub need_summary: bool,
}

impl FetchPlan {
    /// The plan for `items`. `uid_item`: every response carries the UID (UID FETCH,
    /// or QRESYNC on, RFC 7162 §3.2.4); `condstore`: every response carries MODSEQ
    /// (RFC 7162 §3.1.4.1).
    pub(crate) fn new(
        items: MacroOrMessageDataItemNames<'_>,
        uid_item: bool,
        condstore: bool,
    ) -> FetchPlan {
        let mut list: Vec<Item> = Vec::new();
        if uid_item {
            list.push(Item::Uid);
        }
        let mut set_seen = false;
        for n in macro_names(items) {
            if matches!(n, MessageDataItemName::Uid) && uid_item {
                continue;
            }
            let (it, seen) = item(n);
            set_seen |= seen;
            list.push(it);
        }
        let asks_modseq = list.contains(&Item::ModSeq);
        if condstore && !asks_modseq {
            list.push(Item::ModSeq);
        }
        let whole = |i: &Item| {
            matches!(i, Item::Section { path, what, .. }
                if path.is_empty() && matches!(what, SectionText::Whole))
        };
        FetchPlan {
            need_parts: list
                .iter()
                .any(|i| matches!(i, Item::Binary { .. } | Item::Section { .. }) && !whole(i)),
            need_whole: list.iter().any(whole),
            need_summary: list
                .iter()
                .any(|i| matches!(i, Item::Envelope | Item::BodyStructure | Item::Body)),
            items: list,
            set_seen,
            asks_modseq,
        }
    }

    /// Whether a message's body is read whole into memory (within the budget, twice
    /// its size: the body and the section cut from it) rather than streamed.
    pub(crate) fn in_memory(&self, summary_cached: bool) -> bool {
        self.need_parts || (self.need_summary && !summary_cached)
    }
}

/// The items a macro stands for (RFC 9051 §6.4.5), or the items as named.
fn macro_names(items: MacroOrMessageDataItemNames<'_>) -> Vec<MessageDataItemName<'_>> {
    use imap_codec::imap_types::fetch::Macro;
    use MessageDataItemName as N;
    match items {
        MacroOrMessageDataItemNames::Macro(m) => match m {
            Macro::Fast => vec![N::Flags, N::InternalDate, N::Rfc822Size],
            Macro::All => vec![N::Flags, N::InternalDate, N::Rfc822Size, N::Envelope],
            _ => vec![
                N::Flags,
                N::InternalDate,
                N::Rfc822Size,
                N::Envelope,
                N::Body,
            ],
        },
        MacroOrMessageDataItemNames::MessageDataItemNames(n) => n,
    }
}

/// One item name as an `Item`, and whether it sets `\Seen`.
fn item(n: MessageDataItemName<'_>) -> (Item, bool) {
    let whole = |label: &str, what: SectionText| Item::Section {
        label: label.into(),
        path: vec![],
        what,
        partial: None,
    };
    match n {
        MessageDataItemName::Uid => (Item::Uid, false),
        MessageDataItemName::Flags => (Item::Flags, false),
        MessageDataItemName::InternalDate => (Item::InternalDate, false),
        MessageDataItemName::Rfc822Size => (Item::Size, false),
        MessageDataItemName::Envelope => (Item::Envelope, false),
        MessageDataItemName::BodyStructure => (Item::BodyStructure, false),
        MessageDataItemName::Body => (Item::Body, false),
        MessageDataItemName::ModSeq => (Item::ModSeq, false),
        MessageDataItemName::Rfc822 => (whole("RFC822", SectionText::Whole), true),
        MessageDataItemName::Rfc822Header => (whole("RFC822.HEADER", SectionText::Header), false),
        MessageDataItemName::Rfc822Text => (whole("RFC822.TEXT", SectionText::Text), true),
        MessageDataItemName::BodyExt {
            section,
            partial,
            peek,
        } => {
            let (path, what, spec) = section_spec(&section);
            let it = Item::Section {
                label: format!("BODY[{spec}]"),
                path,
                what,
                partial: partial.map(|(o, n)| (o, n.get())),
            };
            (it, !peek)
        }
        MessageDataItemName::Binary {
            section,
            partial,
            peek,
        } => {
            let it = Item::Binary {
                path: section.iter().map(|n| n.get()).collect(),
                partial: partial.map(|(o, n)| (o, n.get())),
                size: false,
            };
            (it, !peek)
        }
        MessageDataItemName::BinarySize { section } => {
            let it = Item::Binary {
                path: section.iter().map(|n| n.get()).collect(),
                partial: None,
                size: true,
            };
            (it, false)
        }
    }
}

/// One message as loaded for its response.
pub(crate) struct Loaded<'a> {
    pub meta: &'a MessageMeta,
    pub seq: u32,
    pub recent: bool,
    /// This FETCH changed its flags (set `\Seen`): FLAGS is sent even if not asked.
    pub flags_changed: bool,
    /// The body, when the plan reads it into memory.
    pub blob: Option<&'a [u8]>,
    pub summary: Option<&'a Summary>,
}

/// Literal contents sent after the response built so far, piece by piece.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Hole<'a> {
    /// From memory: `data[range]`.
    Memory(Cow<'a, [u8]>, Range<usize>),
    /// Octets `start..end` of the message body, streamed from the store.
    Stream { start: u64, end: u64 },
}

/// One message's response: the text (with literal heads) and its log twin, and the
/// literal contents to insert at offsets of `resp.data`.
pub(crate) struct Rendered<'a> {
    pub resp: Resp,
    pub holes: Vec<(usize, Hole<'a>)>,
    /// A BINARY part's encoding could not be undone: sent as NIL (RFC 3516 §4.2).
    pub unknown_cte: bool,
}

/// The `* n FETCH (…)` response of one message.
pub(crate) fn render<'a>(plan: &FetchPlan, msg: &Loaded<'a>) -> Rendered<'a> {
    let mut out = Rendered {
        resp: Resp::new(),
        holes: Vec::new(),
        unknown_cte: false,
    };
    let m = msg.meta;
    out.resp.text(&format!("* {} FETCH (", msg.seq));
    let mut sent_flags = false;
    for (i, it) in plan.items.iter().enumerate() {
        if i > 0 {
            out.resp.text(" ");
        }
        let r = &mut out.resp;
        match it {
            Item::Uid => {
                r.text(&format!("UID {}", m.uid));
            }
            Item::Flags => {
                sent_flags = true;
                r.text("FLAGS ").flags(&m.flags, msg.recent);
            }
            Item::InternalDate => {
                r.text("INTERNALDATE ")
                    .text(&internal_date(m.internal_date));
            }
            Item::Size => {
                r.text(&format!("RFC822.SIZE {}", m.size));
            }
            Item::ModSeq => {
                r.text(&format!("MODSEQ ({})", m.modseq));
            }
            Item::Envelope => summary_item(r, "ENVELOPE ", msg.summary.map(|s| &s.envelope[..])),
            Item::BodyStructure => summary_item(
                r,
                "BODYSTRUCTURE ",
                msg.summary.map(|s| &s.bodystructure[..]),
            ),
            Item::Body => summary_item(r, "BODY ", msg.summary.map(|s| &s.body[..])),
            Item::Section {
                label,
                path,
                what,
                partial,
            } => render_section(&mut out, msg, label, path, what, *partial),
            Item::Binary {
                path,
                partial,
                size,
            } => render_binary(&mut out, msg.blob, path, *partial, *size),
        }
    }
    if msg.flags_changed && !sent_flags {
        if !plan.items.is_empty() {
            out.resp.text(" ");
        }
        out.resp.text("FLAGS ").flags(&m.flags, msg.recent);
    }
    out.resp.text(")");
    out
}

fn summary_item(r: &mut Resp, name: &str, pre_encoded: Option<&[u8]>) {
    r.text(name);
    if let Some(b) = pre_encoded {
        r.opaque(b, "(…)");
    }
}

/// `<origin.len>` (RFC 9051 §6.4.5) of a section `len` octets long.
fn partial_range(partial: Option<(u32, u32)>, len: u64) -> (u64, u64) {
    match partial {
        Some((o, l)) => {
            let o = u64::from(o).min(len);
            (o, o.saturating_add(u64::from(l)).min(len))
        }
        None => (0, len),
    }
}

/// `start..end` from `partial_range` over a `len`-octet slice, as indexes into it.
/// Both are at most `len`, so the fallback (`len`) is never taken.
fn octets(start: u64, end: u64, len: usize) -> std::ops::Range<usize> {
    let fit = |n: u64| usize::try_from(n).unwrap_or(len);
    fit(start)..fit(end)
}

fn section_label(r: &mut Resp, label: &str, partial: Option<(u32, u32)>) {
    match partial {
        Some((o, _)) => r.text(&format!("{label}<{o}> ")),
        None => r.text(&format!("{label} ")),
    };
}

/// A literal whose contents go in a hole after the head.
fn hole<'a>(out: &mut Rendered<'a>, len: u64, h: Hole<'a>) {
    out.resp.literal_head(len);
    out.holes.push((out.resp.data.len(), h));
}

fn render_section<'a>(
    out: &mut Rendered<'a>,
    msg: &Loaded<'a>,
    label: &str,
    path: &[u32],
    what: &SectionText,
    partial: Option<(u32, u32)>,
) {
    let whole = path.is_empty() && matches!(what, SectionText::Whole);
    section_label(&mut out.resp, label, partial);
    let raw = match msg.blob {
        None if whole => {
            let (start, end) = partial_range(partial, msg.meta.size);
            hole(out, end - start, Hole::Stream { start, end });
            return;
        }
        b => b.unwrap_or_default(),
    };
    // Only part numbers parse the message; HEADER and TEXT are cut from the raw octets.
    let data = crate::mime::section(raw, path, what);
    match (data, partial) {
        (Some(d), p) => {
            let (start, end) = partial_range(p, d.len() as u64);
            let range = octets(start, end, d.len());
            hole(out, end - start, Hole::Memory(d, range));
        }
        (None, Some(_)) => hole(out, 0, Hole::Memory(Cow::Borrowed(&[]), 0..0)),
        (None, None) => {
            out.resp.text("NIL");
        }
    }
}

fn render_binary(
    out: &mut Rendered<'_>,
    blob: Option<&[u8]>,
    path: &[u32],
    partial: Option<(u32, u32)>,
    size: bool,
) {
    let raw = blob.unwrap_or_default();
    let label = path_label(path);
    let data = crate::binary::section(raw, path).unwrap_or_else(|_| {
        out.unknown_cte = true;
        None
    });
    let r = &mut out.resp;
    if size {
        let n = data.as_deref().map_or(0, <[u8]>::len);
        r.text(&format!("BINARY.SIZE[{label}] {n}"));
        return;
    }
    let d: &[u8] = data.as_deref().unwrap_or_default();
    match partial {
        Some((origin, _)) => r.text(&format!("BINARY[{label}]<{origin}> ")),
        None => r.text(&format!("BINARY[{label}] ")),
    };
    let (start, end) = partial_range(partial, d.len() as u64);
    if data.is_none() {
        r.text("NIL");
    } else {
        if crate::binary::needs_literal8(d) {
            r.text("~");
        }
        r.literal(&d[octets(start, end, d.len())]);
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn partial_octets_index_the_slice() {
        assert_eq!(super::octets(0, 0, 0), 0..0);
        let (s, e) = super::partial_range(Some((2, 3)), 10);
        assert_eq!(super::octets(s, e, 10), 2..5);
        let (s, e) = super::partial_range(Some((8, 9)), 10);
        assert_eq!(super::octets(s, e, 10), 8..10);
        assert!(super::octets(u64::MAX, u64::MAX, 10).start >= 10);
    }

    use super::*;
    use bulwark_store::{BlobId, Flags};
    use imap_codec::decode::Decoder;
    use imap_codec::imap_types::command::CommandBody;

    /// The plan and modifiers of `a FETCH 1 <items>`.
    fn plan_of(items: &str, uid_item: bool, condstore: bool) -> (FetchPlan, Modifiers) {
        let line = format!("a UID FETCH 1 {items}\r\n");
        let (_, cmd) = imap_codec::CommandCodec::default()
            .decode(line.as_bytes())
            .expect("a valid FETCH");
        let CommandBody::Fetch {
            macro_or_item_names,
            modifiers,
            ..
        } = cmd.body
        else {
            panic!("not a FETCH");
        };
        let mods = Modifiers::new(&modifiers, true, false);
        (
            FetchPlan::new(macro_or_item_names, uid_item, condstore),
            mods,
        )
    }

    fn meta() -> MessageMeta {
        MessageMeta {
            uid: bulwark_store::Uid(7),
            blob_id: BlobId(1),
            size: 20,
            internal_date: 0,
            flags: Flags::new(Flags::SEEN),
            modseq: bulwark_store::ModSeq(4),
        }
    }

    fn loaded<'a>(m: &'a MessageMeta, blob: Option<&'a [u8]>) -> Loaded<'a> {
        Loaded {
            meta: m,
            seq: 3,
            recent: false,
            flags_changed: false,
            blob,
            summary: None,
        }
    }

    #[test]
    fn macros_expand_and_peek_does_not_set_seen() {
        let (p, _) = plan_of("FAST", false, false);
        assert_eq!(p.items, vec![Item::Flags, Item::InternalDate, Item::Size]);
        assert!(!p.set_seen && !p.need_parts && !p.need_whole && !p.need_summary);
        let (p, _) = plan_of("(BODY.PEEK[HEADER] ENVELOPE)", false, false);
        assert!(!p.set_seen && p.need_parts && !p.need_whole && p.need_summary);
        assert!(p.in_memory(true) && p.in_memory(false));
        let (p, _) = plan_of("BODY[]", false, false);
        assert!(p.set_seen && !p.need_parts && p.need_whole);
        assert!(!p.in_memory(false));
        let (p, _) = plan_of("(RFC822.HEADER BINARY.SIZE[1])", false, false);
        assert!(!p.set_seen && p.need_parts);
        let (p, _) = plan_of("BINARY[1]", false, false);
        assert!(p.set_seen);
    }

    #[test]
    fn uid_comes_first_once_and_modseq_is_added_once() {
        let (p, _) = plan_of("(FLAGS UID)", true, true);
        assert_eq!(p.items, vec![Item::Uid, Item::Flags, Item::ModSeq]);
        assert!(!p.asks_modseq);
        let (p, _) = plan_of("(MODSEQ UID)", false, false);
        assert_eq!(p.items, vec![Item::ModSeq, Item::Uid]);
        assert!(p.asks_modseq);
    }

    #[test]
    fn modifiers_stop_at_the_first_refused() {
        let (_, m) = plan_of("FLAGS (CHANGEDSINCE 5 VANISHED)", false, false);
        assert_eq!(m.changed_since, Some(5));
        assert!(m.refused.is_some() && !m.vanished);
        let (_, m) = plan_of("FLAGS (VANISHED CHANGEDSINCE 5)", false, false);
        assert_eq!(m.changed_since, None);
        assert!(m.refused.is_some());
        let (_, m) = plan_of("FLAGS (CHANGEDSINCE 9)", false, false);
        assert_eq!(
            m,
            Modifiers {
                changed_since: Some(9),
                vanished: false,
                refused: None
            }
        );
    }

    #[test]
    fn sections_from_memory_leave_holes_after_their_heads() {
        let (p, _) = plan_of("(UID BODY.PEEK[HEADER] BODY.PEEK[TEXT]<2.3>)", false, false);
        let raw = b"Subject: x\r\n\r\nhello body";
        let m = meta();
        let r = render(&p, &loaded(&m, Some(raw)));
        let text = String::from_utf8_lossy(&r.resp.data);
        assert_eq!(
            text,
            "* 3 FETCH (UID 7 BODY[HEADER] {14}\r\n BODY[TEXT]<2> {3}\r\n)"
        );
        assert_eq!(r.holes.len(), 2);
        let (at, Hole::Memory(d, range)) = &r.holes[1] else {
            panic!("not from memory");
        };
        assert_eq!(&d[range.clone()], b"llo");
        assert_eq!(
            &text[..*at],
            "* 3 FETCH (UID 7 BODY[HEADER] {14}\r\n BODY[TEXT]<2> {3}\r\n"
        );
        assert!(String::from_utf8_lossy(&r.resp.log).contains("{3}<3 octets>"));
    }

    #[test]
    fn the_whole_body_not_in_memory_is_streamed_in_its_partial_range() {
        let (p, _) = plan_of("BODY[]<15.100>", false, false);
        let m = meta();
        let mut l = loaded(&m, None);
        l.flags_changed = true;
        let r = render(&p, &l);
        assert_eq!(
            String::from_utf8_lossy(&r.resp.data),
            "* 3 FETCH (BODY[]<15> {5}\r\n FLAGS (\\Seen))"
        );
        assert_eq!(r.holes[0].1, Hole::Stream { start: 15, end: 20 });
    }

    #[test]
    fn missing_parts_are_nil_and_binary_sizes_are_inline() {
        let (p, _) = plan_of(
            "(BODY.PEEK[2] BINARY.SIZE[1] BINARY.PEEK[1]<1.2>)",
            false,
            false,
        );
        let m = meta();
        let r = render(&p, &loaded(&m, Some(b"A: b\r\n\r\nxyz")));
        assert_eq!(
            String::from_utf8_lossy(&r.resp.data),
            "* 3 FETCH (BODY[2] NIL BINARY.SIZE[1] 3 BINARY[1]<1> {2}\r\nyz)"
        );
        assert!(r.holes.is_empty() && !r.unknown_cte);
    }
}

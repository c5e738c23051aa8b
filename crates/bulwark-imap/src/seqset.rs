//! Sequence sets (RFC 9051 §9 sequence-set) resolved against a view without ever
//! expanding a range number by number: `1:4294967295` costs what the mailbox holds.

use imap_codec::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};

use crate::view::View;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid message sequence number")]
pub(crate) struct BadSequence;

/// Inclusive ranges with "*" replaced by `star`, low ≤ high.
pub(crate) fn ranges(set: &SequenceSet, star: u32) -> Vec<(u32, u32)> {
    let val = |s: &SeqOrUid| match s {
        SeqOrUid::Value(v) => v.get(),
        SeqOrUid::Asterisk => star,
    };
    set.0
        .as_ref()
        .iter()
        .map(|s| match s {
            Sequence::Single(a) => (val(a), val(a)),
            Sequence::Range(a, b) => {
                let (a, b) = (val(a), val(b));
                (a.min(b), a.max(b))
            }
        })
        .collect()
}

/// True when the set names "*" anywhere.
fn has_star(set: &SequenceSet) -> bool {
    set.0.as_ref().iter().any(|s| match s {
        Sequence::Single(a) => matches!(a, SeqOrUid::Asterisk),
        Sequence::Range(a, b) => matches!(a, SeqOrUid::Asterisk) || matches!(b, SeqOrUid::Asterisk),
    })
}

/// The UIDs a set names, ascending and unique. With sequence numbers, a number above
/// EXISTS is an error (RFC 9051 §6.4); with UIDs, absent ones are ignored (§6.4.9).
pub(crate) fn resolve(view: &View, set: &SequenceSet, uid: bool) -> Result<Vec<u32>, BadSequence> {
    let uids = view.uids();
    let mut idx: Vec<(usize, usize)> = Vec::new(); // half-open index ranges
    if uid {
        let Some(&max) = uids.last() else {
            return Ok(Vec::new());
        };
        for (lo, hi) in ranges(set, max) {
            let a = uids.partition_point(|u| *u < lo);
            let b = uids.partition_point(|u| *u <= hi);
            if a < b {
                idx.push((a, b));
            }
        }
    } else {
        let exists = view.exists();
        if exists == 0 {
            // "*" in an empty mailbox names nothing; explicit numbers are invalid.
            return if has_star(set)
                && set.0.as_ref().iter().all(|s| {
                    matches!(s, Sequence::Single(SeqOrUid::Asterisk))
                        || matches!(s, Sequence::Range(SeqOrUid::Value(v), SeqOrUid::Asterisk) | Sequence::Range(SeqOrUid::Asterisk, SeqOrUid::Value(v)) if v.get() == 1)
                }) {
                Ok(Vec::new())
            } else {
                Err(BadSequence)
            };
        }
        for (lo, hi) in ranges(set, exists) {
            if hi > exists {
                return Err(BadSequence);
            }
            idx.push((lo as usize - 1, hi as usize));
        }
    }
    idx.sort_unstable();
    let mut out: Vec<u32> = Vec::new();
    let mut end = 0usize;
    for (a, b) in idx {
        let a = a.max(end);
        if a < b {
            out.extend_from_slice(&uids[a..b]);
            end = b;
        }
    }
    Ok(out)
}

/// Compact set syntax for ascending numbers: `1:3,7,9:10` (COPYUID, MODIFIED).
pub(crate) fn compress(nums: &[u32]) -> String {
    let mut s = String::new();
    let mut i = 0;
    while i < nums.len() {
        let start = nums[i];
        let mut end = start;
        while i + 1 < nums.len() && nums[i + 1] == end.wrapping_add(1) {
            i += 1;
            end = nums[i];
        }
        if !s.is_empty() {
            s.push(',');
        }
        if start == end {
            s.push_str(&start.to_string());
        } else {
            s.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    s
}

/// Membership test for SEARCH keys: sorted, merged ranges.
pub(crate) struct RangeSet(Vec<(u32, u32)>);

impl RangeSet {
    pub(crate) fn new(mut r: Vec<(u32, u32)>) -> RangeSet {
        r.sort_unstable();
        let mut merged: Vec<(u32, u32)> = Vec::with_capacity(r.len());
        for (lo, hi) in r {
            match merged.last_mut() {
                Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
                _ => merged.push((lo, hi)),
            }
        }
        RangeSet(merged)
    }
    pub(crate) fn contains(&self, n: u32) -> bool {
        let i = self.0.partition_point(|(lo, _)| *lo <= n);
        i > 0 && self.0[i - 1].1 >= n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulwark_store::MailboxId;

    fn set(s: &str) -> SequenceSet {
        SequenceSet::try_from(s).unwrap()
    }

    fn view(uids: Vec<u32>) -> View {
        View::new(MailboxId(1), "INBOX".into(), 1, false, uids, 1)
    }

    #[test]
    fn sequence_numbers() {
        let v = view(vec![3, 5, 9, 12]);
        assert_eq!(resolve(&v, &set("1:*"), false).unwrap(), vec![3, 5, 9, 12]);
        assert_eq!(resolve(&v, &set("2,4"), false).unwrap(), vec![5, 12]);
        assert_eq!(resolve(&v, &set("*:3"), false).unwrap(), vec![9, 12]);
        assert_eq!(resolve(&v, &set("1:2,2:3"), false).unwrap(), vec![3, 5, 9]);
        assert!(resolve(&v, &set("5"), false).is_err());
        assert!(resolve(&view(vec![]), &set("1"), false).is_err());
        assert!(resolve(&view(vec![]), &set("1:*"), false)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn uids_ignore_missing_and_huge_ranges_are_cheap() {
        let v = view(vec![3, 5, 9, 12]);
        assert_eq!(resolve(&v, &set("4:10"), true).unwrap(), vec![5, 9]);
        assert_eq!(
            resolve(&v, &set("1:4294967295"), true).unwrap(),
            vec![3, 5, 9, 12]
        );
        // "n:*" always includes the highest UID (RFC 9051 §6.4.9).
        assert_eq!(resolve(&v, &set("100:*"), true).unwrap(), vec![12]);
        assert!(resolve(&v, &set("13"), true).unwrap().is_empty());
    }

    #[test]
    fn compress_ranges() {
        assert_eq!(compress(&[1, 2, 3, 7, 9, 10]), "1:3,7,9:10");
        assert_eq!(compress(&[]), "");
    }

    #[test]
    fn range_set() {
        let r = RangeSet::new(vec![(5, 7), (1, 2), (100, 200)]);
        assert!(r.contains(1) && r.contains(6) && r.contains(150));
        assert!(!r.contains(3) && !r.contains(99) && !r.contains(201));
    }
}

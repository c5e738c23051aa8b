//! A queue entry's `params`: the type is the store's ([`bulwark_store::DeliveryParams`],
//! serialised with the entry); what only the outbound side needs lives here.

pub use bulwark_store::{DeliveryParams, NotifyOn, RecipientParams, Ret};

/// RFC 3461 §4 xtext: `+XX` for '+', '=', and anything outside `!`..`~`.
pub fn xtext(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (b'!'..=b'~').contains(&b) && b != b'+' && b != b'=' {
            out.push(b as char);
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xtext_encodes_plus_equals_and_controls() {
        assert_eq!(xtext("a+b=c d"), "a+2Bb+3Dc+20d");
        assert_eq!(xtext("rfc822;x@y"), "rfc822;x@y");
    }
}

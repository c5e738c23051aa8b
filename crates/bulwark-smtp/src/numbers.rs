//! Numeric arguments of MAIL (SIZE=, RFC 1870) and BDAT (chunk size, RFC 3030),
//! bounded before smtp-proto reads them.
//!
//! smtp-proto 0.2 saturates a long number and then starts over from the next digit:
//! a 21-digit `SIZE=` became a single digit and passed the size check, and the same
//! parser reads the BDAT chunk size, where a wrong value would make us read the
//! client's data as commands. RFC 1870 §3 bounds size-value to 20 digits; we refuse
//! anything longer, or beyond u64, with 501 5.5.4 instead of guessing.

use crate::reply::{Enhanced, SmtpError};

/// 20 digits: RFC 1870's size-value, and the most a u64 can take.
const MAX_DIGITS: usize = 20;

fn in_range(value: &[u8]) -> bool {
    !value.is_empty()
        && value.len() <= MAX_DIGITS
        && value.iter().all(u8::is_ascii_digit)
        && std::str::from_utf8(value)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .is_some()
}

fn out_of_range(what: &str) -> SmtpError {
    SmtpError::new(
        501,
        Enhanced::new(5, 5, 4),
        "bad_parameter",
        format!("Invalid {what}: at most {MAX_DIGITS} digits"),
    )
}

/// The refusal for a MAIL or BDAT line whose number is out of range, if any.
pub(crate) fn check(line: &[u8]) -> Option<SmtpError> {
    let mut words = line.split(|b| *b == b' ').filter(|w| !w.is_empty());
    let verb = words.next()?;
    if verb.eq_ignore_ascii_case(b"BDAT") {
        let size = words.next()?;
        return (size.iter().all(u8::is_ascii_digit) && !in_range(size))
            .then(|| out_of_range("BDAT chunk size"));
    }
    if verb.eq_ignore_ascii_case(b"MAIL") {
        for w in words {
            if w.len() >= 5 && w[..5].eq_ignore_ascii_case(b"SIZE=") && !in_range(&w[5..]) {
                return Some(out_of_range("SIZE value"));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn numbers_are_bounded() {
        let ok = |l: &str| check(l.as_bytes()).is_none();
        assert!(ok("MAIL FROM:<a@b.test> SIZE=12345"));
        assert!(ok("MAIL FROM:<a@b.test> SIZE=18446744073709551615"));
        assert!(!ok("MAIL FROM:<a@b.test> SIZE=999999999999999999999"));
        assert!(!ok("MAIL FROM:<a@b.test> size=18446744073709551616"));
        assert!(!ok("MAIL FROM:<a@b.test> SIZE="));
        assert!(!ok("MAIL FROM:<a@b.test> SIZE=12x"));
        assert!(ok("BDAT 100 LAST"));
        assert!(!ok("BDAT 100000000000000000000 LAST"));
        assert!(ok("NOOP SIZE=999999999999999999999"));
    }
}

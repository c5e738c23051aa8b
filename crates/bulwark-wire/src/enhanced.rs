//! Enhanced mail system status codes (RFC 3463 §2): `class.subject.detail`, announced
//! in replies with ENHANCEDSTATUSCODES (RFC 2034) and carried in DSNs (RFC 3464).

use std::fmt;
use std::str::FromStr;

/// Largest subject or detail: RFC 3463 §2 allows one to three digits.
const MAX_PART: u16 = 999;

/// An RFC 3463 enhanced status code `class.subject.detail`, class 2 (success),
/// 4 (persistent transient failure) or 5 (permanent failure).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Enhanced {
    class: u8,
    subject: u16,
    detail: u16,
}

/// Why a text or numbers are not an enhanced status code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnhancedError {
    /// The class is not 2, 4 or 5 (RFC 3463 §3.1).
    #[error("enhanced status class {0} is not 2, 4 or 5")]
    Class(u8),
    /// Subject or detail above 999 (RFC 3463 §2: at most three digits).
    #[error("enhanced status subject or detail {0} has more than three digits")]
    Part(u32),
    /// Not `digit.digits.digits`.
    #[error("{0:?} is not an enhanced status code (class.subject.detail)")]
    Syntax(String),
}

impl Enhanced {
    /// A code from constants, usable in `const` and `static` items: an invalid class
    /// or part stops the build there (and panics if reached at run time, which only
    /// literals in our own code can do; input from the network goes through
    /// [`Enhanced::checked`] or [`str::parse`]).
    pub const fn new(class: u8, subject: u16, detail: u16) -> Enhanced {
        assert!(
            matches!(class, 2 | 4 | 5) && subject <= MAX_PART && detail <= MAX_PART,
            "invalid enhanced status code"
        );
        Enhanced {
            class,
            subject,
            detail,
        }
    }

    /// A code from numbers that may be anything.
    pub const fn checked(class: u8, subject: u16, detail: u16) -> Result<Enhanced, EnhancedError> {
        if !matches!(class, 2 | 4 | 5) {
            return Err(EnhancedError::Class(class));
        }
        if subject > MAX_PART {
            return Err(EnhancedError::Part(subject as u32));
        }
        if detail > MAX_PART {
            return Err(EnhancedError::Part(detail as u32));
        }
        Ok(Enhanced {
            class,
            subject,
            detail,
        })
    }

    /// 2, 4 or 5.
    pub const fn class(self) -> u8 {
        self.class
    }

    /// The subject (RFC 3463 §3.2: addressing, mailbox, mail system, …).
    pub const fn subject(self) -> u16 {
        self.subject
    }

    /// The detail within the subject.
    pub const fn detail(self) -> u16 {
        self.detail
    }

    /// Class 4: the same attempt may succeed later.
    pub const fn is_transient(self) -> bool {
        self.class == 4
    }

    /// Class 5: the same attempt will fail again.
    pub const fn is_permanent(self) -> bool {
        self.class == 5
    }
}

impl fmt::Display for Enhanced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

impl FromStr for Enhanced {
    type Err = EnhancedError;

    /// `class.subject.detail` with one digit for the class and one to three for the
    /// others (RFC 3463 §2), nothing around it.
    fn from_str(s: &str) -> Result<Enhanced, EnhancedError> {
        let syntax = || EnhancedError::Syntax(s.chars().take(32).collect());
        let mut parts = s.split('.');
        let (Some(c), Some(sub), Some(d), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(syntax());
        };
        let digits = |p: &str, max: usize| {
            (!p.is_empty() && p.len() <= max && p.bytes().all(|b| b.is_ascii_digit()))
                .then(|| p.parse::<u16>().ok())
                .flatten()
        };
        // One digit always fits the class's u8.
        let class = digits(c, 1).and_then(|c| u8::try_from(c).ok());
        match (class, digits(sub, 3), digits(d, 3)) {
            (Some(c), Some(sub), Some(d)) => Enhanced::checked(c, sub, d),
            _ => Err(syntax()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DENIED: Enhanced = Enhanced::new(5, 7, 1);
    static TLS: Enhanced = Enhanced::new(5, 7, 11);

    #[test]
    fn display_and_parse_round_trip() {
        for s in ["2.0.0", "5.7.1", "4.7.24", "5.7.11", "5.999.999", "4.4.7"] {
            let e: Enhanced = s.parse().unwrap();
            assert_eq!(e.to_string(), s);
        }
        assert_eq!(DENIED.to_string(), "5.7.1");
        assert_eq!(TLS.to_string(), "5.7.11");
        assert_eq!("5.7.11".parse(), Ok(TLS));
        let e = Enhanced::new(4, 3, 0);
        assert_eq!((e.class(), e.subject(), e.detail()), (4, 3, 0));
        assert!(e.is_transient() && !e.is_permanent());
        assert!(DENIED.is_permanent());
    }

    #[test]
    fn parse_refuses_what_is_not_a_code() {
        assert_eq!("3.0.0".parse::<Enhanced>(), Err(EnhancedError::Class(3)));
        assert_eq!("0.0.0".parse::<Enhanced>(), Err(EnhancedError::Class(0)));
        for bad in [
            "", "5", "5.7", "5.7.1.2", "5.7.", ".7.1", "55.7.1", "5.1000.1", "5.7.1 ", " 5.7.1",
            "5.x.1", "5.+7.1", "a.b.c", "5..1",
        ] {
            assert!(bad.parse::<Enhanced>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn checked_bounds() {
        assert_eq!(Enhanced::checked(1, 0, 0), Err(EnhancedError::Class(1)));
        assert_eq!(
            Enhanced::checked(5, 1000, 0),
            Err(EnhancedError::Part(1000))
        );
        assert_eq!(
            Enhanced::checked(5, 0, 1000),
            Err(EnhancedError::Part(1000))
        );
        assert_eq!(Enhanced::checked(2, 999, 999).map(|e| e.detail()), Ok(999));
    }
}

//! The load generator's only calls into the C library (two `sysconf` values and the
//! open-file limit), each behind a safe function. This module is the one place the
//! crate allows `unsafe` (the workspace denies `unsafe_code`); every block says why it
//! is sound.
#![allow(unsafe_code)]

/// `sysconf(name)`: the value, or -1 when the name is unknown or has no limit.
pub fn sysconf(name: libc::c_int) -> libc::c_long {
    // SAFETY: sysconf has no preconditions; an unknown name only returns -1 (EINVAL).
    unsafe { libc::sysconf(name) }
}

/// RLIMIT_NOFILE: raises the soft limit to the hard one. Best effort: when the limit
/// cannot be read or set, it stays as it was. Returns the (soft, hard) limit after.
pub fn raise_open_file_limit() -> Option<(libc::rlim_t, libc::rlim_t)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return None;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim = raised;
        }
    }
    Some((lim.rlim_cur, lim.rlim_max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysconf_knows_the_page_size_and_not_a_bogus_name() {
        assert!(sysconf(libc::_SC_PAGESIZE) > 0);
        assert_eq!(sysconf(-1), -1);
    }

    #[test]
    fn the_soft_open_file_limit_is_raised_to_the_hard_one() {
        let (soft, hard) = raise_open_file_limit().unwrap();
        assert_eq!(soft, hard);
        // Again: nothing left to raise, same answer.
        assert_eq!(raise_open_file_limit(), Some((soft, hard)));
    }
}

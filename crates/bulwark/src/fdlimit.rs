//! The process's open-file limit (RLIMIT_NOFILE): raised to its hard limit at start.
//!
//! Every connection, store file and log holds a descriptor. The usual soft limit
//! (1024) is far below what the listeners admit by default; running out makes
//! `accept` fail on every port at once. The hard limit is what an unprivileged
//! process may raise itself to (setrlimit(2)); the connection slots are derived from
//! the result (`bulwark_net::ConnectionSlots`).

/// Linux refuses RLIM_INFINITY for RLIMIT_NOFILE (the ceiling is fs.nr_open); this is
/// the kernel's default nr_open.
const UNLIMITED_AS: u64 = 1 << 20;

/// Raises the soft limit to the hard limit; returns the soft limit in force after it.
pub fn raise_open_file_limit() -> std::io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let target = if lim.rlim_max == libc::RLIM_INFINITY {
        UNLIMITED_AS
    } else {
        lim.rlim_max
    };
    if lim.rlim_cur != libc::RLIM_INFINITY && lim.rlim_cur < target {
        let raised = libc::rlimit {
            rlim_cur: target,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = target;
        } else {
            tracing::warn!(target: "bulwark", error = %std::io::Error::last_os_error(), soft = lim.rlim_cur, hard = lim.rlim_max, "cannot raise the open-file limit");
        }
    }
    Ok(if lim.rlim_cur == libc::RLIM_INFINITY {
        UNLIMITED_AS
    } else {
        lim.rlim_cur
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raises_the_soft_limit_to_the_hard_one() {
        let n = raise_open_file_limit().unwrap();
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: as above.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        assert_eq!(lim.rlim_cur, n);
        if lim.rlim_max != libc::RLIM_INFINITY {
            assert_eq!(lim.rlim_cur, lim.rlim_max);
        }
    }
}

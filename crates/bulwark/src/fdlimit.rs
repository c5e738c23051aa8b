//! The process's open-file limit (RLIMIT_NOFILE): raised to its hard limit at start.
//!
//! Every connection, store file and log holds a descriptor. The usual soft limit
//! (1024) is far below what the listeners admit by default; running out makes
//! `accept` fail on every port at once. The hard limit is what an unprivileged
//! process may raise itself to (setrlimit(2)); the connection slots are derived from
//! the result (`bulwark_net::ConnectionSlots`).

use crate::sys;

/// Linux refuses RLIM_INFINITY for RLIMIT_NOFILE (the ceiling is fs.nr_open); this is
/// the kernel's default nr_open.
const UNLIMITED_AS: u64 = 1 << 20;

/// Raises the soft limit to the hard limit; returns the soft limit in force after it.
pub fn raise_open_file_limit() -> std::io::Result<u64> {
    let (mut soft, hard) = sys::open_file_limit()?;
    let target = if hard == libc::RLIM_INFINITY {
        UNLIMITED_AS
    } else {
        hard
    };
    if soft != libc::RLIM_INFINITY && soft < target {
        match sys::set_open_file_limit(target, hard) {
            Ok(()) => soft = target,
            Err(error) => {
                tracing::warn!(target: "bulwark", %error, soft, hard, "cannot raise the open-file limit");
            }
        }
    }
    Ok(if soft == libc::RLIM_INFINITY {
        UNLIMITED_AS
    } else {
        soft
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raises_the_soft_limit_to_the_hard_one() {
        let n = raise_open_file_limit().unwrap();
        let (soft, hard) = sys::open_file_limit().unwrap();
        assert_eq!(soft, n);
        if hard != libc::RLIM_INFINITY {
            assert_eq!(soft, hard);
        }
    }
}

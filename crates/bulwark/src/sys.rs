//! The process's only calls into the C library: user and group lookups, the
//! privilege drop, the open-file limit and one allocator setting, each behind a safe
//! function. This module is the one place the workspace allows `unsafe` (the
//! `unsafe_code` lint is denied everywhere else); every block says why it is sound.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString};

/// The effective user ID.
pub fn geteuid() -> libc::uid_t {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// getpwnam_r: (uid, primary gid), or None when there is no such user.
pub fn lookup_user(name: &str) -> Result<Option<(libc::uid_t, libc::gid_t)>, String> {
    let c = CString::new(name).map_err(|_| format!("{name:?} is not a user name"))?;
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: an all-zero passwd is a valid value for getpwnam_r to fill in.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; buf outlives the use of pwd's
    // string fields (we read only the numeric ones).
    let rc = unsafe {
        libc::getpwnam_r(
            c.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 {
        return Err(format!(
            "cannot look up the user {name:?}: {}",
            std::io::Error::from_raw_os_error(rc)
        ));
    }
    Ok((!result.is_null()).then_some((pwd.pw_uid, pwd.pw_gid)))
}

/// getgrnam_r: the gid, or None when there is no such group.
pub fn lookup_group(name: &str) -> Result<Option<libc::gid_t>, String> {
    let c = CString::new(name).map_err(|_| format!("{name:?} is not a group name"))?;
    let mut buf = vec![0u8; 64 * 1024];
    // SAFETY: an all-zero group is a valid value for getgrnam_r to fill in.
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::group = std::ptr::null_mut();
    // SAFETY: as in lookup_user.
    let rc = unsafe {
        libc::getgrnam_r(
            c.as_ptr(),
            &mut grp,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 {
        return Err(format!(
            "cannot look up the group {name:?}: {}",
            std::io::Error::from_raw_os_error(rc)
        ));
    }
    Ok((!result.is_null()).then_some(grp.gr_gid))
}

/// getgrgid_r: a group's name, for messages.
pub fn group_name(gid: libc::gid_t) -> Option<String> {
    let mut buf = vec![0u8; 64 * 1024];
    // SAFETY: as in lookup_group.
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::group = std::ptr::null_mut();
    // SAFETY: as in lookup_group; gr_name points into buf, read before buf is dropped.
    unsafe {
        let rc = libc::getgrgid_r(
            gid,
            &mut grp,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        );
        if rc != 0 || result.is_null() || grp.gr_name.is_null() {
            return None;
        }
        Some(CStr::from_ptr(grp.gr_name).to_string_lossy().into_owned())
    }
}

/// Sets the supplementary groups to `gid` alone, then real/effective/saved gid, then
/// uid, in that order. On failure, which call failed and its error.
pub fn become_ids(
    uid: libc::uid_t,
    gid: libc::gid_t,
) -> Result<(), (&'static str, std::io::Error)> {
    let err = |what| (what, std::io::Error::last_os_error());
    // SAFETY: plain system calls on integers and a one-element array that outlives
    // the call.
    unsafe {
        if libc::setgroups(1, &gid) != 0 {
            return Err(err("setgroups"));
        }
        if libc::setresgid(gid, gid, gid) != 0 {
            return Err(err("setresgid"));
        }
        if libc::setresuid(uid, uid, uid) != 0 {
            return Err(err("setresuid"));
        }
    }
    Ok(())
}

/// The real, effective and saved user and group IDs, or None if they cannot be read.
pub fn current_ids() -> Option<([libc::uid_t; 3], [libc::gid_t; 3])> {
    let (mut r, mut e, mut s) = (0, 0, 0);
    let (mut rg, mut eg, mut sg) = (0, 0, 0);
    // SAFETY: the pointers are to locals.
    let ok = unsafe {
        libc::getresuid(&mut r, &mut e, &mut s) == 0
            && libc::getresgid(&mut rg, &mut eg, &mut sg) == 0
    };
    ok.then_some(([r, e, s], [rg, eg, sg]))
}

/// Tries setuid(0): true if the process became root (again).
pub fn can_become_root() -> bool {
    // SAFETY: a plain system call on an integer.
    unsafe { libc::setuid(0) == 0 }
}

/// RLIMIT_NOFILE as (soft, hard).
pub fn open_file_limit() -> std::io::Result<(libc::rlim_t, libc::rlim_t)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((lim.rlim_cur, lim.rlim_max))
}

/// Sets RLIMIT_NOFILE.
pub fn set_open_file_limit(soft: libc::rlim_t, hard: libc::rlim_t) -> std::io::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: setrlimit only reads the struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Every password check (Argon2id) allocates 19 MiB. glibc's adaptive mmap threshold
/// moves such blocks onto the malloc heaps after the first free, where they stay: a
/// burst of logins then leaves hundreds of MiB (measured: 3 GiB after 200 IMAP
/// logins) that are never returned. A fixed threshold keeps every allocation of
/// 1 MiB or more in its own mapping, given back to the OS when freed.
pub fn keep_large_allocations_unmappable() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only tunes the allocator; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

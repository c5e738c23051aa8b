//! IMAP session core against a real embedded store (in a temporary directory, on
//! /dev/shm when there is one: the store fsyncs), before and after login.
#![no_main]

use std::sync::OnceLock;

use bulwark_imap::fuzzing::SessionEnv;

struct Env {
    env: SessionEnv,
    _dir: tempfile::TempDir,
}

fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let shm = std::path::Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            tempfile::tempdir_in(shm)
        } else {
            tempfile::tempdir()
        }
        .expect("tempdir");
        let env = SessionEnv::new(&dir.path().join("store"));
        Env { env, _dir: dir }
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    env().env.session(data);
});

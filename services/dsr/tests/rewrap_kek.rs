//! `dsr keys rewrap-kek`: the data keys move under a new key-encryption key, what they sealed
//! stays readable, the old KEK stops opening them, and the command refuses to run beside a
//! `dsr up` on the same data directory (the directory's lock, which `dsr up` takes too).

use dsr_crypto::{CryptoError, Keyring};
use std::path::Path;
use std::process::{Command, Output};

fn dsr(args: &[&str], data: &Path, env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dsr"));
    command
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .env_remove("DSR_KEK")
        .env_remove("DSR_NEW_KEK")
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("dsr runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn the_data_keys_move_under_a_new_kek_and_still_open_what_they_sealed() {
    let data = tempfile::tempdir().unwrap();
    let security = data.path().join("security");
    // A registry as a first `dsr up` leaves it: a KEK generated in the data directory.
    let (ring, _, _) = Keyring::open_directory(&security, None, None, 1).unwrap();
    let sealed = ring.seal(b"Zamwe Washongako", b"households/p0");
    drop(ring);
    let new_kek = data.path().join("new.kek");
    std::fs::write(&new_kek, "ab".repeat(32)).unwrap();
    let new_kek = new_kek.to_str().unwrap();

    let refused = dsr(&["keys", "rewrap-kek"], data.path(), &[]);
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("give the new key-encryption key"),
        "{}",
        text(&refused)
    );

    // While the directory is locked (as by a running `dsr up`), nothing is changed.
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(data.path().join("dsr.lock"))
        .unwrap();
    lock.lock().unwrap();
    let busy = dsr(
        &["keys", "rewrap-kek", "--new-kek-file", new_kek],
        data.path(),
        &[],
    );
    assert!(!busy.status.success());
    assert!(text(&busy).contains("is in use"), "{}", text(&busy));
    let up = dsr(&["up", "--listen", "127.0.0.1:0"], data.path(), &[]);
    assert!(!up.status.success());
    assert!(text(&up).contains("is in use"), "{}", text(&up));
    lock.unlock().unwrap();
    assert!(Keyring::open_directory(&security, None, None, 2).is_ok());

    let done = dsr(
        &["keys", "rewrap-kek", "--new-kek-file", new_kek],
        data.path(),
        &[],
    );
    assert!(done.status.success(), "{}", text(&done));
    assert!(
        text(&done).contains("re-wrapped 1 data keys"),
        "{}",
        text(&done)
    );
    assert!(
        text(&done).contains("no longer opens the data keys"),
        "{}",
        text(&done)
    );

    // The old KEK (still in the data directory) is refused; the new one opens the same keys.
    assert!(matches!(
        Keyring::open_directory(&security, None, None, 3),
        Err(CryptoError::WrongKek { .. })
    ));
    let (ring, _, _) =
        Keyring::open_directory(&security, None, Some(Path::new(new_kek)), 3).unwrap();
    assert_eq!(
        ring.open_sealed(&sealed, b"households/p0").unwrap(),
        b"Zamwe Washongako"
    );
    drop(ring);

    // And on to a third KEK given in the environment, from the second given in DSR_KEK.
    let again = dsr(
        &["keys", "rewrap-kek"],
        data.path(),
        &[
            ("DSR_KEK", &"ab".repeat(32)),
            ("DSR_NEW_KEK", &"cd".repeat(32)),
        ],
    );
    assert!(again.status.success(), "{}", text(&again));
    let (ring, _, _) = Keyring::open_directory(&security, Some(&"cd".repeat(32)), None, 4).unwrap();
    assert_eq!(
        ring.open_sealed(&sealed, b"households/p0").unwrap(),
        b"Zamwe Washongako"
    );
}

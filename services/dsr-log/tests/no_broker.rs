//! Without nisshi installed the test broker fails, saying how to install it (never skips).
//! One test in its own binary: it changes the process environment.

use dsr_log::testing::{TestBroker, TestBrokerError};

#[test]
fn a_missing_nisshi_fails_with_the_install_command() {
    let empty = std::env::temp_dir().join(format!("dsr-no-nisshi-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    std::env::remove_var("DSR_NISSHI");
    std::env::set_var("HOME", &empty);
    std::env::set_var("PATH", &empty);

    let error = TestBroker::start().unwrap_err();
    assert!(
        matches!(error, TestBrokerError::NotInstalled { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains(
            "cargo +nightly install nisshi --version 0.8.1 --locked --root ~/.cache/dsr-tools"
        ),
        "{message}"
    );

    std::env::set_var("DSR_NISSHI", empty.join("not-there"));
    let error = TestBroker::start().unwrap_err();
    assert!(
        matches!(error, TestBrokerError::BadOverride { .. }),
        "{error:?}"
    );
    std::fs::remove_dir_all(&empty).unwrap();
}

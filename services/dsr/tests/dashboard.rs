//! The coordinator dashboard in a real browser: `tests/browser/dashboard.py` drives headless
//! Chromium with Playwright against a `dsr up` started and filled here — signs in as the
//! coordinator, drafts a rule with the form, previews it, is refused approving it, signs in
//! as the approver, approves, arms and triggers it, and sees the notification counter move.
//! A screenshot of each step is saved under `artifacts/dashboard/` at the repository root
//! (CI keeps that directory). Needs Chromium (`/usr/bin/chromium`, or `DSR_CHROMIUM`) and the
//! `playwright` Python package (load-tests/requirements.txt); `.ci/run` installs both.

mod support;

use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_and_an_approver_scale_up_from_the_dashboard() {
    let chromium = std::env::var("DSR_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).is_file(),
        "the dashboard test needs Chromium at {chromium} (apt-get install chromium, or set DSR_CHROMIUM); .ci/run installs it"
    );
    let data = tempfile::tempdir().unwrap();
    let registry = support::scale_up::registry(data.path(), 150, &[]).await;
    let shots = support::repo().join("artifacts").join("dashboard");
    let _ = std::fs::remove_dir_all(&shots);

    let script = support::repo().join("services/dsr/tests/browser/dashboard.py");
    let base = registry.base.clone();
    let (coordinator_key, approver_key, district) = (
        registry.coordinator_key.clone(),
        registry.approver_key.clone(),
        registry.district.clone(),
    );
    let shots_dir = shots.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(&script)
            .env("DSR_BASE", &base)
            .env("DSR_COORDINATOR_KEY", coordinator_key)
            .env("DSR_APPROVER_KEY", approver_key)
            .env("DSR_DISTRICT", district)
            .env("DSR_SCREENSHOTS", &shots_dir)
            .env("DSR_CHROMIUM", &chromium)
            .output()
            .expect("python3 runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the browser test failed (is playwright installed? pip install -r load-tests/requirements.txt):\n{stdout}\n{stderr}"
    );

    // A screenshot of every step.
    let mut names: Vec<String> = std::fs::read_dir(&shots)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "01-sign-in.png",
            "02-signed-in-coordinator.png",
            "03-drafted.png",
            "04-previewed.png",
            "05-own-approval-refused.png",
            "06-approved.png",
            "07-armed.png",
            "08-triggered-counter-moved.png",
        ]
    );
    for name in &names {
        let png = std::fs::read(shots.join(name)).unwrap();
        assert!(png.starts_with(b"\x89PNG") && png.len() > 5_000, "{name}");
    }

    // What the browser did is what the registry holds.
    let rule = support::up::get_json(
        &registry.approver,
        format!("{}/v1/scale-up/rules/browser-drought-topup", registry.base),
    )
    .await;
    assert_eq!(rule["state"], "active", "{rule}");
    assert_eq!(rule["drafted_by"], "coordinator-amina");
    assert_eq!(rule["approved_by"], "approver-joseph");
    let households = rule["activation"]["households"].as_u64().unwrap();
    assert!(households > 0, "{rule}");
    assert_eq!(
        rule["activation"]["notifications_sent"].as_u64(),
        Some(households)
    );
    assert!(stdout.contains("counter: "), "{stdout}");
}

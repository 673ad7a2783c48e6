//! The embedded state store, on real directories.

use dsr_core::{apply, Household};
use dsr_store::{FjallState, PartitionState, StateBatch};
use std::path::Path;
use std::sync::Arc;

fn keyring(dir: &Path) -> Arc<dsr_crypto::Keyring> {
    Arc::new(
        dsr_crypto::Keyring::open_directory(&dir.join("security"), None, None, 1)
            .unwrap()
            .0,
    )
}

fn open(dir: &Path) -> Result<FjallState, dsr_store::StoreError> {
    FjallState::open(dir.join("state"), keyring(dir))
}

fn households(n: u64) -> Vec<Household> {
    let pop = dsr_synth::fixtures::small_population(3, n);
    pop.households
        .iter()
        .map(|e| apply(None, e).expect("registrations apply").household)
        .collect()
}

#[test]
fn records_and_offset_commit_together_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let hs = households(200);
    {
        let state = open(dir.path()).unwrap();
        let p = state.partition(3).unwrap();
        assert_eq!(p.next_offset().unwrap(), 0);
        p.commit(&StateBatch {
            households: hs.iter().collect(),
            parked: vec![],
            next_offset: 200,
            programs: vec![("child-grant", b"version 2".as_slice())],
        })
        .unwrap();
        assert_eq!(p.get(&hs[7].household_id).unwrap().as_ref(), Some(&hs[7]));
    }
    let state = open(dir.path()).unwrap();
    let p = state.partition(3).unwrap();
    assert_eq!(p.next_offset().unwrap(), 200);
    assert_eq!(
        p.programs().unwrap(),
        vec![("child-grant".to_owned(), b"version 2".to_vec())]
    );
    let mut n = 0;
    p.for_each(&mut |h| {
        let original = hs
            .iter()
            .find(|o| o.household_id == h.household_id)
            .unwrap();
        assert_eq!(&h, original, "a record reads back exactly as written");
        n += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!(n, 200);
    // Partitions are separate.
    let other = state.partition(4).unwrap();
    assert_eq!(other.next_offset().unwrap(), 0);
    assert!(other.get(&hs[7].household_id).unwrap().is_none());
    assert!(other.programs().unwrap().is_empty());
    // Clearing (before a restore) removes the records, the offset and the rule versions.
    p.clear().unwrap();
    assert_eq!(p.next_offset().unwrap(), 0);
    assert!(p.programs().unwrap().is_empty());
    assert!(p.get(&hs[7].household_id).unwrap().is_none());
}

#[test]
fn a_second_open_of_the_same_directory_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let _first = open(dir.path()).unwrap();
    match open(dir.path()) {
        Ok(_) => panic!("two processes must not share a state directory"),
        Err(e) => assert!(e.to_string().contains("another dsr process"), "{e}"),
    }
}

#[test]
fn a_corrupt_record_is_an_error_not_a_panic() {
    assert!(dsr_store::codec::decode(&[]).is_err());
    assert!(dsr_store::codec::decode(&[9, 1, 2])
        .unwrap_err()
        .to_string()
        .contains("format byte 9"));
    assert!(dsr_store::codec::decode(&[1, 255, 255]).is_err());
}

#[test]
fn ids_and_names_are_not_on_disk_and_a_rotation_reencrypts_while_commits_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let hs = households(300);
    let keys = keyring(dir.path());
    let state = FjallState::open(dir.path().join("state"), Arc::clone(&keys)).unwrap();
    let p = state.partition(0).unwrap();
    p.commit(&StateBatch {
        households: hs.iter().collect(),
        parked: vec![(
            &hs[1].household_id,
            std::slice::from_ref(&dsr_synth::fixtures::small_population(3, 300).households[1]),
        )],
        next_offset: 300,
        ..Default::default()
    })
    .unwrap();
    assert_eq!(
        p.parked_households().unwrap(),
        vec![hs[1].household_id.clone()]
    );
    keys.rotate(2).unwrap();
    // A commit during the pass: a newer version the pass must not overwrite.
    let mut changed = hs[5].clone();
    changed.version += 1;
    let writer = {
        let p = state.partition(0).unwrap();
        let changed = changed.clone();
        std::thread::spawn(move || {
            for _ in 0..20 {
                p.commit(&StateBatch {
                    households: vec![&changed],
                    parked: vec![],
                    next_offset: 301,
                    ..Default::default()
                })
                .unwrap();
            }
        })
    };
    let report = state.reencrypt(&|_| {}).unwrap();
    writer.join().unwrap();
    assert!(report.examined >= 301, "{report:?}");
    assert!(report.resealed >= 1, "{report:?}");
    keys.mark_reencrypted(2).unwrap();
    keys.retire(1).unwrap();
    assert_eq!(p.get(&hs[5].household_id).unwrap(), Some(changed));
    assert_eq!(p.get(&hs[7].household_id).unwrap().as_ref(), Some(&hs[7]));
    assert_eq!(p.parked(&hs[1].household_id).unwrap().len(), 1);
    drop((p, state));

    let needles =
        dsr_synth::fixtures::personal_strings(&dsr_synth::fixtures::small_population(3, 300));
    assert!(needles.len() > 600, "{} needles", needles.len());
    let found = dsr_synth::fixtures::find_in_files(dir.path(), &needles);
    assert!(found.is_empty(), "readable on disk: {found:?}");
}

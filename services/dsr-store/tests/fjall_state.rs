//! The embedded state store, on real directories.

use dsr_core::{apply, Household};
use dsr_store::{FjallState, PartitionState, StateBatch};

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
        let state = FjallState::open(dir.path()).unwrap();
        let p = state.partition(3).unwrap();
        assert_eq!(p.next_offset().unwrap(), 0);
        p.commit(&StateBatch {
            households: hs.iter().collect(),
            parked: vec![],
            next_offset: 200,
        })
        .unwrap();
        assert_eq!(p.get(&hs[7].household_id).unwrap().as_ref(), Some(&hs[7]));
    }
    let state = FjallState::open(dir.path()).unwrap();
    let p = state.partition(3).unwrap();
    assert_eq!(p.next_offset().unwrap(), 200);
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
    // Clearing (before a restore) removes the records and the offset.
    p.clear().unwrap();
    assert_eq!(p.next_offset().unwrap(), 0);
    assert!(p.get(&hs[7].household_id).unwrap().is_none());
}

#[test]
fn a_second_open_of_the_same_directory_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let _first = FjallState::open(dir.path()).unwrap();
    match FjallState::open(dir.path()) {
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

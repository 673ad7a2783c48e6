//! The projector on a real embedded log: every version of every household on the changelog
//! ends in the serving store exactly once, with the lookups of the latest version, also when
//! one household's versions span batches that are prepared while the batch before commits.

use dsr_core::{Context, Household, HouseholdId, PersonId, PmtModel};
use dsr_log::{EmbeddedLog, GroupMember, Log, NewTopicSpec, Record, TopicAdmin, TopicPartition};
use dsr_pipeline::codec::{SchemaIds, WireCodec};
use dsr_pipeline::runner::Codec;
use dsr_serving::{Progress, Projector, ServingStore};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

const CHANGELOG: &str = "t.household-changelog";
const PARTITIONS: i32 = 2;

fn codec() -> WireCodec {
    WireCodec::new(SchemaIds::LOCAL)
}

/// Every version a year of life events makes of each of `households` generated households,
/// in the order they were made.
fn versions(households: u64) -> Vec<Household> {
    let population = dsr_synth::fixtures::small_population(11, households);
    let model = PmtModel::default_model();
    let programs = dsr_pipeline::testing::load_programs(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../programs"),
    );
    let ctx = Context {
        model: &model,
        programs: &programs,
    };
    let mut states: HashMap<HouseholdId, Option<Household>> = HashMap::new();
    let mut out = Vec::new();
    for e in population.households.iter().chain(&population.events) {
        if e.payload.is_area_event() {
            continue;
        }
        let hid = dsr_core::reducer::target_household(e)
            .expect("household events name their household")
            .clone();
        let slot = states.entry(hid).or_default();
        if let Ok(done) = dsr_core::process(slot, e, &ctx) {
            if !done.duplicate {
                out.extend(slot.clone());
            }
        }
    }
    out
}

async fn run_until_applied(projector: &Projector<EmbeddedLog, WireCodec>, count: u64) {
    let progress = projector.progress.clone();
    projector
        .run(async move {
            while progress.applied.load(Ordering::Relaxed) < count {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_version_lands_once_with_the_latest_lookups_across_pipelined_batches() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = EmbeddedLog::open(dir.path().join("log")).unwrap();
    log.create_topic(&NewTopicSpec {
        name: CHANGELOG.into(),
        partitions: PARTITIONS,
        replication_factor: 1,
        configs: vec![],
    })
    .await
    .unwrap();
    let all = versions(40);
    let codec = codec();
    // Keyed by household, as the household processor writes it.
    let records: Vec<Record> = all
        .iter()
        .map(|h| {
            Record::new(
                h.household_id.as_str().as_bytes().to_vec(),
                codec.encode_household(h).unwrap(),
            )
        })
        .collect();
    log.append(CHANGELOG, records).await.unwrap();

    let (keyring, _, _) =
        dsr_crypto::Keyring::open_directory(&dir.path().join("security"), None, None, 1).unwrap();
    let store = ServingStore::open(dir.path().join("serving"), Arc::new(keyring)).unwrap();
    let projector = Projector {
        log: log.clone(),
        codec,
        store: store.clone(),
        changelog: CHANGELOG.into(),
        group: "serving".into(),
        // Small polls: one household's versions span several batches, each prepared while
        // the one before it commits.
        batch_size: 7,
        progress: Progress::default(),
        observer: None,
    };
    run_until_applied(&projector, all.len() as u64).await;
    assert_eq!(
        projector.progress.applied.load(Ordering::Relaxed),
        all.len() as u64,
        "every version applied once"
    );

    let mut latest: BTreeMap<HouseholdId, &Household> = BTreeMap::new();
    let mut made: HashMap<HouseholdId, usize> = HashMap::new();
    let mut people: BTreeMap<PersonId, Option<HouseholdId>> = BTreeMap::new();
    for h in &all {
        latest.insert(h.household_id.clone(), h);
        *made.entry(h.household_id.clone()).or_default() += 1;
        for m in &h.members {
            people.insert(m.person_id.clone(), None);
        }
    }
    assert!(
        made.values().any(|n| *n > 7),
        "some household has more versions than a batch holds"
    );
    for h in latest.values() {
        if !h.dissolved {
            for m in &h.members {
                people.insert(m.person_id.clone(), Some(h.household_id.clone()));
            }
        }
    }
    for (id, h) in &latest {
        assert_eq!(
            store.household(id).unwrap().as_ref(),
            Some(*h),
            "record of {id}"
        );
        assert_eq!(
            store.history(id).unwrap().len(),
            made[id],
            "versions of {id}"
        );
    }
    // The lookups hold each household once, by its latest version: an entry of a version
    // in between (a score, a status it no longer has) would be one too many.
    let sorted = |mut ids: Vec<HouseholdId>| {
        ids.sort();
        ids
    };
    let every: Vec<HouseholdId> = latest.keys().cloned().collect();
    assert_eq!(sorted(store.by_area_prefix("", usize::MAX).unwrap()), every);
    let scored: Vec<HouseholdId> = latest
        .values()
        .filter(|h| h.need_score.is_some())
        .map(|h| h.household_id.clone())
        .collect();
    assert_eq!(
        sorted(store.by_score_range(0.0, 100.0, usize::MAX).unwrap()),
        scored
    );
    let mut statuses = 0;
    for program in ["child-grant", "food-aid", "old-age-pension"] {
        for (status, eligible) in [
            (dsr_serving::Status::Eligible, true),
            (dsr_serving::Status::NotEligible, false),
        ] {
            let expected: Vec<HouseholdId> = latest
                .values()
                .filter(|h| {
                    h.programs
                        .iter()
                        .any(|s| s.program_id == program && s.eligible == eligible)
                })
                .map(|h| h.household_id.clone())
                .collect();
            statuses += expected.len();
            assert_eq!(
                sorted(
                    store
                        .by_program_status(program, status, usize::MAX)
                        .unwrap()
                ),
                expected,
                "{program} {status:?}"
            );
        }
    }
    assert!(statuses > 0, "the programs decided the households");
    for (person, household) in &people {
        assert_eq!(
            &store.household_of(person).unwrap(),
            household,
            "household of {person}"
        );
    }

    // The offsets were committed: the group starts again at the end, and nothing is applied
    // twice.
    let mut member = log.join_group("serving", &[CHANGELOG]).unwrap();
    let partitions: Vec<TopicPartition> = (0..PARTITIONS)
        .map(|p| TopicPartition::new(CHANGELOG, p))
        .collect();
    let committed = member.committed(&partitions).await.unwrap();
    for (tp, done) in partitions.iter().zip(committed) {
        assert_eq!(done, Some(log.end_offset(tp).await.unwrap()), "{tp:?}");
    }
    member.leave().await.unwrap();
    let again = Projector {
        progress: Progress::default(),
        ..projector
    };
    let applied = again.progress.applied.clone();
    again
        .run(tokio::time::sleep(Duration::from_millis(500)))
        .await
        .unwrap();
    assert_eq!(applied.load(Ordering::Relaxed), 0, "nothing applied again");
}

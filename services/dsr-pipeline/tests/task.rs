//! The household task on the real embedded store: crash anywhere, and the states and the
//! outputs come out as if nothing had happened; events for households not registered yet wait
//! and are applied when the household appears.

use dsr_core::eligibility::{ChangeKind, Program};
use dsr_core::rule_versions::{ActivationRecord, RulePreview};
use dsr_core::{Event, Micros, PmtModel};
use dsr_pipeline::{HouseholdTask, Input, Output, Source};
use dsr_store::{FjallState, PartitionState};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

fn programs() -> Vec<Program> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../programs");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| Program::from_yaml(&std::fs::read_to_string(f).unwrap()).unwrap())
        .collect()
}

/// A run over an in-memory log standing in for one partition of `dsr.household-events` and
/// its output partitions. `crash_at` lists batch numbers after which the process "dies" having
/// produced only `keep` of the batch's outputs and committed nothing.
struct Run {
    produced: Vec<(Source, Output)>,
    states: BTreeMap<String, dsr_core::Household>,
    parked: u64,
    unparked: u64,
    /// For each rule activation met: its preview over the records just before it.
    previews: Vec<RulePreview>,
}

fn run(dir: &Path, input: &[Event], batch: usize, crashes: &[(usize, usize)]) -> Run {
    run_inputs(dir, &as_inputs(input), batch, crashes)
}

fn as_inputs(events: &[Event]) -> Vec<Input> {
    events.iter().cloned().map(Input::Event).collect()
}

fn run_inputs(dir: &Path, input: &[Input], batch: usize, crashes: &[(usize, usize)]) -> Run {
    let mut log: Vec<Option<Input>> = input.iter().cloned().map(Some).collect();
    let mut previews: Vec<(usize, RulePreview)> = Vec::new();
    let mut produced: Vec<(Source, Output)> = Vec::new();
    let mut changelog: BTreeMap<String, dsr_core::Household> = BTreeMap::new();
    let (mut parked, mut unparked) = (0, 0);
    let open = || {
        let state = FjallState::open(
            dir.join("state"),
            dsr_pipeline::testing::state_keyring(&dir.join("state")),
        )
        .unwrap();
        HouseholdTask::new(
            state.partition(0).unwrap(),
            PmtModel::default_model(),
            programs(),
        )
        .unwrap()
    };
    let mut task = open();
    let mut batch_no = 0;
    while (task.next_offset() as usize) < log.len() {
        let from = task.next_offset() as usize;
        let mut to = (from + batch).min(log.len());
        // A rule activation gets a batch of its own, previewed on the records just before it
        // (what the API's preview reads once the registry has caught up).
        match log[from..to]
            .iter()
            .position(|i| matches!(i, Some(Input::Activation(_))))
        {
            Some(0) => {
                to = from + 1;
                let Some(Input::Activation(record)) = &log[from] else {
                    unreachable!()
                };
                let a = record.compile().unwrap();
                let mut preview = RulePreview::new(&a);
                task.state()
                    .for_each(&mut |h| {
                        preview.add(&h, &a, 1);
                        Ok(())
                    })
                    .unwrap();
                previews.retain(|(at, _)| *at != from);
                previews.push((from, preview));
            }
            Some(k) => to = from + k,
            None => {}
        }
        let out = task.process_batch(from as u64, &log[from..to]).unwrap();
        // The fences: the last source already in each output partition (a runner reads the
        // tail of each partition it writes; here each output kind stands for one).
        let mut fences: HashMap<String, Source> = HashMap::new();
        for (s, o) in &produced {
            fences.insert(stream(o), *s);
        }
        let crash = crashes
            .iter()
            .find(|(b, _)| *b == batch_no)
            .map(|(_, keep)| *keep);
        let mut n = 0;
        for o in &out.outputs {
            let source = match o {
                Output::Changelog { source, .. }
                | Output::Parked { source, .. }
                | Output::Eligibility { source, .. }
                | Output::Beneficiary { source, .. }
                | Output::Derived { source, .. }
                | Output::DeadLetter { source, .. } => *source,
            };
            if fences.get(&stream(o)).is_some_and(|f| source <= *f) {
                continue;
            }
            if crash.is_some_and(|keep| n >= keep) {
                break;
            }
            if let Output::Derived { event, .. } = o {
                log.push(Some(Input::Event((**event).clone())));
            }
            // A changelog record carries the household's record at the end of the batch.
            if let Output::Changelog { household_id, .. } = o {
                changelog.insert(household_id.to_string(), out.changed[household_id].clone());
            }
            produced.push((source, o.clone()));
            n += 1;
        }
        batch_no += 1;
        if crash.is_some() {
            drop(task);
            task = open();
            continue;
        }
        parked += out.parked_now;
        unparked += out.unparked;
        task.commit(out).unwrap();
    }
    let mut states = BTreeMap::new();
    task.state()
        .for_each(&mut |h| {
            states.insert(h.household_id.to_string(), h);
            Ok(())
        })
        .unwrap();
    Run {
        produced,
        states,
        parked,
        unparked,
        previews: previews.into_iter().map(|(_, p)| p).collect(),
    }
}

/// The output partition an output goes to.
fn stream(o: &Output) -> String {
    match o {
        Output::Changelog { .. } => "changelog".into(),
        Output::Parked { .. } => "parked".into(),
        Output::Eligibility { change, .. } => format!("eligibility.{}", change.program_id),
        Output::Beneficiary { .. } => "beneficiary-events".into(),
        Output::Derived { .. } => "household-events".into(),
        Output::DeadLetter { .. } => "dead-letter".into(),
    }
}

fn population() -> Vec<Event> {
    let pop = dsr_synth::fixtures::small_population(11, 400);
    pop.households
        .into_iter()
        .chain(
            pop.events
                .into_iter()
                .filter(|e| !e.payload.is_area_event()),
        )
        .collect()
}

#[test]
fn crashing_anywhere_changes_neither_states_nor_outputs() {
    let input = population();
    let clean_dir = tempfile::tempdir().unwrap();
    let clean = run(clean_dir.path(), &input, 97, &[]);
    assert!(clean.states.len() >= 400);
    // Crash after batches 0, 3, 7, 12 and 20, each time with a different share of the
    // batch's outputs already produced.
    let crash_dir = tempfile::tempdir().unwrap();
    let crashed = run(
        crash_dir.path(),
        &input,
        97,
        &[(0, 0), (3, 5), (7, 1_000_000), (12, 17), (20, 2)],
    );
    assert_eq!(
        crashed.states, clean.states,
        "the same records after five crashes"
    );
    assert_eq!(
        crashed.produced, clean.produced,
        "the same outputs, in order, none twice"
    );
    let mut ids = HashSet::new();
    let mut changes = 0;
    for (_, o) in &clean.produced {
        if let Output::Eligibility { change, .. } = o {
            assert!(
                ids.insert(change.change_id),
                "change id {} produced twice",
                change.change_id
            );
            changes += 1;
        }
    }
    assert!(
        changes > 100,
        "the population produces eligibility changes ({changes})"
    );
}

#[test]
fn events_before_their_household_wait_and_apply_when_it_registers() {
    let input = population();
    // Three households' registrations arrive after all other events.
    let late: Vec<Event> = input[..3].to_vec();
    let reordered: Vec<Event> = input[3..].iter().cloned().chain(late).collect();
    let a = tempfile::tempdir().unwrap();
    let in_order = run(a.path(), &input, 64, &[]);
    let b = tempfile::tempdir().unwrap();
    let waited = run(b.path(), &reordered, 64, &[]);
    assert!(
        waited.parked > 0 && waited.unparked == waited.parked,
        "parked {} unparked {}",
        waited.parked,
        waited.unparked
    );
    for e in &input[..3] {
        let hid = e.envelope.household_id.as_ref().unwrap().to_string();
        let (x, y) = (&in_order.states[&hid], &waited.states[&hid]);
        assert_eq!(x.members, y.members, "household {hid}: same members");
        assert_eq!(x.need_score, y.need_score, "household {hid}: same score");
        assert_eq!(
            x.version, y.version,
            "household {hid}: same number of events applied"
        );
    }
    let dead: Vec<_> = waited
        .produced
        .iter()
        .filter(|(_, o)| matches!(o, Output::DeadLetter { .. }))
        .collect();
    let dead_in_order = in_order
        .produced
        .iter()
        .filter(|(_, o)| matches!(o, Output::DeadLetter { .. }))
        .count();
    assert_eq!(
        dead.len(),
        dead_in_order,
        "waiting dead-letters nothing extra: {dead:?}"
    );
}

/// Version 2 of the child grant: a lower need-score threshold.
fn child_grant_v2() -> ActivationRecord {
    let mut file = programs()
        .into_iter()
        .find(|p| p.id == "child-grant")
        .unwrap()
        .to_file();
    file.rule_version = 2;
    file.rule = "household.need_score >= 45.0 && household.members.exists(m, m.age < 5)".into();
    ActivationRecord::new(file, "admin", Micros(1_790_000_000_000_000))
}

#[test]
fn a_rule_activation_decides_every_household_again_as_previewed_whatever_the_crashes() {
    let events = population();
    let half = events.len() / 2;
    let mut input = as_inputs(&events[..half]);
    input.push(Input::Activation(Box::new(child_grant_v2())));
    input.extend(as_inputs(&events[half..]));
    let activation = child_grant_v2().compile().unwrap();

    let clean_dir = tempfile::tempdir().unwrap();
    let clean = run_inputs(clean_dir.path(), &input, 97, &[]);
    let [preview] = &clean.previews[..] else {
        panic!("one activation, one preview: {:?}", clean.previews)
    };
    let caused: Vec<_> = clean
        .produced
        .iter()
        .filter_map(|(_, o)| match o {
            Output::Eligibility { change, .. } if change.caused_by == activation.id => Some(change),
            _ => None,
        })
        .collect();
    let count = |k: ChangeKind| caused.iter().filter(|c| c.kind == k).count() as u64;
    assert!(
        preview.entered > 0,
        "the lower threshold lets households in: {preview:?}"
    );
    assert_eq!(count(ChangeKind::Entered), preview.entered, "{preview:?}");
    assert_eq!(count(ChangeKind::Changed), preview.changed, "{preview:?}");
    assert_eq!(count(ChangeKind::Exited), preview.exited, "{preview:?}");
    assert!(caused
        .iter()
        .all(|c| c.rule_version == 2 && c.program_id == "child-grant"));
    // Every household is decided under version 2 from then on, including those registered
    // after the activation.
    for h in clean.states.values() {
        let s = h.programs.iter().find(|s| s.program_id == "child-grant");
        assert_eq!(s.map(|s| s.rule_version), Some(2), "{}", h.household_id);
    }
    // Crashes around the activation's batch (and after it) change nothing.
    let activation_batch = half / 97;
    let crash_dir = tempfile::tempdir().unwrap();
    let crashed = run_inputs(
        crash_dir.path(),
        &input,
        97,
        &[
            (activation_batch, 3),
            (activation_batch + 2, 0),
            (activation_batch + 3, 40),
            (activation_batch + 6, 1),
        ],
    );
    assert_eq!(
        crashed.states, clean.states,
        "the same records after the crashes"
    );
    assert_eq!(
        crashed.produced, clean.produced,
        "the same outputs, in order, none twice"
    );
    // A partition that restarts with the version in its state keeps deciding under it.
    let state = FjallState::open(
        clean_dir.path().join("state"),
        dsr_pipeline::testing::state_keyring(&clean_dir.path().join("state")),
    )
    .unwrap();
    let task = HouseholdTask::new(
        state.partition(0).unwrap(),
        PmtModel::default_model(),
        programs(),
    )
    .unwrap();
    let kept = task
        .programs()
        .iter()
        .find(|p| p.id == "child-grant")
        .unwrap();
    assert_eq!(kept.rule_version, 2);
    assert_eq!(kept.rule.source, activation.program.rule.source);
}

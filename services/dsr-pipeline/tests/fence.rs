//! An append cut short by a crash: only its first records landed, so the output partition ends
//! in records without a source (`dsr-src` is on the last record of each append). The restarted
//! processor must write none of them again and miss none of the rest — from its own state, and
//! from the changelog on a new machine.
//!
//! The cut is made by [`CutShort`]: the real log (embedded, or nisshi on 127.0.0.1) with one
//! append of one topic cut in half and then failed, as a crash between two produce requests of
//! one append leaves a Kafka partition.

use dsr_log::{Appended, Log, LogError, Offset, PartitionReader, Record, TopicPartition};
use dsr_pipeline::runner::{HouseholdProcessor, SOURCE_HEADER};
use dsr_pipeline::testing::{
    holds_the_reference, population, reference, run_until, EmbeddedFixture, Fixture, FixtureLog,
    KafkaFixture,
};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The log, except that the `nth` append of more than one record to `topic` (within
/// [`Log::append_phases`]) writes the phases before it, its own phase with only the first half
/// of that topic's records, and then fails.
struct CutShort<L> {
    log: L,
    topic: String,
    countdown: Arc<AtomicUsize>,
}

const CUT: &str = "cut short by the test";

impl<L: Log> Log for CutShort<L> {
    type Reader = L::Reader;
    type Member = L::Member;

    async fn append(&self, topic: &str, records: Vec<Record>) -> Result<Vec<Appended>, LogError> {
        self.log.append(topic, records).await
    }

    async fn append_phases(&self, phases: Vec<Vec<(String, Vec<Record>)>>) -> Result<(), LogError> {
        let victim = phases.iter().position(|phase| {
            phase
                .iter()
                .any(|(t, records)| *t == self.topic && records.len() > 1)
        });
        let cut_now = victim.is_some() && self.countdown.fetch_sub(1, Ordering::SeqCst) == 1;
        let (Some(victim), true) = (victim, cut_now) else {
            return self.log.append_phases(phases).await;
        };
        let mut written: Vec<_> = phases.into_iter().take(victim + 1).collect();
        for (t, records) in written.last_mut().expect("the victim's phase") {
            if *t == self.topic {
                records.truncate(records.len() / 2);
            }
        }
        self.log.append_phases(written).await?;
        Err(LogError::Append {
            topic: self.topic.clone(),
            source: CUT.into(),
        })
    }

    async fn partition_count(&self, topic: &str) -> Result<i32, LogError> {
        self.log.partition_count(topic).await
    }

    async fn beginning_offset(&self, partition: &TopicPartition) -> Result<Offset, LogError> {
        self.log.beginning_offset(partition).await
    }

    async fn end_offset(&self, partition: &TopicPartition) -> Result<Offset, LogError> {
        self.log.end_offset(partition).await
    }

    fn reader(&self) -> Result<L::Reader, LogError> {
        self.log.reader()
    }

    fn join_group(&self, group_id: &str, topics: &[&str]) -> Result<L::Member, LogError> {
        self.log.join_group(group_id, topics)
    }
}

/// Cuts the third multi-record append to `topic` short, restarts (on the same state directory,
/// or on a new one that restores from the changelog), and checks the result against the domain
/// core.
async fn cut_short_then_restart<L: FixtureLog>(
    fx: &Fixture<L>,
    topic: impl Fn(&Fixture<L>) -> String,
    new_state: bool,
) {
    let events = population(11, 2_000);
    fx.publish(&events).await;
    let expected = reference(&events, &fx.programs);
    let topic = topic(fx);
    let group = "fence-test";
    let state = tempfile::tempdir().expect("a temporary directory");

    let p = fx.processor(state.path(), group);
    let cut = HouseholdProcessor {
        log: CutShort {
            log: fx.log.another(),
            topic: topic.clone(),
            countdown: Arc::new(AtomicUsize::new(3)),
        },
        codec: p.codec,
        state: p.state,
        model: p.model,
        programs: p.programs,
        topics: p.topics,
        group: p.group,
        batch_size: 300,
        linger: p.linger,
        max_parked_per_household: p.max_parked_per_household,
        cache_households: p.cache_households,
        progress: p.progress,
    };
    let crashed = run_until(&cut, async || false).await;
    let error = crashed.expect_err("the processor stops at the cut");
    assert!(error.to_string().contains(CUT), "{error}");
    drop(cut);

    // The scenario happened: a partition of the topic ends in records without a source.
    let mut reader = fx.log.reader().expect("a reader");
    let mut cut_partitions = 0;
    for p in 0..fx.log.partition_count(&topic).await.expect("the topic") {
        let tp = TopicPartition::new(&topic, p);
        let end = fx.log.end_offset(&tp).await.expect("offsets");
        if end == 0 {
            continue;
        }
        let last = reader
            .read(&tp, end - 1, 1, Duration::from_secs(5))
            .await
            .expect("read");
        if last[0].header(SOURCE_HEADER).is_none() {
            cut_partitions += 1;
        }
    }
    assert_eq!(cut_partitions, 1, "one partition of {topic} was cut short");

    let restarted_state = if new_state {
        tempfile::tempdir().expect("a temporary directory")
    } else {
        state
    };
    let mut restarted = fx.processor(restarted_state.path(), group);
    restarted.batch_size = 300;
    // Done when the changelog holds the domain core's records: the eligibility changes of a
    // batch are acknowledged before its changelog records are written.
    let stats = run_until(&restarted, async || {
        holds_the_reference(&expected, &fx.changelog().await)
    })
    .await
    .expect("the restarted processor runs");
    assert!(stats.fenced > 0, "outputs were fenced: {stats:?}");
    fx.assert_matches(&expected).await;
}

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eligibility_changes_cut_short_are_not_written_twice() {
    let fx = EmbeddedFixture::embedded(repo()).await;
    cut_short_then_restart(&fx, |fx| fx.topics.eligibility(&fx.programs[0].id), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changelog_cut_short_is_restored_on_a_new_machine_without_a_gap() {
    let fx = EmbeddedFixture::embedded(repo()).await;
    cut_short_then_restart(&fx, |fx| fx.topics.changelog.clone(), true).await;
}

/// Both cuts on a real broker, where the fence reads back through a Kafka reader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_cut_short_on_kafka_are_not_written_twice_nor_missed() {
    let fx = KafkaFixture::start(repo()).await;
    cut_short_then_restart(&fx, |fx| fx.topics.eligibility(&fx.programs[0].id), false).await;
    drop(fx);
    let fx = KafkaFixture::start(repo()).await;
    cut_short_then_restart(&fx, |fx| fx.topics.changelog.clone(), true).await;
}

//! The household processor on a real Kafka-protocol broker (nisshi, started here), with dsr's
//! own schema registry. The scenario's body is shared with the embedded log's test
//! (`embedded.rs`): `dsr_pipeline::testing::generated_population_matches_the_domain_core`.

use dsr_pipeline::testing::{generated_population_matches_the_domain_core, KafkaFixture};
use std::path::Path;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_population_through_kafka_matches_the_domain_core() {
    let repo = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    let fx = KafkaFixture::kafka(repo).await;
    let households: u64 = std::env::var("DSR_TEST_HOUSEHOLDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    generated_population_matches_the_domain_core(&fx, households).await;
}

//! The household processor on the embedded log (a directory, no server): the same scenario
//! body as the Kafka test (`kafka.rs`).

use dsr_pipeline::testing::{generated_population_matches_the_domain_core, EmbeddedFixture};
use std::path::Path;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_population_through_the_embedded_log_matches_the_domain_core() {
    let repo = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    let fx = EmbeddedFixture::embedded(repo).await;
    let households: u64 = std::env::var("DSR_TEST_HOUSEHOLDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    generated_population_matches_the_domain_core(&fx, households).await;
}

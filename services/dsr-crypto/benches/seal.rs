//! Sealing and opening a household-sized value (1 KiB) with a data key: done for every record
//! written to or read from the log, the processor's state and the serving store.
//!
//! `cargo bench -p dsr-crypto --bench seal`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dsr_crypto::kek::Kek;
use dsr_crypto::Keyring;

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let kek = Kek::from_hex(&"11".repeat(32)).expect("a 64-digit hex KEK");
    let (keyring, _) =
        Keyring::open(&dir.path().join("data-keys.json"), &kek, 1).expect("a new keyring");
    let plain = vec![7u8; 1024];
    let aad = b"households/0123456789abcdef";
    let sealed = keyring.seal(&plain, aad);
    let mut group = c.benchmark_group("data key");
    group.throughput(Throughput::Bytes(plain.len() as u64));
    group.bench_function("seal 1 KiB", |b| b.iter(|| keyring.seal(&plain, aad)));
    group.bench_function("open 1 KiB", |b| {
        b.iter(|| keyring.open_sealed(&sealed, aad).expect("opens"))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

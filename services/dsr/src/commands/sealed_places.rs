//! The places `dsr up` keeps personal data sealed with the data keys, as the data-key rotation
//! (`dsr_api::data_keys`) sees them: the embedded log, the household processor's state and the
//! serving store (the bulk reports are `dsr_api`'s own).

use dsr_api::data_keys::{ProgressFn, SealedPlace};
use dsr_log::EmbeddedLog;
use dsr_serving::ServingStore;
use dsr_store::FjallState;
use std::future::Future;
use std::pin::Pin;

type Pass<'a> = Pin<Box<dyn Future<Output = Result<u64, String>> + Send + 'a>>;
/// A store's blocking re-encryption pass: how many values it re-sealed.
type BlockingPass<S> = fn(&S, &dyn Fn(u64)) -> Result<u64, String>;

pub struct Log(pub EmbeddedLog);

impl SealedPlace for Log {
    fn name(&self) -> &'static str {
        "embedded log (bytes)"
    }

    fn size(&self) -> u64 {
        self.0.disk_bytes()
    }

    fn reencrypt(&self, progress: ProgressFn) -> Pass<'_> {
        Box::pin(async move {
            self.0
                .reencrypt(move |done, _total| progress(done))
                .await
                .map(|r| r.resealed)
                .map_err(|e| e.to_string())
        })
    }
}

/// Runs a store's blocking pass on the blocking pool.
fn blocking<S: Clone + Send + 'static>(
    store: &S,
    progress: ProgressFn,
    pass: BlockingPass<S>,
) -> Pass<'static> {
    let store = store.clone();
    Box::pin(async move {
        tokio::task::spawn_blocking(move || pass(&store, &|done| progress(done)))
            .await
            .map_err(|e| e.to_string())?
    })
}

pub struct State(pub FjallState);

impl SealedPlace for State {
    fn name(&self) -> &'static str {
        "household processor state"
    }

    fn size(&self) -> u64 {
        self.0.approximate_len()
    }

    fn reencrypt(&self, progress: ProgressFn) -> Pass<'_> {
        blocking(&self.0, progress, |s, p| {
            s.reencrypt(p)
                .map(|r| r.resealed)
                .map_err(|e| e.to_string())
        })
    }
}

pub struct Serving(pub ServingStore);

impl SealedPlace for Serving {
    fn name(&self) -> &'static str {
        "serving store"
    }

    fn size(&self) -> u64 {
        self.0.approximate_len()
    }

    fn reencrypt(&self, progress: ProgressFn) -> Pass<'_> {
        blocking(&self.0, progress, |s, p| {
            s.reencrypt(p)
                .map(|r| r.resealed)
                .map_err(|e| e.to_string())
        })
    }
}

/// The programs' webhook secrets and dead letters.
pub struct Delivery(pub std::sync::Arc<dsr_delivery::Delivery>);

impl SealedPlace for Delivery {
    fn name(&self) -> &'static str {
        "webhook secrets and delivery dead letters"
    }

    fn size(&self) -> u64 {
        self.0.subscriptions.secret_count() + self.0.dead_letters.len()
    }

    fn reencrypt(&self, progress: ProgressFn) -> Pass<'_> {
        blocking(&self.0, progress, |d, p| {
            let secrets = d.subscriptions.reencrypt().map_err(|e| e.to_string())?;
            p(secrets);
            let letters = d.dead_letters.reencrypt().map_err(|e| e.to_string())?;
            p(secrets + letters);
            Ok(secrets + letters)
        })
    }
}

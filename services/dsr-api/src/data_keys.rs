//! The data keys over HTTP (admins): list them, rotate to a new one — new writes use it at once,
//! and a background pass re-encrypts what every store holds while the registry keeps running —
//! and retire an old one once the pass has finished.
//!
//! The stores are behind [`SealedPlace`], so this module does not know which log or state
//! store the deployment runs; `dsr up` hands in its embedded log, processor state, serving
//! store and bulk reports.

use crate::access::{audit, now_ms};
use crate::{problem, ApiState};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use dsr_access::Identity;
use dsr_crypto::{CryptoError, KeyInfo, Keyring};
use serde::Serialize;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

/// Tells a re-encryption how far it got (units are the place's own: values or bytes).
pub type ProgressFn = Arc<dyn Fn(u64) + Send + Sync>;

/// One place that keeps personal data sealed with the data keys.
pub trait SealedPlace: Send + Sync {
    /// A name for operators ("embedded log", "serving store", …).
    fn name(&self) -> &'static str;
    /// How much there is to look at (approximately, in the units `reencrypt` reports).
    fn size(&self) -> u64;
    /// Re-encrypts everything not under the active key while the registry runs; how many
    /// values or records were re-encrypted.
    fn reencrypt(
        &self,
        progress: ProgressFn,
    ) -> Pin<Box<dyn Future<Output = Result<u64, String>> + Send + '_>>;
}

/// The keyring, the places it protects, and the state of the current or last rotation.
pub struct DataKeys {
    pub keyring: Arc<Keyring>,
    pub places: Vec<Arc<dyn SealedPlace>>,
    rotation: Arc<Mutex<Rotation>>,
}

impl DataKeys {
    pub fn new(keyring: Arc<Keyring>, places: Vec<Arc<dyn SealedPlace>>) -> DataKeys {
        DataKeys {
            keyring,
            places,
            rotation: Arc::default(),
        }
    }
}

/// A rotation as operators follow it.
#[derive(Clone, Debug, Default, Serialize, utoipa::ToSchema)]
pub struct Rotation {
    /// `idle` (none since start), `running`, `finished` or `failed`.
    pub state: &'static str,
    /// The key new writes use since the rotation.
    pub key_id: Option<u32>,
    pub started_ms: Option<i64>,
    pub finished_ms: Option<i64>,
    /// Progress per place.
    pub places: Vec<PlaceProgress>,
    /// Why it failed (the old keys stay until a rotation finishes).
    pub error: Option<String>,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct PlaceProgress {
    pub name: &'static str,
    pub done: u64,
    pub total: u64,
    pub resealed: u64,
    pub finished: bool,
}

/// The data keys and the rotation, as `GET /v1/admin/data-keys` answers.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DataKeysView {
    /// The key new writes are sealed with.
    pub active: u32,
    #[schema(value_type = Vec<Object>)]
    pub keys: Vec<KeyInfo>,
    /// Keys nothing is sealed with any more (a rotation finished after they were replaced).
    pub retirable: Vec<u32>,
    pub rotation: Rotation,
}

fn view(keys: &DataKeys) -> DataKeysView {
    DataKeysView {
        active: keys.keyring.active_key(),
        keys: keys.keyring.keys(),
        retirable: keys.keyring.retirable(),
        rotation: keys.rotation.lock().expect("rotation lock").clone(),
    }
}

fn crypto_problem(e: &CryptoError) -> Response {
    let status = match e {
        CryptoError::NoSuchKey { .. } => StatusCode::NOT_FOUND,
        CryptoError::RetireActive { .. } | CryptoError::StillInUse { .. } => StatusCode::CONFLICT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    problem(status, e.to_string())
}

/// The data keys (never their bytes), which can be retired, and the rotation's progress.
#[utoipa::path(get, path = "/v1/admin/data-keys", tag = "identity",
    responses((status = 200, description = "The data keys and the rotation", body = DataKeysView)))]
pub async fn get_data_keys(State(state): State<Arc<ApiState>>) -> Response {
    Json(view(&state.data_keys)).into_response()
}

/// Rotates the data key: new writes are sealed with a new key at once; a background pass
/// re-encrypts everything stored, with no downtime. Follow it with `GET /v1/admin/data-keys`.
#[utoipa::path(post, path = "/v1/admin/data-keys/rotate", tag = "identity",
    responses(
        (status = 202, description = "Rotated; re-encryption runs in the background", body = DataKeysView),
        (status = 409, description = "A rotation is still running", body = crate::answers::Problem)
    ))]
pub async fn rotate_data_key(
    State(state): State<Arc<ApiState>>,
    Extension(identity): Extension<Identity>,
) -> Response {
    let keys = &state.data_keys;
    {
        let mut rotation = keys.rotation.lock().expect("rotation lock");
        if rotation.state == "running" {
            return problem(
                StatusCode::CONFLICT,
                format!(
                    "a rotation to key {} is still running; wait for it (GET /v1/admin/data-keys)",
                    rotation.key_id.unwrap_or_default()
                ),
            );
        }
        let key_id = match keys.keyring.rotate(now_ms()) {
            Ok(id) => id,
            Err(e) => {
                let _ = audit(
                    &state,
                    Some(&identity),
                    "data-key.rotate",
                    Vec::new(),
                    None,
                    format!("failed: {e}"),
                );
                return crypto_problem(&e);
            }
        };
        *rotation = Rotation {
            state: "running",
            key_id: Some(key_id),
            started_ms: Some(now_ms()),
            finished_ms: None,
            places: keys
                .places
                .iter()
                .map(|p| PlaceProgress {
                    name: p.name(),
                    done: 0,
                    total: p.size(),
                    resealed: 0,
                    finished: false,
                })
                .collect(),
            error: None,
        };
        tracing::info!(key_id, "data key rotated; re-encrypting stored data");
    }
    if let Err(r) = audit(
        &state,
        Some(&identity),
        "data-key.rotate",
        vec![format!("data-key:{}", keys.keyring.active_key())],
        None,
        "allowed",
    ) {
        return r;
    }
    tokio::spawn(reencrypt_everything(Arc::clone(&state)));
    (StatusCode::ACCEPTED, Json(view(keys))).into_response()
}

/// The background pass of a rotation.
async fn reencrypt_everything(state: Arc<ApiState>) {
    let keys = &state.data_keys;
    let key_id = keys.keyring.active_key();
    // Writes sealed just before the switch may still be on their way to a store; give them
    // time to land, so the pass sees them.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let mut failure = None;
    for (i, place) in keys.places.iter().enumerate() {
        let rotation = Arc::clone(&keys.rotation);
        let progress: ProgressFn = Arc::new(move |done| {
            if let Some(p) = rotation.lock().expect("rotation lock").places.get_mut(i) {
                p.done = done;
                p.total = p.total.max(done);
            }
        });
        match place.reencrypt(progress).await {
            Ok(resealed) => {
                let mut rotation = keys.rotation.lock().expect("rotation lock");
                if let Some(p) = rotation.places.get_mut(i) {
                    p.resealed = resealed;
                    p.finished = true;
                    p.done = p.total.max(p.done);
                }
            }
            Err(e) => {
                failure = Some(format!("{}: {e}", place.name()));
                break;
            }
        }
    }
    if failure.is_none() {
        if let Err(e) = keys.keyring.mark_reencrypted(key_id) {
            failure = Some(e.to_string());
        }
    }
    let mut rotation = keys.rotation.lock().expect("rotation lock");
    rotation.finished_ms = Some(now_ms());
    match failure {
        None => {
            rotation.state = "finished";
            tracing::info!(
                key_id,
                "re-encryption finished; older data keys can be retired"
            );
        }
        Some(e) => {
            tracing::error!(key_id, error = %e, "re-encryption failed; the old keys stay");
            rotation.state = "failed";
            rotation.error = Some(e);
        }
    }
}

/// Retires a data key for good: refused while it is active or while stored data may still be
/// sealed with it (until a rotation after it has finished).
#[utoipa::path(post, path = "/v1/admin/data-keys/{id}/retire", tag = "identity",
    params(("id" = u32, Path, description = "The data key's id")),
    responses(
        (status = 200, description = "Retired", body = DataKeysView),
        (status = 404, description = "No such key", body = crate::answers::Problem),
        (status = 409, description = "The key is active or may still be in use", body = crate::answers::Problem)
    ))]
pub async fn retire_data_key(
    State(state): State<Arc<ApiState>>,
    Extension(identity): Extension<Identity>,
    Path(id): Path<u32>,
) -> Response {
    let result = state.data_keys.keyring.retire(id);
    let outcome = match &result {
        Ok(()) => "allowed".to_owned(),
        Err(e) => format!("failed: {e}"),
    };
    if let Err(r) = audit(
        &state,
        Some(&identity),
        "data-key.retire",
        vec![format!("data-key:{id}")],
        None,
        outcome,
    ) {
        return r;
    }
    match result {
        Ok(()) => {
            tracing::info!(key_id = id, "data key retired");
            Json(view(&state.data_keys)).into_response()
        }
        Err(e) => crypto_problem(&e),
    }
}

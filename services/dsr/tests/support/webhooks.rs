//! A webhook receiver for the delivery tests: a real HTTP server (axum) that checks every
//! request's signature with the Standard Webhooks project's own verifier (not dsr's signing
//! code) and records what it accepted, per program (`POST /hook/{program}`).

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// One request a receiver accepted: its `webhook-id` and the change ids in its body.
#[derive(Clone, Debug)]
pub struct Received {
    pub webhook_id: String,
    pub messages: Vec<Value>,
}

#[derive(Default)]
pub struct Receiver {
    /// The secrets each program's receiver verifies with (any of them may match).
    pub secrets: Mutex<HashMap<String, Vec<String>>>,
    pub received: Mutex<BTreeMap<String, Vec<Received>>>,
    pub bad_signatures: AtomicU64,
    /// Programs whose receiver answers 500 for now.
    pub failing: Mutex<BTreeSet<String>>,
}

async fn hook(
    State(r): State<Arc<Receiver>>,
    UrlPath(program): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let Some(secrets) = r.secrets.lock().unwrap().get(&program).cloned() else {
        // A test registers a program's secret once the API has answered with it, and the
        // first delivery can arrive before that: not ready yet (the sender retries), which is
        // not a bad signature.
        return StatusCode::SERVICE_UNAVAILABLE;
    };
    let verified = secrets.iter().any(|s| {
        standardwebhooks::Webhook::new(s)
            .expect("a whsec_ secret")
            .verify(&body, &headers)
            .is_ok()
    });
    if !verified {
        r.bad_signatures.fetch_add(1, Ordering::Relaxed);
        return StatusCode::UNAUTHORIZED;
    }
    if r.failing.lock().unwrap().contains(&program) {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let body: Value = serde_json::from_slice(&body).expect("a JSON body");
    let messages = if body["type"] == "eligibility.batch" {
        body["data"]["messages"].as_array().unwrap().clone()
    } else {
        vec![body]
    };
    let webhook_id = headers["webhook-id"].to_str().unwrap().to_owned();
    r.received
        .lock()
        .unwrap()
        .entry(program)
        .or_default()
        .push(Received {
            webhook_id,
            messages,
        });
    StatusCode::NO_CONTENT
}

/// Serves the receiver on `listener` until `stop` is set (then closes, connections and all).
pub fn serve(
    receiver: Arc<Receiver>,
    listener: tokio::net::TcpListener,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let app = axum::Router::new()
        .route("/hook/{program}", axum::routing::post(hook))
        .with_state(receiver);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    (tx, task)
}

/// The change ids of a program's messages, in order, by household.
pub fn by_household(messages: &[Value]) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for m in messages {
        out.entry(m["data"]["household_id"].as_str().unwrap().to_owned())
            .or_default()
            .push(m["id"].as_str().unwrap().to_owned());
    }
    out
}

/// Keeps the first copy of each message (duplicates come from retries and replays).
pub fn first_copies(requests: &[Received]) -> Vec<Value> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for r in requests {
        for m in &r.messages {
            if seen.insert(m["id"].as_str().unwrap().to_owned()) {
                out.push(m.clone());
            }
        }
    }
    out
}

//! `GET /metrics`: what an operator's Prometheus scrapes — each stage's backlog and each
//! program's delivery (pending, delivered, retrying, dead-lettered, the oldest undelivered
//! change's age), in the Prometheus text format. Counts only: no personal data.

use crate::access::now_ms;
use crate::ApiState;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use std::fmt::Write;
use std::sync::Arc;

/// A metric family: its help, its type, and one sample per label value.
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, f64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{{{labels}}} {value}");
    }
}

/// A label value with `\`, `"` and newlines escaped, as the text format wants.
fn label(name: &str, value: &str) -> String {
    let escaped = value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n");
    format!("{name}=\"{escaped}\"")
}

/// The registry's metrics in the Prometheus text format (version 0.0.4).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format: dsr_stage_backlog, dsr_delivery_* per program", content_type = "text/plain")))]
pub async fn metrics(State(state): State<Arc<ApiState>>) -> Response {
    let mut out = String::new();
    let stages: Vec<(String, f64)> = (state.backlog)()
        .into_iter()
        .map(|s| (label("stage", s.stage), s.backlog as f64))
        .collect();
    family(
        &mut out,
        "dsr_stage_backlog",
        "gauge",
        "Records waiting for each pipeline stage.",
        &stages,
    );
    let now = now_ms();
    let mut pending = Vec::new();
    let mut delivered = Vec::new();
    let mut retrying = Vec::new();
    let mut dead = Vec::new();
    let mut oldest = Vec::new();
    let mut hooked = Vec::new();
    for p in &state.delivery.programs {
        let id = p.program_id.as_str();
        let Ok(s) = state.delivery.status(id, now).await else {
            continue;
        };
        let l = label("program", id);
        pending.push((l.clone(), s.pending as f64));
        delivered.push((l.clone(), s.delivered as f64));
        retrying.push((l.clone(), s.retrying as f64));
        dead.push((l.clone(), s.dead_lettered as f64));
        oldest.push((l.clone(), s.oldest_undelivered_age_seconds.unwrap_or(0.0)));
        hooked.push((l, if s.webhook.is_some() { 1.0 } else { 0.0 }));
    }
    family(
        &mut out,
        "dsr_delivery_webhook",
        "gauge",
        "1 when the program has a webhook.",
        &hooked,
    );
    family(
        &mut out,
        "dsr_delivery_pending",
        "gauge",
        "Changes on the program's topics its webhook has not delivered yet.",
        &pending,
    );
    family(
        &mut out,
        "dsr_delivery_delivered_total",
        "counter",
        "Messages delivered to the program's webhook since the registry started.",
        &delivered,
    );
    family(
        &mut out,
        "dsr_delivery_retrying",
        "gauge",
        "Messages in the batch being retried now.",
        &retrying,
    );
    family(
        &mut out,
        "dsr_delivery_dead_lettered",
        "gauge",
        "Messages in the program's dead-letter store.",
        &dead,
    );
    family(
        &mut out,
        "dsr_delivery_oldest_undelivered_age_seconds",
        "gauge",
        "How long the oldest undelivered change has waited (0: none waits).",
        &oldest,
    );
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        out,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_and_labels_are_in_the_text_format() {
        let mut out = String::new();
        family(
            &mut out,
            "dsr_x",
            "gauge",
            "An example.",
            &[(label("program", "a\"b"), 2.0)],
        );
        assert_eq!(
            out,
            "# HELP dsr_x An example.\n# TYPE dsr_x gauge\ndsr_x{program=\"a\\\"b\"} 2\n"
        );
    }
}

//! `POST /v1/events:bulk`: files of up to millions of life events from systems that export
//! rather than publish — JSON lines or CSV — streamed: rows are read as they arrive, validated
//! exactly like `POST /v1/events`, and appended in chunks, each made durable before more of the
//! body is read, so memory stays flat whatever the file's size. Rows that are not valid events
//! go, with their line number and reason, to a report kept in the data directory and
//! downloadable from `GET /v1/events:bulk/reports/{id}` (JSON lines, or `?format=csv`).
//!
//! CSV: a header row names each column by its place in the JSON shape of an event, nested
//! names joined with dots (`event_id,event_type,household_id,payload.person_id,payload.amount`).
//! An empty cell is absent; `true`/`false` are booleans; a cell that is a JSON number is a
//! number; a cell starting with `[` or `{` is JSON (for lists such as `payload.members`); any
//! other cell is text (write a JSON string, `"""0042"""` in CSV quoting, for text that looks
//! like a number).

use crate::answers::BulkAnswer;
use crate::events::{now, Subjects};
use crate::{problem, ApiState};
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use dsr_access::Identity;
use dsr_core::Event;
use dsr_pipeline::ingest;
use futures_util::TryStreamExt;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::io::{BufRead, Write};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Rows validated and appended together (one durable append each).
pub const ROWS_PER_CHUNK: usize = 5_000;

/// The media types of a bulk file.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Format {
    JsonLines,
    Csv,
}

/// A row: its line number (1-based, the header is line 1 in CSV) and the event, or why the row
/// is not one.
type Row = (u64, Result<Event, String>);

/// A JSON-lines or CSV file of life events, of any size, streamed: rows are validated like
/// `POST /v1/events` and stored in durable chunks of 5,000; refused rows go to a downloadable
/// report with their line numbers and reasons.
#[utoipa::path(post, path = "/v1/events:bulk", tag = "events",
    request_body(
        description = "JSON lines (one life event per line) or CSV (a header row of dotted JSON paths such as payload.amount, one event per row)",
        content(
            (String = "application/x-ndjson"),
            (String = "text/csv")
        )
    ),
    responses(
        (status = 202, description = "Every row stored", body = BulkAnswer),
        (status = 422, description = "Some rows stored; the refused ones are in the report", body = BulkAnswer),
        (status = 400, description = "No row stored, or the body broke off (the rows before it are stored)", body = BulkAnswer),
        (status = 415, description = "Unsupported content type", body = crate::answers::Problem),
        (status = 503, description = "A chunk could not be stored; the answer says how many rows were", body = crate::answers::Problem)
    ))]
pub async fn post_bulk(
    State(state): State<Arc<ApiState>>,
    Extension(identity): Extension<Identity>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if identity.client.must_sign {
        // A detached Ed25519 signature covers the whole body, which a streamed upload has
        // only at its end, after its rows are stored.
        return problem(
            StatusCode::UNAUTHORIZED,
            format!(
                "client `{}` must sign its event batches, and bulk files cannot be signed: send signed batches to POST /v1/events",
                identity.client.id
            ),
        );
    }
    let content_type = crate::events::content_type(&headers);
    let format = match content_type.as_str() {
        "application/x-ndjson" | "application/jsonl" | "application/jsonlines"
        | "application/json-lines" => Format::JsonLines,
        "text/csv" => Format::Csv,
        other => {
            return problem(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "content type `{other}` is not accepted for a bulk file: send application/x-ndjson (one JSON life event per line) or text/csv (a header row, one event per row)"
                ),
            )
        }
    };

    // The body as a blocking reader on a parser thread; rows come back in chunks, and the
    // bounded channel holds the parser back while a chunk is being made durable.
    let (tx, mut rx) = mpsc::channel::<Vec<Row>>(2);
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    let reader = tokio_util::io::StreamReader::new(stream);
    let parser = tokio::task::spawn_blocking(move || {
        let reader = std::io::BufReader::new(tokio_util::io::SyncIoBridge::new(reader));
        let send = |chunk: Vec<Row>| tx.blocking_send(chunk).is_ok();
        match format {
            Format::JsonLines => parse_json_lines(reader, send),
            Format::Csv => parse_csv(reader, send),
        }
    });

    let mut report = Report::new(
        &reports_dir(&state, &identity),
        Arc::clone(&state.data_keys.keyring),
    );
    let (mut rows, mut accepted) = (0u64, 0u64);
    while let Some(chunk) = rx.recv().await {
        let now = now();
        let mut subjects = Subjects::new(&state, &identity);
        let mut records = Vec::with_capacity(chunk.len());
        for (line, event) in chunk {
            rows += 1;
            let record = event.and_then(|event| {
                subjects.check(&event)?;
                ingest::to_record(&state.codec, &event, now, false)
            });
            match record {
                Ok(record) => records.push(record),
                Err(reason) => {
                    if let Err(e) = report.reject(line, &reason) {
                        return problem(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            format!("cannot write the error report: {e}; nothing after line {line} was stored, send the rest again"),
                        );
                    }
                }
            }
        }
        if !records.is_empty() {
            let n = records.len() as u64;
            if let Err(error) = state.log.append(&state.ingest_topic, records).await {
                tracing::error!(%error, "appending a bulk chunk failed");
                return problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("the events after the first {accepted} accepted rows were not stored: {error}; send the file again (events are deduplicated by event_id)"),
                );
            }
            accepted += n;
        }
    }
    let parsed = parser
        .await
        .unwrap_or_else(|e| Err(format!("the parser failed: {e}")));
    let rejected = report.rejected;
    let report_id = match report.finish() {
        Ok(id) => id,
        Err(e) => {
            return problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot write the error report: {e}"),
            )
        }
    };
    tracing::info!(rows, accepted, rejected, "bulk file ingested");
    let outcome = format!("bulk: {rows} rows, accepted {accepted}, rejected {rejected}");
    if let Err(r) = crate::access::audit(
        &state,
        Some(&identity),
        "events.publish",
        Vec::new(),
        None,
        outcome,
    ) {
        return r;
    }
    let mut body = BulkAnswer {
        rows,
        accepted,
        rejected,
        report: report_id
            .as_ref()
            .map(|id| format!("/v1/events:bulk/reports/{id}")),
        report_id,
        error: None,
    };
    if let Err(reason) = parsed {
        body.error = Some(format!(
            "{reason}; the {accepted} rows accepted before it are stored"
        ));
        return (StatusCode::BAD_REQUEST, Json(body)).into_response();
    }
    let status = match (accepted, rejected) {
        (0, _) => StatusCode::BAD_REQUEST,
        (_, 0) => StatusCode::ACCEPTED,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    };
    (status, Json(body)).into_response()
}

/// Where `identity`'s reports are kept.
fn reports_dir(state: &ApiState, identity: &Identity) -> std::path::PathBuf {
    state.reports_dir.join(&identity.client.id)
}

/// JSON lines: one event per non-empty line. Stops early when `send` says the receiver left.
fn parse_json_lines(
    mut reader: impl BufRead,
    mut send: impl FnMut(Vec<Row>) -> bool,
) -> Result<(), String> {
    let mut chunk = Vec::with_capacity(ROWS_PER_CHUNK);
    let mut line = String::new();
    let mut number = 0u64;
    loop {
        line.clear();
        let read = reader
            .read_line(&mut line)
            .map_err(|e| format!("reading the body failed after line {number}: {e}"))?;
        if read == 0 {
            break;
        }
        number += 1;
        if line.trim().is_empty() {
            continue;
        }
        chunk.push((number, ingest::parse_json(&line)));
        if chunk.len() == ROWS_PER_CHUNK && !send(std::mem::take(&mut chunk)) {
            return Ok(());
        }
    }
    if !chunk.is_empty() {
        send(chunk);
    }
    Ok(())
}

/// CSV with a header row of dotted JSON paths.
fn parse_csv(reader: impl BufRead, mut send: impl FnMut(Vec<Row>) -> bool) -> Result<(), String> {
    let mut csv = csv::ReaderBuilder::new()
        .flexible(false)
        .from_reader(reader);
    let header: Vec<Vec<String>> = csv
        .headers()
        .map_err(|e| format!("the CSV header row cannot be read: {e}"))?
        .iter()
        .map(|name| name.trim().split('.').map(str::to_owned).collect())
        .collect();
    if header.iter().any(|path| path.iter().any(String::is_empty)) {
        return Err("the CSV header row has an empty column name (or a name with an empty part between dots); name every column by its JSON path, e.g. payload.amount".into());
    }
    let mut chunk = Vec::with_capacity(ROWS_PER_CHUNK);
    let mut record = csv::StringRecord::new();
    loop {
        let line = csv.position().line();
        match csv.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => chunk.push((line, csv_event(&header, &record))),
            Err(e) if matches!(e.kind(), csv::ErrorKind::Io(_)) => {
                return Err(format!("reading the body failed at line {line}: {e}"))
            }
            Err(e) => chunk.push((line, Err(format!("not a CSV row: {e}")))),
        }
        if chunk.len() == ROWS_PER_CHUNK && !send(std::mem::take(&mut chunk)) {
            return Ok(());
        }
    }
    if !chunk.is_empty() {
        send(chunk);
    }
    Ok(())
}

/// One CSV row as an event: each cell put at its column's path.
fn csv_event(header: &[Vec<String>], record: &csv::StringRecord) -> Result<Event, String> {
    let mut object = Map::new();
    for (path, cell) in header.iter().zip(record.iter()) {
        let Some(value) = cell_value(cell)? else {
            continue;
        };
        let (last, parents) = path.split_last().expect("header paths are not empty");
        let mut at = &mut object;
        for name in parents {
            let entry = at
                .entry(name.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            at = match entry {
                Value::Object(map) => map,
                _ => return Err(format!("column `{}` puts a value inside `{name}`, which another column sets to a value", path.join("."))),
            };
        }
        at.insert(last.clone(), value);
    }
    serde_json::from_value(Value::Object(object)).map_err(|e| format!("not a life event: {e}"))
}

fn cell_value(cell: &str) -> Result<Option<Value>, String> {
    let cell = cell.trim();
    if cell.is_empty() {
        return Ok(None);
    }
    match cell {
        "true" => return Ok(Some(Value::Bool(true))),
        "false" => return Ok(Some(Value::Bool(false))),
        _ => {}
    }
    if cell.starts_with(['[', '{', '"']) {
        return serde_json::from_str(cell)
            .map(Some)
            .map_err(|e| format!("the cell `{cell}` starts like JSON but is not: {e}"));
    }
    if let Ok(Value::Number(n)) = serde_json::from_str::<Value>(cell) {
        return Ok(Some(Value::Number(n)));
    }
    Ok(Some(Value::String(cell.to_owned())))
}

/// The rejected rows of one upload, written as they come (a file, so millions of rejections
/// cost no memory), kept in the data directory under a new id once there is one.
///
/// A reason can quote the rejected row (personal data), so each line is sealed with the data
/// key (base64 of the sealed JSON, bound to the report id). The file is `{id}.jsonl.partial`
/// until the upload ends and `{id}.jsonl` after, so a rotation knows which files are whole.
struct Report {
    dir: std::path::PathBuf,
    keyring: Arc<dsr_crypto::Keyring>,
    file: Option<(String, std::io::BufWriter<std::fs::File>)>,
    rejected: u64,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

fn report_aad(id: &str) -> Vec<u8> {
    format!("bulk-report/{id}").into_bytes()
}

impl Report {
    fn new(dir: &std::path::Path, keyring: Arc<dsr_crypto::Keyring>) -> Self {
        Report {
            dir: dir.to_owned(),
            keyring,
            file: None,
            rejected: 0,
        }
    }

    fn reject(&mut self, line: u64, reason: &str) -> std::io::Result<()> {
        use base64::Engine;
        if self.file.is_none() {
            std::fs::create_dir_all(&self.dir)?;
            let id = uuid::Uuid::new_v4().to_string();
            let file = std::fs::File::create(self.dir.join(format!("{id}.jsonl.partial")))?;
            self.file = Some((id, std::io::BufWriter::new(file)));
        }
        let (id, file) = self.file.as_mut().expect("opened above");
        let row = serde_json::to_vec(&json!({ "line": line, "reason": reason }))?;
        let sealed = self.keyring.seal(&row, &report_aad(id));
        file.write_all(b64().encode(sealed).as_bytes())?;
        file.write_all(b"\n")?;
        self.rejected += 1;
        Ok(())
    }

    /// Flushes the report to disk; its id, if any row was rejected.
    fn finish(self) -> std::io::Result<Option<String>> {
        match self.file {
            None => Ok(None),
            Some((id, file)) => {
                file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
                std::fs::rename(
                    self.dir.join(format!("{id}.jsonl.partial")),
                    self.dir.join(format!("{id}.jsonl")),
                )?;
                Ok(Some(id))
            }
        }
    }
}

/// The rows of a stored report, opened.
fn open_report(keyring: &dsr_crypto::Keyring, id: &str, text: &str) -> Result<Vec<Value>, String> {
    use base64::Engine;
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let sealed = b64().decode(l).map_err(|e| e.to_string())?;
            let plain = keyring
                .open_sealed(&sealed, &report_aad(id))
                .map_err(|e| e.to_string())?;
            serde_json::from_slice(&plain).map_err(|e| e.to_string())
        })
        .collect()
}

/// The bulk reports as a place the data keys protect: a rotation rewrites each finished
/// report whose lines are under an older key (to a new file renamed over the old one), and
/// waits for uploads still writing theirs.
pub struct Reports {
    pub dir: std::path::PathBuf,
    pub keyring: Arc<dsr_crypto::Keyring>,
}

impl Reports {
    fn files(&self) -> (Vec<std::path::PathBuf>, usize) {
        let mut done = Vec::new();
        let mut partial = 0;
        for client in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            for file in std::fs::read_dir(client.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let name = file.file_name().to_string_lossy().into_owned();
                if name.ends_with(".jsonl") {
                    done.push(file.path());
                } else if name.ends_with(".jsonl.partial") {
                    // An upload still writing, unless it stopped a while ago (a crash).
                    let recent = file
                        .metadata()
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok())
                        .is_some_and(|age| age.as_secs() < 30);
                    if recent {
                        partial += 1;
                    } else {
                        done.push(file.path());
                    }
                }
            }
        }
        (done, partial)
    }

    fn reseal_file(&self, path: &std::path::Path) -> Result<u64, String> {
        use base64::Engine;
        let name = path
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let id = name.split('.').next().unwrap_or_default().to_owned();
        let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
        let mut out = String::with_capacity(text.len());
        let mut resealed = 0;
        for line in text.lines().filter(|l| !l.is_empty()) {
            let sealed = b64().decode(line).map_err(|e| e.to_string())?;
            match self
                .keyring
                .reseal(&sealed, &report_aad(&id))
                .map_err(|e| format!("{}: {e}", path.display()))?
            {
                Some(new) => {
                    out.push_str(&b64().encode(new));
                    resealed += 1;
                }
                None => out.push_str(line),
            }
            out.push('\n');
        }
        if resealed > 0 {
            let tmp = path.with_file_name(format!("{name}.rekey"));
            let mut file = std::fs::File::create(&tmp).map_err(|e| e.to_string())?;
            file.write_all(out.as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(|e| e.to_string())?;
            std::fs::rename(&tmp, path).map_err(|e| e.to_string())?;
        }
        Ok(resealed)
    }
}

impl crate::data_keys::SealedPlace for Reports {
    fn name(&self) -> &'static str {
        "bulk reports"
    }

    fn size(&self) -> u64 {
        self.files().0.len() as u64
    }

    fn reencrypt(
        &self,
        progress: crate::data_keys::ProgressFn,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<u64, String>> + Send + '_>> {
        Box::pin(async move {
            let mut resealed = 0;
            // Uploads still running may have written lines under the old key: go round again
            // until none is left writing (each upload ends; at most ten minutes).
            for _ in 0..600 {
                let (files, partial) = self.files();
                let mut done = 0;
                for file in files {
                    resealed += self.reseal_file(&file)?;
                    done += 1;
                    progress(done);
                }
                if partial == 0 {
                    return Ok(resealed);
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            Err("uploads kept writing reports for ten minutes; run the rotation again".into())
        })
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReportFormat {
    /// `jsonl` (the default) or `csv`.
    format: Option<String>,
}

/// `GET /v1/events:bulk/reports/{id}`: the rejected rows of an upload, as a download.
#[utoipa::path(get, path = "/v1/events:bulk/reports/{id}", tag = "events",
    params(("id" = String, Path, description = "The report id from the bulk answer"), ReportFormat),
    responses(
        (status = 200, description = "The refused rows: line number and reason", content(
            (String = "application/x-ndjson"),
            (String = "text/csv")
        )),
        (status = 400, description = "Not a report id, or an unknown format", body = crate::answers::Problem),
        (status = 404, description = "No such report", body = crate::answers::Problem)
    ))]
pub async fn get_report(
    State(state): State<Arc<ApiState>>,
    Extension(identity): Extension<Identity>,
    Path(id): Path<String>,
    Query(query): Query<ReportFormat>,
) -> Response {
    if uuid::Uuid::parse_str(&id).is_err() {
        return problem(
            StatusCode::BAD_REQUEST,
            format!("`{id}` is not a report id (a UUID from the bulk upload's answer)"),
        );
    }
    // Each client's reports are its own: another client's report id is not found.
    let path = reports_dir(&state, &identity).join(format!("{id}.jsonl"));
    let text = match tokio::fs::read_to_string(&path).await {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return problem(StatusCode::NOT_FOUND, format!("there is no report {id}"))
        }
        Err(e) => {
            return problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot read report {id}: {e}"),
            )
        }
    };
    let rows = match open_report(&state.data_keys.keyring, &id, &text) {
        Ok(rows) => rows,
        Err(e) => {
            tracing::error!(report = %id, error = %e, "a bulk report does not open");
            return problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("report {id} is stored but does not open with the data keys ({e}); tell the operator"),
            );
        }
    };
    let (content_type, extension, body) = match query.format.as_deref() {
        None | Some("jsonl") => {
            let mut out = String::new();
            for row in &rows {
                out.push_str(&row.to_string());
                out.push('\n');
            }
            ("application/x-ndjson", "jsonl", out)
        }
        Some("csv") => {
            let mut out = csv::Writer::from_writer(Vec::new());
            let _ = out.write_record(["line", "reason"]);
            for row in &rows {
                let _ = out.write_record([
                    row["line"].to_string(),
                    row["reason"].as_str().unwrap_or_default().to_owned(),
                ]);
            }
            let bytes = out.into_inner().unwrap_or_default();
            (
                "text/csv",
                "csv",
                String::from_utf8_lossy(&bytes).into_owned(),
            )
        }
        Some(other) => {
            return problem(
                StatusCode::BAD_REQUEST,
                format!("format `{other}` is not offered: use jsonl (the default) or csv"),
            )
        }
    };
    (
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"dsr-bulk-{id}-rejected.{extension}\""),
            ),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(format: Format, text: &str) -> Vec<Row> {
        let mut out = Vec::new();
        let send = |chunk: Vec<Row>| {
            out.extend(chunk);
            true
        };
        match format {
            Format::JsonLines => parse_json_lines(text.as_bytes(), send).unwrap(),
            Format::Csv => parse_csv(text.as_bytes(), send).unwrap(),
        }
        out
    }

    #[test]
    fn csv_rows_become_events_by_their_dotted_header() {
        let text = "event_id,source_system,occurred_at,recorded_at,household_id,person_id,schema_version,event_type,payload.person_id,payload.amount,payload.period,payload.source\n\
            7f0e1d0c-0000-4000-8000-000000000001,tax,2026-01-02T00:00:00Z,2026-01-03T00:00:00Z,H00000042,P0000004200,1,IncomeReported,P0000004200,90.5,monthly,wages\n\
            7f0e1d0c-0000-4000-8000-000000000002,tax,2026-01-02T00:00:00Z,2026-01-03T00:00:00Z,H00000042,P0000004200,1,IncomeReported,P0000004200,lots,monthly,wages\n";
        let rows = rows(Format::Csv, text);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].0, 2);
        let event = rows[0].1.as_ref().unwrap();
        assert_eq!(event.event_type(), "IncomeReported");
        let dsr_core::Payload::IncomeReported(p) = &event.payload else {
            panic!("{event:?}")
        };
        assert_eq!(p.amount, 90.5);
        assert_eq!(rows[1].0, 3);
        let reason = rows[1].1.as_ref().unwrap_err();
        assert!(reason.starts_with("not a life event"), "{reason}");
    }

    #[test]
    fn json_lines_keep_their_line_numbers_and_skip_blank_lines() {
        let rows = rows(Format::JsonLines, "{\"nope\": 1}\n\n{oops\n");
        let lines: Vec<u64> = rows.iter().map(|r| r.0).collect();
        assert_eq!(lines, [1, 3]);
        assert!(rows.iter().all(|r| r.1.is_err()));
    }

    #[test]
    fn cells_are_typed_by_their_look() {
        assert_eq!(cell_value("").unwrap(), None);
        assert_eq!(cell_value("12").unwrap(), Some(json!(12)));
        assert_eq!(cell_value("\"12\"").unwrap(), Some(json!("12")));
        assert_eq!(cell_value("false").unwrap(), Some(json!(false)));
        assert_eq!(cell_value("[1,2]").unwrap(), Some(json!([1, 2])));
        assert_eq!(cell_value("H0001").unwrap(), Some(json!("H0001")));
        assert!(cell_value("[1,").is_err());
    }
}

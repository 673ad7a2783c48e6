//! Security and accountability through `dsr up`, as clients see it: every role against every
//! endpoint (allowed and denied), area scoping, purpose projection field by field, source
//! restrictions, signed batches, rate limits, access tokens checked against the published key,
//! the audit log (read by an auditor, verified, and tampered with on disk), and logs free of
//! personal values.
//!
//! Signatures are made and checked here with `ed25519-dalek` and `base64` directly, not with
//! dsr's own signing code.

mod support;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use dsr_core::{Event, Payload};
use ed25519_dalek::{Signer, SigningKey, Verifier};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;
use support::up::{
    admin_key, client_with, now, post, register_client, start_with, stop_with, wait_idle,
};

/// A client of the test: its key and the purpose it names on reads.
struct Caller {
    key: String,
    purpose: &'static str,
}

impl Caller {
    fn client(&self) -> reqwest::Client {
        client_with(&[
            ("authorization", &format!("Bearer {}", self.key)),
            ("dsr-purpose", self.purpose),
        ])
    }
}

async fn status_of(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn names(events: &[Event]) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for e in events {
        if let Payload::HouseholdRegistered(r) = &e.payload {
            for m in &r.members {
                for n in [m.given_name.as_str(), m.family_name.as_str()] {
                    if n.len() >= 4 {
                        names.insert(n.to_owned());
                    }
                }
            }
        }
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_scopes_purposes_signatures_limits_and_the_audit_log() {
    let data = tempfile::tempdir().unwrap();
    let mut up = start_with(
        data.path(),
        &["--batch-size", "500", "--log", "info,dsr_api=debug"],
    );
    let base = up.base.clone();
    let api = up.api().await;

    // A small registry to read from.
    let now = now();
    let events: Vec<Event> = dsr_pipeline::testing::population(31, 150)
        .into_iter()
        .filter(|e| e.envelope.occurred_at <= now && e.envelope.recorded_at <= now)
        .collect();
    let (registrations, life): (Vec<Event>, Vec<Event>) = events
        .iter()
        .cloned()
        .partition(|e| e.event_type() == "HouseholdRegistered");
    // The generated households share one village; one more lives elsewhere.
    let mut elsewhere = registrations[0].clone();
    elsewhere.envelope.event_id = uuid::Uuid::new_v4();
    elsewhere.envelope.household_id = Some(dsr_core::HouseholdId::new("H-ELSEWHERE"));
    elsewhere.envelope.person_id = None;
    if let Payload::HouseholdRegistered(r) = &mut elsewhere.payload {
        r.area = dsr_core::AreaCode::new("R09.D09.S09.V009");
        for m in &mut r.members {
            m.person_id = dsr_core::PersonId::new(format!("{}-ELSEWHERE", m.person_id));
        }
    }
    let registrations: Vec<Event> = registrations.into_iter().chain([elsewhere]).collect();
    let (status, body) = post(&api, &base, &registrations).await;
    assert_eq!(status, 202, "{body}");
    for chunk in life.chunks(2_000) {
        let (status, body) = post(&api, &base, chunk).await;
        assert!(status == 202 || status == 422, "{body}");
    }
    wait_idle(&api, &base, Duration::from_secs(120)).await;

    // Households as the all-seeing test caseworker sees them.
    let mut households = Vec::new();
    for r in &registrations {
        let id = r.envelope.household_id.as_ref().unwrap().to_string();
        let (status, body) = status_of(api.reader.get(format!("{base}/v1/households/{id}"))).await;
        if status == 200 {
            households.push(body["household"].clone());
        }
    }
    let a = households[0].clone();
    let area_a = a["area"].as_str().unwrap().to_owned();
    let within_a = |area: &str| area == area_a || area.starts_with(&format!("{area_a}."));
    let b = households
        .iter()
        .find(|h| !within_a(h["area"].as_str().unwrap()))
        .unwrap_or_else(|| {
            let areas: BTreeSet<&str> = households
                .iter()
                .map(|h| h["area"].as_str().unwrap())
                .collect();
            panic!(
                "no household outside {area_a}; {} households in {areas:?}",
                households.len()
            )
        })
        .clone();
    let (a_id, b_id) = (
        a["household_id"].as_str().unwrap().to_owned(),
        b["household_id"].as_str().unwrap().to_owned(),
    );
    let a_person = a["members"][0]["person_id"].as_str().unwrap().to_owned();
    // A household eligible for some program, and one that is not eligible for it.
    let (program, eligible) = households
        .iter()
        .find_map(|h| {
            h["programs"].as_array()?.iter().find_map(|p| {
                (p["eligible"] == true)
                    .then(|| (p["program_id"].as_str().unwrap().to_owned(), h.clone()))
            })
        })
        .expect("some household is eligible for some program");
    let eligible_id = eligible["household_id"].as_str().unwrap().to_owned();
    let not_eligible_id = households
        .iter()
        .find(|h| {
            !h["programs"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["program_id"] == program.as_str() && p["eligible"] == true)
        })
        .map(|h| h["household_id"].as_str().unwrap().to_owned())
        .expect("some household is not eligible");

    // One client per role.
    let admin = client_with(&[("authorization", &format!("Bearer {}", admin_key(&up.data)))]);
    let register = |spec: Value| {
        let admin = admin.clone();
        let base = base.clone();
        async move { register_client(&base, &admin, spec).await }
    };
    let signer = SigningKey::generate(&mut rand_core::OsRng);
    let source = Caller {
        key: register(
            json!({"id": "tax", "role": "source_system", "areas": [area_a],
            "event_types": ["IncomeReported"], "source_names": ["tax"]}),
        )
        .await,
        purpose: "none",
    };
    let program_client = Caller {
        key: register(
            json!({"id": "prog", "role": "program", "program": program, "areas": ["*"],
            "agreements": [{"id": "DSA-P", "purpose": "payment",
                "fields": ["members.person_id", "members.given_name", "programs"]}]}),
        )
        .await,
        purpose: "payment",
    };
    let caseworker = Caller {
        key: register(
            json!({"id": "cw-a", "role": "caseworker", "areas": [area_a],
            "agreements": [{"id": "DSA-C", "purpose": "case", "fields": ["*"]}]}),
        )
        .await,
        purpose: "case",
    };
    let coordinator = Caller {
        key: register(json!({"id": "coord", "role": "emergency_coordinator"})).await,
        purpose: "none",
    };
    let approver = Caller {
        key: register(json!({"id": "appr", "role": "approver"})).await,
        purpose: "none",
    };
    let auditor = Caller {
        key: register(json!({"id": "aud", "role": "auditor"})).await,
        purpose: "none",
    };
    let admin_caller = Caller {
        key: admin_key(&up.data),
        purpose: "none",
    };

    // The matrix, written out independently of the code's: which roles may call each endpoint.
    let endpoints: Vec<(&str, String, &[&str])> = vec![
        (
            "POST",
            "/v1/events".into(),
            &["source_system", "caseworker"],
        ),
        (
            "POST",
            "/v1/events:bulk".into(),
            &["source_system", "caseworker"],
        ),
        (
            "GET",
            format!("/v1/households/{a_id}"),
            &["program", "caseworker"],
        ),
        (
            "GET",
            format!("/v1/households/{a_id}/history"),
            &["program", "caseworker"],
        ),
        (
            "GET",
            format!("/v1/persons/{a_person}/household"),
            &["program", "caseworker"],
        ),
        (
            "GET",
            "/v1/status".into(),
            &[
                "source_system",
                "program",
                "caseworker",
                "emergency_coordinator",
                "approver",
                "auditor",
                "admin",
            ],
        ),
        ("GET", "/v1/audit".into(), &["auditor"]),
        ("GET", "/v1/admin/clients".into(), &["admin"]),
        ("POST", "/v1/admin/clients/nobody/rotate".into(), &["admin"]),
        (
            "POST",
            "/subjects/test-value/versions".into(),
            &["source_system", "admin"],
        ),
    ];
    let roles: [(&str, &Caller); 7] = [
        ("source_system", &source),
        ("program", &program_client),
        ("caseworker", &caseworker),
        ("emergency_coordinator", &coordinator),
        ("approver", &approver),
        ("auditor", &auditor),
        ("admin", &admin_caller),
    ];
    for (method, path, allowed) in &endpoints {
        let url = format!("{base}{path}");
        for (role, caller) in &roles {
            let client = caller.client();
            let request = match *method {
                "GET" => client.get(&url),
                _ if path.ends_with(":bulk") => client
                    .post(&url)
                    .header("content-type", "application/x-ndjson")
                    .body(""),
                _ if path.starts_with("/subjects") => client
                    .post(&url)
                    .header("content-type", "application/vnd.schemaregistry.v1+json")
                    .body(r#"{"schema": "\"string\""}"#),
                _ => client.post(&url).json(&json!([])),
            };
            let (status, body) = status_of(request).await;
            assert_ne!(status, 401, "{role} {method} {path}: {body}");
            if allowed.contains(role) {
                assert_ne!(status, 403, "{role} may {method} {path}: {body}");
            } else {
                assert_eq!(status, 403, "{role} may not {method} {path}: {body}");
            }
        }
        // And nobody without credentials.
        let anonymous = reqwest::Client::new().request(method.parse().unwrap(), &url);
        assert_eq!(
            status_of(anonymous).await.0,
            401,
            "anonymous {method} {path}"
        );
    }

    // Area scoping: the caseworker of area A sees A's household, and B's answers as if it did
    // not exist.
    let cw = caseworker.client();
    let (status, body) = status_of(cw.get(format!("{base}/v1/households/{a_id}"))).await;
    assert_eq!(status, 200, "{body}");
    let (status, outside) = status_of(cw.get(format!("{base}/v1/households/{b_id}"))).await;
    assert_eq!(status, 404, "{outside}");
    let (_, missing) = status_of(cw.get(format!("{base}/v1/households/H-NOBODY"))).await;
    assert_eq!(
        outside["error"].as_str().unwrap().replace(&b_id, "X"),
        missing["error"].as_str().unwrap().replace("H-NOBODY", "X"),
        "outside the scope answers exactly like a household that does not exist"
    );
    let (status, _) = status_of(cw.get(format!("{base}/v1/households/{b_id}/history"))).await;
    assert_eq!(status, 404);

    // Purpose projection, field by field: the program sees its beneficiary with only the
    // fields of its purpose, and its own program only.
    let pc = program_client.client();
    let (status, body) = status_of(pc.get(format!("{base}/v1/households/{eligible_id}"))).await;
    assert_eq!(status, 200, "{body}");
    let keys = |v: &Value| -> BTreeSet<String> { v.as_object().unwrap().keys().cloned().collect() };
    assert_eq!(
        keys(&body["household"]),
        ["household_id", "members", "programs"]
            .map(String::from)
            .into(),
        "{body}"
    );
    for m in body["household"]["members"].as_array().unwrap() {
        assert_eq!(
            keys(m),
            ["given_name", "person_id"].map(String::from).into(),
            "{m}"
        );
    }
    let programs = body["household"]["programs"].as_array().unwrap();
    assert_eq!(programs.len(), 1, "{body}");
    assert_eq!(programs[0]["program_id"], program.as_str());
    assert!(body.get("need_score").is_none(), "{body}");
    assert_eq!(body["programs"], body["household"]["programs"]);
    let (status, _) = status_of(pc.get(format!("{base}/v1/households/{not_eligible_id}"))).await;
    assert_eq!(status, 404, "a program sees only its current beneficiaries");
    let history = status_of(pc.get(format!("{base}/v1/households/{eligible_id}/history")))
        .await
        .1;
    for v in history["versions"].as_array().unwrap() {
        assert!(
            keys(&v["household"]).is_subset(
                &["household_id", "members", "programs"]
                    .map(String::from)
                    .into()
            ),
            "{v}"
        );
    }
    let bare = client_with(&[("authorization", &format!("Bearer {}", program_client.key))]);
    let (status, body) = status_of(bare.get(format!("{base}/v1/households/{eligible_id}"))).await;
    assert_eq!(status, 400, "a read must name its purpose: {body}");
    assert!(
        body["error"].as_str().unwrap().contains("payment"),
        "{body}"
    );
    let (status, _) = status_of(
        bare.get(format!("{base}/v1/households/{eligible_id}"))
            .header("dsr-purpose", "marketing"),
    )
    .await;
    assert_eq!(status, 403, "a purpose without an agreement");

    // A source system publishes only its event types, under its own name, in its areas.
    let income = life
        .iter()
        .find(|e| e.event_type() == "IncomeReported")
        .expect("an income report")
        .clone();
    let variant = |household: &str, source: &str| {
        let mut e = income.clone();
        e.envelope.event_id = uuid::Uuid::new_v4();
        e.envelope.household_id = Some(dsr_core::HouseholdId::new(household));
        e.envelope.source_system = source.into();
        e
    };
    let death = life
        .iter()
        .find(|e| e.event_type() == "PersonDied")
        .unwrap();
    let batch = vec![
        variant(&a_id, "tax"),
        variant(&b_id, "tax"),
        variant(&a_id, "crvs"),
        death.clone(),
    ];
    let (status, body) = status_of(
        source
            .client()
            .post(format!("{base}/v1/events"))
            .json(&batch),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["accepted"].as_array().unwrap().len(), 1, "{body}");
    let reasons: Vec<&str> = body["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    assert!(reasons[0].contains("outside the areas"), "{reasons:?}");
    assert!(
        reasons[1].contains("may not publish as source system `crvs`"),
        "{reasons:?}"
    );
    assert!(
        reasons[2].contains("not registered to publish PersonDied"),
        "{reasons:?}"
    );

    // Signed batches: a must-sign client's unsigned or wrongly signed batch is refused.
    let signing = register(
        json!({"id": "signed-src", "role": "source_system", "areas": ["*"],
        "event_types": ["*"], "source_names": ["*"], "must_sign": true,
        "signing_key": hex(signer.verifying_key().as_bytes())}),
    )
    .await;
    let body = serde_json::to_vec(&[variant(&a_id, "tax")]).unwrap();
    let signed_client = client_with(&[("authorization", &format!("Bearer {signing}"))]);
    let send = |signature: Option<String>, body: Vec<u8>| {
        let mut request = signed_client
            .post(format!("{base}/v1/events"))
            .header("content-type", "application/json")
            .body(body);
        if let Some(s) = signature {
            request = request.header("dsr-signature", s);
        }
        status_of(request)
    };
    assert_eq!(send(None, body.clone()).await.0, 401);
    let other = SigningKey::generate(&mut rand_core::OsRng);
    assert_eq!(
        send(Some(detached_jws(&other, &body)), body.clone())
            .await
            .0,
        401
    );
    let mut tampered = body.clone();
    tampered.push(b' ');
    assert_eq!(
        send(Some(detached_jws(&signer, &body)), tampered).await.0,
        401
    );
    let (status, answer) = send(Some(detached_jws(&signer, &body)), body.clone()).await;
    assert_eq!(status, 202, "{answer}");

    // Rate limits: 429 with Retry-After once a client is over its rate.
    let slow = register(json!({"id": "slow", "role": "auditor", "requests_per_second": 2})).await;
    let slow = client_with(&[("authorization", &format!("Bearer {slow}"))]);
    let mut limited = None;
    for _ in 0..5 {
        let response = slow.get(format!("{base}/v1/status")).send().await.unwrap();
        if response.status().as_u16() == 429 {
            limited = Some(
                response.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .to_owned(),
            );
            break;
        }
    }
    let retry_after: u64 = limited
        .expect("a 429 within 5 quick requests at 2/s")
        .parse()
        .unwrap();
    assert!(retry_after >= 1);

    // Access tokens: issued for a key, signed with the published key, refused once revoked.
    let (status, token) = status_of(
        reqwest::Client::new()
            .post(format!("{base}/oauth2/client/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "grant_type=client_credentials&client_id=cw-a&client_secret={}",
                caseworker.key
            )),
    )
    .await;
    assert_eq!(status, 200, "{token}");
    let token = token["access_token"].as_str().unwrap().to_owned();
    let (_, jwks) =
        status_of(reqwest::Client::new().get(format!("{base}/.well-known/jwks.json"))).await;
    let x: [u8; 32] = B64
        .decode(jwks["keys"][0]["x"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let published = ed25519_dalek::VerifyingKey::from_bytes(&x).unwrap();
    let (signing_input, signature) = token.rsplit_once('.').unwrap();
    let signature = ed25519_dalek::Signature::from_slice(&B64.decode(signature).unwrap()).unwrap();
    published
        .verify(signing_input.as_bytes(), &signature)
        .expect("the token verifies with the JWKS key");
    let with_token = client_with(&[
        ("authorization", &format!("Bearer {token}")),
        ("dsr-purpose", "case"),
    ]);
    assert_eq!(
        status_of(with_token.get(format!("{base}/v1/households/{a_id}")))
            .await
            .0,
        200
    );
    let (status, bad) = status_of(
        reqwest::Client::new()
            .post(format!("{base}/oauth2/client/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials&client_id=cw-a&client_secret=dsr_0000000000000000_0000000000000000000000000000000000000000000000000000000000000000"),
    )
    .await;
    assert_eq!(status, 401, "{bad}");

    // The audit log, as the auditor reads it: the caseworker's reads with purpose, agreement
    // and fields; the denied read of B; found by household id, though the log keeps only keyed
    // pseudonyms of ids (and field names, never values).
    let audit_of = |subject: &str| {
        auditor.client().get(format!(
            "{base}/v1/audit?who=cw-a&action=household.read&subject={subject}"
        ))
    };
    let (status, entries) = status_of(audit_of(a_id.as_str())).await;
    assert_eq!(status, 200, "{entries}");
    let entries = entries.as_array().unwrap().clone();
    let (_, of_b) = status_of(audit_of(b_id.as_str())).await;
    let of_b = of_b.as_array().unwrap().clone();
    assert!(
        entries.iter().any(|e| e["subjects"][0]
            .as_str()
            .is_some_and(|s| s.starts_with("ps:"))
            && e["outcome"] == "allowed"
            && e["purpose"] == "case"
            && e["agreement"] == "DSA-C"
            && e["fields"].as_array().unwrap().contains(&json!("*"))),
        "{entries:?}"
    );
    assert!(
        of_b.iter().all(|e| e["outcome"] != "allowed") && !of_b.is_empty(),
        "{of_b:?}"
    );
    assert_ne!(entries[0]["subjects"], of_b[0]["subjects"]);
    let (_, everything) =
        status_of(auditor.client().get(format!("{base}/v1/audit?limit=10000"))).await;
    let names = names(&registrations);
    let text = everything.to_string();
    for n in &names {
        assert!(
            !text.contains(&format!("\"{n}\"")),
            "the audit log holds the name {n}"
        );
    }
    for id in [a_id.as_str(), b_id.as_str()] {
        assert!(!text.contains(id), "the audit log holds the id {id}");
    }

    // Revoking the caseworker ends its key and its token at once.
    let (status, _) = status_of(
        admin
            .post(format!("{base}/v1/admin/clients/cw-a/revoke"))
            .json(&json!({})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        status_of(cw.get(format!("{base}/v1/households/{a_id}")))
            .await
            .0,
        401
    );
    assert_eq!(
        status_of(with_token.get(format!("{base}/v1/households/{a_id}")))
            .await
            .0,
        401
    );

    // The logs hold no personal values.
    assert!(stop_with(&mut up, "-TERM").success());
    let log = up.log.lock().unwrap().join("\n");
    assert!(
        log.contains("dsr up: stopped"),
        "the log was captured: {log}"
    );
    for n in &names {
        assert!(
            !log.contains(n.as_str()),
            "dsr up logged the personal name {n}"
        );
    }

    // The audit log verifies, and every kind of tampering is found at its line.
    let verify = |dir: &std::path::Path| {
        let out = Command::new(env!("CARGO_BIN_EXE_dsr"))
            .args(["audit", "verify", "--data-dir"])
            .arg(dir)
            .arg("--public-key")
            .arg(data.path().join("security/audit-seal.key.pub"))
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (ok, report) = verify(data.path());
    assert!(ok, "{report}");
    let log_file = data.path().join("audit/audit.log");
    let original: Vec<String> = std::fs::read_to_string(&log_file)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    // Lines 5 and 6 (1-based) are entries, not seals, in every run: pick the first two entry
    // lines after the third.
    let entry_lines: Vec<usize> = original
        .iter()
        .enumerate()
        .filter(|(_, l)| !l.starts_with("{\"seal\""))
        .map(|(i, _)| i)
        .skip(3)
        .take(2)
        .collect();
    let (i, j) = (entry_lines[0], entry_lines[1]);
    type Tamper = Box<dyn Fn(&mut Vec<String>)>;
    let tamperings: Vec<(&str, Tamper, Vec<usize>)> = vec![
        (
            "edited",
            Box::new(move |l: &mut Vec<String>| {
                l[i] = l[i].replace("\"outcome\":\"", "\"outcome\":\"x")
            }),
            vec![i + 1],
        ),
        (
            "deleted",
            Box::new(move |l: &mut Vec<String>| {
                l.remove(i);
            }),
            vec![i + 1],
        ),
        // Either of the two swapped entries is the one out of place.
        (
            "reordered",
            Box::new(move |l: &mut Vec<String>| l.swap(i, j)),
            vec![i + 1, j + 1],
        ),
        (
            "inserted",
            Box::new(move |l: &mut Vec<String>| {
                let forged = l[i].replace("\"who\":\"", "\"who\":\"z");
                l.insert(i, forged);
            }),
            vec![i + 1],
        ),
    ];
    for (what, tamper, lines_expected) in tamperings {
        let copy = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(copy.path().join("audit")).unwrap();
        let mut lines = original.clone();
        tamper(&mut lines);
        std::fs::write(copy.path().join("audit/audit.log"), lines.join("\n") + "\n").unwrap();
        let (ok, report) = verify(copy.path());
        assert!(!ok, "{what}: not detected\n{report}");
        assert!(
            lines_expected
                .iter()
                .any(|line| report.contains(&format!("line {line} "))),
            "{what}: expected a problem at line {lines_expected:?} in\n{report}"
        );
    }
}

/// A detached JWS (RFC 7515 appendix F) with EdDSA, made here from the RFC.
fn detached_jws(key: &SigningKey, body: &[u8]) -> String {
    let header = B64.encode(br#"{"alg":"EdDSA"}"#);
    let input = format!("{header}.{}", B64.encode(body));
    let signature = key.sign(input.as_bytes());
    format!("{header}..{}", B64.encode(signature.to_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

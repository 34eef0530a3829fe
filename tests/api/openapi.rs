//! The OpenAPI document: it names every route the service serves and nothing
//! else, every error code, and the service answers as it says (checked by
//! schemathesis, from deploy/local.sh's venv, fuzzing a real app on the real
//! stack).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use uuid::Uuid;

use crate::helpers::{Options, TestApp, TestUser, spawn_app, spawn_app_configured, spawn_app_with};

async fn document(app: &TestApp) -> Value {
    let resp = app.http.get(app.url("/openapi.json")).send().await.expect("GET /openapi.json");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "application/json");
    resp.json().await.expect("the document is JSON")
}

fn operations(doc: &Value) -> Vec<(Method, String)> {
    let mut found = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            found.push((method.to_uppercase().parse().expect("an HTTP method"), path.clone()));
        }
    }
    found
}

#[tokio::test]
async fn the_document_is_openapi_3_1_with_unique_operation_ids() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    assert_eq!(doc["openapi"], "3.1.0");
    let mut ids: Vec<&str> = doc["paths"]
        .as_object()
        .expect("paths")
        .values()
        .flat_map(|item| item.as_object().expect("path item").values())
        .map(|op| op["operationId"].as_str().expect("every operation has an id"))
        .collect();
    let count = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), count, "operation ids are unique");
    assert!(count >= 29, "{count} operations");
}

/// A documented route that is not served would answer 404 (the fallback) or
/// 405; one under /api/v1 answers 401 without a token before anything else.
#[tokio::test]
async fn every_documented_operation_is_served() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    for (method, path) in operations(&doc) {
        let concrete = path
            .replace("{id}", &Uuid::new_v4().to_string())
            .replace("{request_id}", &Uuid::new_v4().to_string());
        let resp = app.http.request(method.clone(), app.url(&concrete)).send().await.expect("request sent");
        let status = resp.status();
        if path.starts_with("/api/v1/") {
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path} without a token");
            assert_eq!(resp.headers()["content-type"], "application/problem+json", "{method} {path}");
        } else {
            assert!(
                status != StatusCode::NOT_FOUND && status != StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path} answered {status}"
            );
        }
    }
}

/// Routes are only registered through `utoipa_axum::routes!`, which takes
/// them from the handlers' `#[utoipa::path]` annotations: a route cannot be
/// served undocumented.
#[test]
fn no_route_is_registered_around_the_document() {
    fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("a source folder") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    sources(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut files);
    for path in &files {
        let source = std::fs::read_to_string(path).expect("read");
        // A unit test may build a router of its own.
        let served = source.split("#[cfg(test)]").next().unwrap_or_default();
        for needle in [".route(\"", ".route_service(", ".nest_service("] {
            assert!(!served.contains(needle), "{} registers a route with {needle}", path.display());
        }
    }
    assert!(files.len() >= 40, "found the sources ({} files)", files.len());
}

#[tokio::test]
async fn the_problem_schema_lists_every_error_code() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let codes: Vec<&str> = doc["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .expect("ErrorCode is an enum")
        .iter()
        .map(|c| c.as_str().expect("a word"))
        .collect();
    let every: Vec<&str> = callgate::domain::Code::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(codes, every);
    for code in ["callee_busy", "video_request_cooldown", "invalid_field", "not_found", "rate_limited"] {
        assert!(codes.contains(&code), "{code}");
    }
}

#[tokio::test]
async fn the_docs_page_loads_nothing_from_elsewhere() {
    let app = spawn_app().await;
    let resp = app.http.get(app.url("/docs")).send().await.expect("GET /docs");
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()["content-type"].to_str().expect("ascii").starts_with("text/html"));
    let page = resp.text().await.expect("text");
    assert!(page.contains("fetch(\"/openapi.json\")"), "the page renders the served document");
    for outside in ["http://", "https://", "//cdn", "<link", "@import", "src="] {
        assert!(!page.contains(outside), "the docs page refers outside: {outside}");
    }
}

/// Runs schemathesis against `app` as `user`: it generates requests from
/// the document (examples, boundary values, random and invalid data, and
/// sequences that follow its links from a started call) and checks every
/// answer: no 5xx, and status, content type, headers and body as documented.
/// `config` is a schemathesis.toml.
async fn schemathesis(app: &TestApp, user: &TestUser, config: &str) {
    let python = std::env::var("CALLGATE_PYTHON").expect("CALLGATE_PYTHON (set by deploy/local.sh test)");
    let schemathesis = Path::new(&python).with_file_name("schemathesis");
    let config_path = std::env::temp_dir().join(format!("schemathesis-{}.toml", Uuid::new_v4().simple()));
    std::fs::write(&config_path, config).expect("write the schemathesis config");
    let url = app.url("/openapi.json");
    let bearer = format!("Authorization: Bearer {}", user.token);
    let checks = "not_a_server_error,status_code_conformance,content_type_conformance,\
                  response_headers_conformance,response_schema_conformance,negative_data_rejection";
    let config_arg = config_path.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(&schemathesis)
            // It keeps a cache in its working directory: not in the repo.
            .current_dir(std::env::temp_dir())
            .arg("--config-file")
            .arg(&config_arg)
            // One worker: with threads, CPython 3.11.7's ast.parse (which
            // hypothesis calls to describe its strategies) can fail with
            // "AST constructor recursion depth mismatch" (a CPython bug, seen here).
            .args(["run", &url, "--checks", checks, "--max-examples", "25", "--workers", "1"])
            .args(["--header", &bearer, "--request-timeout", "30", "--no-color"])
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e} (deploy/local.sh installs it)", schemathesis.display()))
    })
    .await
    .expect("schemathesis ran");
    let _ = std::fs::remove_file(&config_path);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "schemathesis failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("passed"), "schemathesis tested something:\n{stdout}");
}

/// Values that used to kill a connection or answer 500 (issue 16 A), mixed
/// into what schemathesis sends: signed six-digit and out-of-range years for
/// the statistics window, history cursors holding extreme timestamps
/// (`<micros>|<uuid>`, base64url: i64::MIN, year -258000, i64::MAX, 1969).
const EXTREME_VALUES: &str = r#"
[dictionaries.extreme_dates]
values = ["-262143-01-01T00:00:00Z", "+262142-12-31T23:59:59Z", "0000-01-01T00:00:00Z", "10000-01-01T00:00:00Z"]

[dictionaries.extreme_cursors]
values = [
    "LTkyMjMzNzIwMzY4NTQ3NzU4MDh8N2Y5YzJiYTQtZTg4Zi00YjVlLTlhMzUtMWMwYTJiM2Q0ZTVm",
    "LTgyMTAyOTg0MTI4MDAwMDAwMDB8N2Y5YzJiYTQtZTg4Zi00YjVlLTlhMzUtMWMwYTJiM2Q0ZTVm",
    "OTIyMzM3MjAzNjg1NDc3NTgwN3w3ZjljMmJhNC1lODhmLTRiNWUtOWEzNS0xYzBhMmIzZDRlNWY",
    "LTF8N2Y5YzJiYTQtZTg4Zi00YjVlLTlhMzUtMWMwYTJiM2Q0ZTVm",
]

[parameters]
"query.from" = { dictionary = "extreme_dates", probability = 0.5 }
"query.to" = { dictionary = "extreme_dates", probability = 0.5 }
"query.cursor" = { dictionary = "extreme_cursors", probability = 0.5 }
"#;

/// Ids it makes up (mostly unknown calls), and calls it starts itself.
#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_no_server_error_and_no_answer_off_the_document() {
    let app = spawn_app_configured(|c| {
        c.rate_limits.requests_per_minute = 1_000_000;
        c.rate_limits.call_starts_per_minute = 1_000_000;
        // Ringing calls end soon, so that the fuzzing user is free to call again.
        c.timeouts.ringing = Duration::from_secs(2);
    })
    .await;
    let admin = app.user_with_roles("female", &["admin"]);
    schemathesis(&app, &admin, EXTREME_VALUES).await;
}

/// Every operation on one real call she answered: reads, media changes,
/// quality samples, video requests and answers, the end, and everything
/// after the end.
#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_no_server_error_in_a_real_call_either() {
    let app = spawn_app_with(Options {
        // Its own database: no other app's reconciler ends the call because
        // nobody joined its room.
        isolated: true,
        configure: Box::new(|c| {
            c.rate_limits.requests_per_minute = 1_000_000;
            c.rate_limits.video_requests_per_call = 1_000_000;
            c.timeouts.connect = Duration::from_secs(600);
        }),
    })
    .await;
    let (him, her) = (app.user("male"), app.user_with_roles("female", &["admin"]));
    let (call, _) = app.ring(&him, &[&her], "video").await;
    let (status, body) = app.call_action(&call, "accept", &her, serde_json::json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    schemathesis(&app, &her, &format!("[parameters]\n\"path.id\" = \"{call}\"\n")).await;
}

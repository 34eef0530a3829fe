//! The reference web app (`web/`) and the TypeScript client (`clients/ts/`):
//! the dev sign-in exists only with the development switch, the client's
//! generated types match the document, its unit tests pass, and two users
//! in Debian's chromium (tests/e2e/browser.py, Playwright) make a call with
//! the consent flow against the real stack. `deploy/local.sh` installs npm's
//! packages, builds `web/dist/`, and installs chromium and Playwright.

use std::path::{Path, PathBuf};
use std::process::Command;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestUser, request, spawn_app, spawn_app_configured};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs a command to its end; its output is shown only if it fails.
/// Returns what it printed.
fn run(what: &str, command: &mut Command) -> String {
    let out = command.output().unwrap_or_else(|e| panic!("{what}: could not start: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout).trim_end().to_owned();
    eprintln!("{printed}");
    printed
}

#[tokio::test]
async fn without_the_dev_switch_there_is_no_web_app_and_no_dev_sign_in() {
    let app = spawn_app_configured(|c| c.dev_mode = false).await;
    for path in ["/app", "/app/app.js"] {
        let (status, _) = request(&app.http, Method::GET, format!("{}{path}", app.address), None, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    let body = json!({"userId": "mallory", "gender": "female"});
    let (status, _) =
        request(&app.http, Method::POST, format!("{}/app/dev-token", app.address), None, Some(body)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn with_the_dev_switch_the_dev_sign_in_gives_a_token_the_api_accepts() {
    let app = spawn_app().await;
    assert!(app.config.dev_mode, ".env.example turns the development switch on");
    let body = json!({"userId": "dev-signin-user", "name": "Dev", "gender": "male"});
    let (status, minted) =
        request(&app.http, Method::POST, format!("{}/app/dev-token", app.address), None, Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{minted}");
    let user =
        TestUser { id: "dev-signin-user".into(), token: minted["token"].as_str().expect("token").into() };
    let (status, active) =
        request(&app.http, Method::GET, format!("{}/api/v1/calls/active", app.address), Some(&user), None)
            .await;
    assert_eq!(status, StatusCode::OK, "{active}");
}

#[tokio::test]
async fn the_dev_sign_in_refuses_what_is_not_a_user_id() {
    let app = spawn_app().await;
    let body = json!({"userId": "not a user id"});
    let (status, problem) =
        request(&app.http, Method::POST, format!("{}/app/dev-token", app.address), None, Some(body)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["field"], "userId");
}

#[test]
fn the_typescript_clients_types_are_generated_from_the_current_document() {
    let document = root().join("target/openapi.json");
    std::fs::write(&document, serde_json::to_vec_pretty(&callgate::http::document()).expect("json"))
        .expect("write target/openapi.json");
    let ts = root().join("clients/ts");
    run("check-schema", Command::new("node").arg("scripts/check-schema.mjs").arg(&document).current_dir(&ts));
}

#[test]
fn the_typescript_client_passes_its_unit_tests() {
    run("npm test", Command::new("npm").args(["test", "--silent"]).current_dir(root().join("clients/ts")));
}

fn browser(part: &str, base: &str) -> String {
    let python = std::env::var("CALLGATE_PYTHON").expect("CALLGATE_PYTHON (set by deploy/local.sh test)");
    let shots = root().join("target/screenshots");
    assert!(Path::new(&root().join("web/dist/app.js")).exists(), "web/dist/app.js: built by deploy/local.sh");
    run(
        &format!("tests/e2e/browser.py {part}"),
        Command::new(python).arg(root().join("tests/e2e/browser.py")).args([
            base,
            shots.to_str().expect("path"),
            part,
        ]),
    )
}

/// Runs a part of browser.py beside the app, failing as it fails; the
/// `RESULT` lines it printed, as JSON.
pub(crate) async fn in_browsers(part: &'static str, base: String) -> Vec<Value> {
    let _turn = crate::helpers::media_turn().await;
    match tokio::task::spawn_blocking(move || browser(part, &base)).await {
        Ok(printed) => printed
            .lines()
            .filter_map(|line| line.strip_prefix("RESULT "))
            .map(|json| serde_json::from_str(json).expect("a RESULT line is JSON"))
            .collect(),
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn in_two_browsers_she_calls_him_he_asks_for_video_she_allows_then_turns_it_off() {
    let app = spawn_app().await;
    let base = app.address.clone();
    in_browsers("call", base).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn in_a_browser_video_published_as_a_microphone_before_consent_reaches_nobody() {
    let app = spawn_app().await;
    let base = app.address.clone();
    in_browsers("mislabel", base).await;
}

/// The screens `screens` photographs and audits, at each size.
const SCREENS: [&str; 10] = [
    "sign-in",
    "home",
    "calling",
    "incoming",
    "in-call-audio",
    "consent-prompt",
    "in-call-video",
    "ended",
    "report",
    "history",
];
const SIZES: [&str; 2] = ["1280x720", "390x844"];

#[tokio::test(flavor = "multi_thread")]
async fn a_group_call_by_keyboard_fits_a_laptop_and_a_phone_with_no_serious_accessibility_violation() {
    let app = spawn_app().await;
    let results = in_browsers("screens", app.address.clone()).await;
    let result = results.first().expect("a RESULT");
    let audits = result["audits"].as_array().expect("audits");
    for screen in SCREENS {
        for size in SIZES {
            let audit = audits
                .iter()
                .find(|a| a["screen"] == screen && a["size"] == size)
                .unwrap_or_else(|| panic!("{screen} at {size} is audited: {audits:?}"));
            let serious: Vec<&Value> = audit["violations"]
                .as_array()
                .expect("violations")
                .iter()
                .filter(|v| v[1] == "serious" || v[1] == "critical")
                .collect();
            assert!(serious.is_empty(), "{screen} at {size}: {serious:?}");
            let shot = root().join(format!("target/screenshots/{screen}-{size}.png"));
            assert!(shot.exists(), "{} is written", shot.display());
        }
    }
    // She rated the group call 4 with the arrow keys; it ended when the last but one left.
    let call = result["call"].as_str().expect("call");
    let (state, score): (String, i16) = sqlx::query_as(
        "select c.state, r.score from calls c join call_ratings r on r.call_id = c.id \
         where c.id = $1::uuid and r.user_id like 'she-%'",
    )
    .bind(call)
    .fetch_one(&app.state.db)
    .await
    .expect("her rating");
    assert_eq!((state.as_str(), score), ("ended", 4));
}

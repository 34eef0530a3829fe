//! `GET /metrics` on the operations listener (`ADMIN_PORT`, never the public
//! port): Prometheus figures of the app that served the requests (each app
//! has a registry of its own, so these tests run side by side), in
//! OpenMetrics text, with no token. And readiness: cheap in public, in detail
//! on the operations listener.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::events::EventStream;
use crate::helpers::lk_events::{participant_event, room_event, sign, spawn_unreconciled_app};
use crate::helpers::{Options, TestApp, TestUser, eventually, livekit_rooms, spawn_app, spawn_app_with};

#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// One scrape, parsed.
struct Scrape {
    text: String,
    samples: Vec<Sample>,
}

impl Scrape {
    /// The value of the sample called `name` whose labels include `labels`;
    /// `None` if there is none, a panic if there are several.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut found = self.samples.iter().filter(|s| {
            s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        });
        let first = found.next().map(|s| s.value);
        assert!(found.next().is_none(), "several samples {name} {labels:?} in\n{}", self.text);
        first
    }

    /// Like `get`, reading a missing sample as 0 (a series not yet touched).
    fn count(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or(0.0)
    }

    fn has_family(&self, name: &str) -> bool {
        self.text.lines().any(|l| l.starts_with(&format!("# TYPE {name} ")))
    }
}

/// Parses the OpenMetrics text format, strictly enough to catch a broken
/// exposition: every family typed once, every sample of a typed family, a
/// number for every value, `# EOF` at the end.
fn parse(text: &str) -> Scrape {
    assert!(text.ends_with("# EOF\n"), "the exposition ends with # EOF:\n{text}");
    let mut families: Vec<(String, String)> = Vec::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(typed) = line.strip_prefix("# TYPE ") {
            let (name, kind) = typed.split_once(' ').expect("# TYPE <name> <type>");
            assert!(families.iter().all(|(n, _)| n != name), "{name} typed twice");
            families.push((name.to_owned(), kind.to_owned()));
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let sample = parse_sample(line);
        let family = families.iter().find(|(family, kind)| {
            let suffixes: &[&str] = match kind.as_str() {
                "counter" => &["_total", "_created"],
                "histogram" => &["_bucket", "_sum", "_count", "_created"],
                _ => &[""],
            };
            suffixes.iter().any(|suffix| sample.name == format!("{family}{suffix}"))
        });
        assert!(family.is_some(), "sample {} belongs to no typed family", sample.name);
        assert!(sample.name.starts_with("callgate_"), "{} is prefixed callgate_", sample.name);
        samples.push(sample);
    }
    Scrape { text: text.to_owned(), samples }
}

/// `name{key="value",...} value`; values may hold any character, escaped.
fn parse_sample(line: &str) -> Sample {
    let name_end = line.find(['{', ' ']).unwrap_or_else(|| panic!("a sample: {line}"));
    let name = line[..name_end].to_owned();
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices();
        let mut key = String::new();
        loop {
            let Some((i, c)) = chars.next() else { panic!("unclosed labels: {line}") };
            match c {
                '}' => {
                    rest = &inner[i + 1..];
                    break;
                }
                ',' => {}
                '=' => {
                    assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "a quoted value: {line}");
                    let mut value = String::new();
                    loop {
                        match chars.next().map(|(_, c)| c) {
                            Some('\\') => value.push(chars.next().map(|(_, c)| c).expect("an escape")),
                            Some('"') => break,
                            Some(c) => value.push(c),
                            None => panic!("unclosed value: {line}"),
                        }
                    }
                    labels.insert(std::mem::take(&mut key), value);
                }
                c => key.push(c),
            }
        }
    }
    let value = rest.trim().split(' ').next().unwrap_or_default();
    let value = value.parse().unwrap_or_else(|_| panic!("a number in {line}"));
    Sample { name, labels, value }
}

impl TestApp {
    /// Scrapes this app as Prometheus would: on the operations listener, no token.
    async fn scrape(&self) -> Scrape {
        let response = self.http.get(self.admin_url("/metrics")).send().await.expect("scraped");
        assert_eq!(response.status(), StatusCode::OK);
        let content_type = response.headers()["content-type"].to_str().expect("a content type").to_owned();
        assert!(content_type.starts_with("application/openmetrics-text"), "{content_type}");
        parse(&response.text().await.expect("a body"))
    }
}

async fn answered(app: &TestApp, caller: &TestUser, callee: &TestUser, kind: &str, video: bool) -> String {
    let (call, _) = app.ring(caller, &[callee], kind).await;
    let (status, body) = app.call_action(&call, "accept", callee, json!({"video": video})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    call
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[tokio::test]
async fn metrics_need_no_token_and_parse_as_openmetrics_text() {
    let app = spawn_app().await;
    app.http.get(app.url("/health")).send().await.expect("health");
    let scrape = app.scrape().await;
    // Those with labels that depend on what happens appear once it does.
    for family in [
        "callgate_call_duration_seconds",
        "callgate_call_ring_to_answer_seconds",
        "callgate_video_requests",
        "callgate_livekit_webhook_lag_seconds",
        "callgate_app_webhook_deliveries",
        "callgate_reconcile_passes",
        "callgate_reconcile_repairs",
        "callgate_http_requests",
        "callgate_http_request_duration_seconds",
        "callgate_live_calls",
        "callgate_event_sockets_open",
    ] {
        assert!(scrape.has_family(family), "{family} in\n{}", scrape.text);
    }
    for state in ["ringing", "connecting", "active"] {
        assert!(scrape.get("callgate_live_calls", &[("state", state)]).is_some(), "{state}");
    }
    assert!(!scrape.has_family("callgate_app_webhook_backlog"), "no backlog without APP_WEBHOOK_URL");
}

#[tokio::test]
async fn metrics_and_detailed_readiness_are_not_served_on_the_public_port() {
    let app = spawn_app().await;
    let public = app.http.get(app.url("/metrics")).send().await.expect("sent");
    assert_eq!(public.status(), StatusCode::NOT_FOUND);
    let ready: serde_json::Value =
        app.http.get(app.url("/ready")).send().await.expect("sent").json().await.expect("json");
    assert_eq!(ready, json!({"status": "ok"}), "which dependency is down is not told in public");
    let admin = app.http.get(app.admin_url("/ready")).send().await.expect("sent");
    assert_eq!(admin.status(), StatusCode::OK);
    let detail: serde_json::Value = admin.json().await.expect("json");
    assert_eq!(detail["checks"], json!({"postgres": "ok", "redis": "ok", "livekit": "ok"}));
}

#[tokio::test]
async fn a_flood_of_readiness_probes_asks_livekit_at_most_once_a_second() {
    let app = spawn_unreconciled_app().await;
    let list_rooms = |scrape: &Scrape| {
        scrape.count("callgate_livekit_request_duration_seconds_count", &[("method", "list_rooms")])
    };
    let before = list_rooms(&app.scrape().await);
    let started = std::time::Instant::now();
    let probes =
        (0..50).map(|_| async { app.http.get(app.url("/ready")).send().await.expect("sent").status() });
    for status in futures::future::join_all(probes).await {
        assert_eq!(status, StatusCode::OK);
    }
    let seconds = started.elapsed().as_secs_f64().ceil();
    let asked = list_rooms(&app.scrape().await) - before;
    assert!(asked >= 1.0 && asked <= seconds + 1.0, "50 probes in {seconds} s asked LiveKit {asked} times");
}

#[tokio::test]
async fn a_call_rung_answered_and_hung_up_is_counted_by_the_app_that_served_it_alone() {
    let app = spawn_unreconciled_app().await;
    let bystander = spawn_app().await;
    let (alice, bob) = (app.user("female"), app.user("male"));
    let call = answered(&app, &alice, &bob, "audio", false).await;
    let room = app.room_name(&call);
    for (who, session) in [(&alice, 1_000_000), (&bob, 2_000_000)] {
        let joined = participant_event("participant_joined", &room, &who.id, session, now());
        assert_eq!(app.deliver(&joined).await, StatusCode::NO_CONTENT);
    }
    app.webhooks_settled().await;
    assert_eq!(app.call(&call, &alice).await["state"], "active");
    let (status, body) = app.call_action(&call, "end", &alice, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let scrape = app.scrape().await;
    let ended = [("outcome", "completed"), ("end_reason", "hangup")];
    assert_eq!(scrape.get("callgate_calls_ended_total", &ended), Some(1.0));
    assert_eq!(scrape.get("callgate_call_duration_seconds_count", &[]), Some(1.0));
    assert_eq!(scrape.get("callgate_call_ring_to_answer_seconds_count", &[]), Some(1.0));
    let answered_within = scrape.get("callgate_call_ring_to_answer_seconds_bucket", &[("le", "60.0")]);
    assert_eq!(answered_within, Some(1.0), "answered within a minute");
    for method in ["create_room", "delete_room"] {
        let timed = scrape.get("callgate_livekit_request_duration_seconds_count", &[("method", method)]);
        assert_eq!(timed, Some(1.0), "{method}");
        assert_eq!(scrape.count("callgate_livekit_request_errors_total", &[("method", method)]), 0.0);
    }
    let joins = [("event", "participant_joined"), ("result", "accepted")];
    assert_eq!(scrape.get("callgate_livekit_webhooks_total", &joins), Some(2.0));

    let elsewhere = bystander.scrape().await;
    assert_eq!(elsewhere.count("callgate_calls_ended_total", &ended), 0.0, "another app counts none of it");
    assert_eq!(elsewhere.count("callgate_call_ring_to_answer_seconds_count", &[]), 0.0);
}

#[tokio::test]
async fn live_calls_by_state_are_read_from_the_database_at_scrape_time() {
    let app = spawn_unreconciled_app().await;
    let (alice, bob) = (app.user("female"), app.user("male"));
    let live = |scrape: &Scrape, state: &str| scrape.get("callgate_live_calls", &[("state", state)]);
    let (call, _) = app.ring(&alice, &[&bob], "audio").await;
    let ringing = app.scrape().await;
    assert_eq!((live(&ringing, "ringing"), live(&ringing, "connecting")), (Some(1.0), Some(0.0)));

    app.call_action(&call, "accept", &bob, json!({})).await;
    let connecting = app.scrape().await;
    assert_eq!((live(&connecting, "ringing"), live(&connecting, "connecting")), (Some(0.0), Some(1.0)));

    app.call_action(&call, "end", &alice, json!({})).await;
    let after = app.scrape().await;
    assert_eq!(live(&after, "connecting"), Some(0.0));
    let cancelled = [("outcome", "cancelled"), ("end_reason", "hangup")];
    assert_eq!(after.get("callgate_calls_ended_total", &cancelled), Some(1.0));
    assert_eq!(after.count("callgate_call_duration_seconds_count", &[]), 0.0, "it never became active");
}

#[tokio::test]
async fn livekit_webhooks_are_counted_by_event_and_result_with_their_lag() {
    let app = spawn_unreconciled_app().await;
    let (alice, bob) = (app.user("female"), app.user("male"));
    let call = answered(&app, &alice, &bob, "audio", false).await;
    let late =
        participant_event("participant_joined", &app.room_name(&call), &alice.id, 1_000_000, now() - 30);
    assert_eq!(app.deliver(&late).await, StatusCode::NO_CONTENT);
    assert_eq!(app.deliver(&late).await, StatusCode::NO_CONTENT);
    let foreign = room_event("room_started", "not-one-of-ours", now());
    assert_eq!(app.deliver(&foreign).await, StatusCode::NO_CONTENT);
    let body = late.to_string();
    let forged = sign(&body.replace(&alice.id, &bob.id));
    assert_eq!(app.deliver_raw(&body, Some(&forged)).await, StatusCode::UNAUTHORIZED);

    let scrape = app.scrape().await;
    let webhooks = |event: &str, result: &str| {
        scrape.count("callgate_livekit_webhooks_total", &[("event", event), ("result", result)])
    };
    assert_eq!(webhooks("participant_joined", "accepted"), 1.0);
    assert_eq!(webhooks("participant_joined", "duplicate"), 1.0);
    assert_eq!(webhooks("room_started", "ignored"), 1.0);
    assert_eq!(webhooks("unknown", "rejected"), 1.0, "a bad signature is counted");
    assert_eq!(scrape.get("callgate_livekit_webhook_lag_seconds_count", &[]), Some(2.0));
    let lag = scrape.get("callgate_livekit_webhook_lag_seconds_sum", &[]).expect("a lag sum");
    assert!((58.0..=70.0).contains(&lag), "two deliveries of an event 30 s old: {lag}");
    assert_eq!(scrape.get("callgate_livekit_webhook_lag_seconds_bucket", &[("le", "10.0")]), Some(0.0));
}

#[tokio::test]
async fn video_requests_are_counted_by_how_they_end() {
    let app = spawn_unreconciled_app().await;
    let (alice, bob, carol, dave, erin, frank) = (
        app.user("female"),
        app.user("male"),
        app.user("female"),
        app.user("male"),
        app.user("female"),
        app.user("male"),
    );
    // Bob's video call: Alice, who must consent, answers without video.
    answered(&app, &bob, &alice, "video", false).await;
    // Carol's video call: her own request is her consent.
    answered(&app, &carol, &dave, "video", true).await;
    // Frank asks while talking to Erin, who hangs up before answering.
    let call = answered(&app, &erin, &frank, "audio", false).await;
    let (status, body) = app.post(&format!("/api/v1/calls/{call}/video/requests"), &frank, json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    app.call_action(&call, "end", &erin, json!({})).await;

    let scrape = app.scrape().await;
    let requests = |outcome: &str| scrape.count("callgate_video_requests_total", &[("outcome", outcome)]);
    assert_eq!(requests("requested"), 3.0);
    assert_eq!(requests("declined"), 1.0);
    assert_eq!(requests("accepted"), 1.0);
    assert_eq!(requests("call_ended"), 1.0);
    assert_eq!(requests("expired") + requests("withdrawn"), 0.0);
}

#[tokio::test]
async fn what_the_reconciler_repairs_is_counted_by_kind() {
    let app = spawn_unreconciled_app().await;
    let (alice, bob) = (app.user("female"), app.user("male"));
    let (call, _) = app.ring(&alice, &[&bob], "audio").await;
    livekit_rooms().delete_room(&app.room_name(&call)).await.expect("room deleted");

    let pass = callgate::workers::reconcile::pass(&app.state).await.expect("a pass");
    assert_eq!(pass.calls_ended, 1);
    let scrape = app.scrape().await;
    assert_eq!(scrape.get("callgate_reconcile_repairs_total", &[("kind", "call_ended")]), Some(1.0));
    let closed = [("outcome", "failed"), ("end_reason", "room_closed")];
    assert_eq!(scrape.get("callgate_calls_ended_total", &closed), Some(1.0));
    assert!(
        scrape.count("callgate_livekit_request_duration_seconds_count", &[("method", "list_rooms")]) >= 1.0
    );
}

#[tokio::test]
async fn app_webhooks_nobody_takes_are_failed_deliveries_and_stay_in_the_backlog() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let url = format!("http://{}/hooks", closed.local_addr().expect("an address"));
    drop(closed);
    let secret = "whsec_c2VjcmV0LWtleS1mb3ItdGhlLW1ldHJpY3MtdGVzdA==";
    let hook = callgate::config::AppWebhookConfig::new(url, secret).expect("a valid webhook");
    let app = spawn_app_with(Options {
        isolated: true,
        configure: Box::new(move |config| config.app_webhook = Some(hook)),
    })
    .await;
    let (alice, bob) = (app.user("female"), app.user("male"));
    app.ring(&alice, &[&bob], "audio").await;

    eventually(Duration::from_secs(10), "a delivery attempt failed", || async {
        app.scrape().await.count("callgate_app_webhook_deliveries_total", &[("result", "failed")]) >= 1.0
    })
    .await;
    let scrape = app.scrape().await;
    assert_eq!(
        scrape.get("callgate_app_webhook_backlog", &[]),
        Some(2.0),
        "call.started and call.ringing wait"
    );
    assert_eq!(scrape.count("callgate_app_webhook_deliveries_total", &[("result", "delivered")]), 0.0);
}

#[tokio::test]
async fn an_open_event_stream_is_counted_until_it_closes() {
    let app = spawn_app().await;
    let alice = app.user("female");
    let sockets = |scrape: Scrape| scrape.get("callgate_event_sockets_open", &[]);
    assert_eq!(sockets(app.scrape().await), Some(0.0));
    let mut stream = EventStream::connect(&app, &alice).await;
    eventually(Duration::from_secs(5), "the stream is counted", || async {
        sockets(app.scrape().await) == Some(1.0)
    })
    .await;
    stream.socket.close(None).await.expect("closed");
    eventually(Duration::from_secs(5), "the closed stream is not", || async {
        sockets(app.scrape().await) == Some(0.0)
    })
    .await;
}

#[tokio::test]
async fn requests_are_counted_by_route_template_never_by_path() {
    let app = spawn_app().await;
    let alice = app.user("female");
    let stranger = uuid::Uuid::new_v4().to_string();
    let (status, _) = app.get(&format!("/api/v1/calls/{stranger}"), &alice).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app.get("/no/such/route", &alice).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.http.get(app.url("/health")).send().await.expect("health");

    let scrape = app.scrape().await;
    let requests = |method: &str, route: &str, status: &str| {
        scrape
            .get("callgate_http_requests_total", &[("method", method), ("route", route), ("status", status)])
    };
    assert_eq!(requests("GET", "/api/v1/calls/{id}", "4xx"), Some(1.0));
    assert_eq!(requests("GET", "unmatched", "4xx"), Some(1.0));
    assert_eq!(requests("GET", "/health", "2xx"), Some(1.0));
    let timed = [("method", "GET"), ("route", "/api/v1/calls/{id}")];
    assert_eq!(scrape.get("callgate_http_request_duration_seconds_count", &timed), Some(1.0));
    assert!(!scrape.text.contains(&stranger), "no label carries an id");
}

#[test]
fn the_parser_reads_escaped_label_values_and_histogram_samples() {
    let text = "# TYPE callgate_x counter\n\
                callgate_x_total{route=\"/a/{id}\",odd=\"say \\\"hi\\\", ok\"} 3\n\
                # TYPE callgate_h_seconds histogram\n\
                callgate_h_seconds_bucket{le=\"+Inf\"} 2\n\
                callgate_h_seconds_sum 1.5\n\
                # EOF\n";
    let scrape = parse(text);
    assert_eq!(scrape.get("callgate_x_total", &[("route", "/a/{id}"), ("odd", "say \"hi\", ok")]), Some(3.0));
    assert_eq!(scrape.get("callgate_h_seconds_bucket", &[("le", "+Inf")]), Some(2.0));
    assert_eq!(scrape.get("callgate_h_seconds_sum", &[]), Some(1.5));
}

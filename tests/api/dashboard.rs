//! deploy/grafana/callgate.json, the Grafana dashboard of the service's
//! metrics, is JSON whose every query names only metrics the service really
//! exports: apps are started and made to record every family (a call rung
//! and ended, a join token, a LiveKit webhook, an app webhook waiting, a
//! LiveKit request that fails), then scraped on their operations listener
//! as Prometheus would. A histogram is queried as `_bucket`, `_sum` or
//! `_count`, a counter as `_total`. The route a panel selects is one the
//! service labels requests with.

use std::collections::BTreeSet;
use std::path::Path;

use regex::Regex;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Options, TestApp, spawn_app_with};

const DASHBOARD: &str = "deploy/grafana/callgate.json";

fn dashboard() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(DASHBOARD);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {DASHBOARD}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{DASHBOARD} is not JSON: {e}"))
}

/// Every PromQL text of the dashboard: panel targets and variable queries.
fn queries(dashboard: &Value) -> Vec<String> {
    fn walk(node: &Value, found: &mut Vec<String>) {
        match node {
            Value::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("expr" | "definition", Value::String(q)) => found.push(q.clone()),
                        ("query", Value::String(q)) if q.contains("callgate_") => found.push(q.clone()),
                        _ => walk(value, found),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, found)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    walk(dashboard, &mut found);
    found
}

/// The sample names a scrape exposes, from its `# TYPE` lines.
fn exported(exposition: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for typed in exposition.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let (family, kind) = typed.split_once(' ').expect("# TYPE <name> <type>");
        let suffixes: &[&str] = match kind {
            "counter" => &["_total"],
            "histogram" => &["_bucket", "_sum", "_count"],
            _ => &[""],
        };
        names.extend(suffixes.iter().map(|s| format!("{family}{s}")));
    }
    names
}

/// What is wrong with the dashboard, given the names and routes the service exports.
fn problems(dashboard: &Value, names: &BTreeSet<String>, routes: &BTreeSet<String>) -> Vec<String> {
    let mut problems = Vec::new();
    let metric = Regex::new(r"\bcallgate_[a-zA-Z0-9_:]+").expect("a regex");
    let route = Regex::new(r#"route\s*=~?\s*"([^"]*)""#).expect("a regex");
    let queries = queries(dashboard);
    if queries.is_empty() {
        problems.push("no queries".to_owned());
    }
    for query in &queries {
        let used: Vec<&str> = metric.find_iter(query).map(|m| m.as_str()).collect();
        if used.is_empty() {
            problems.push(format!("names no callgate metric: {query}"));
        }
        for name in used.into_iter().filter(|n| !names.contains(*n)) {
            problems.push(format!("{name} is not exported (in {query})"));
        }
        for selected in route.captures_iter(query).map(|c| c[1].to_owned()) {
            if !routes.contains(&selected) {
                problems.push(format!("no route {selected:?} (in {query})"));
            }
        }
    }
    let mut ids = BTreeSet::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        if !ids.insert(panel["id"].to_string()) {
            problems.push(format!("panel id {} twice", panel["id"]));
        }
    }
    problems
}

async fn scrape(app: &TestApp) -> String {
    let response = app.http.get(app.admin_url("/metrics")).send().await.expect("scraped");
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.expect("a body")
}

/// The `route` labels of the requests a scrape counted.
fn routes(exposition: &str) -> BTreeSet<String> {
    let label = Regex::new(r#"^callgate_http_requests_total\{.*route="([^"]*)""#).expect("a regex");
    exposition.lines().filter_map(|l| label.captures(l)).map(|c| c[1].to_owned()).collect()
}

/// Two apps whose scrapes between them have every family: one that rings,
/// answers, hands a join token, ends, is sent a forged LiveKit webhook and has
/// an app webhook waiting; one whose LiveKit does not answer.
async fn everything_exported() -> String {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let nowhere = closed.local_addr().expect("an address");
    drop(closed);
    let secret = "whsec_c2VjcmV0LWtleS1mb3ItdGhlLWRhc2hib2FyZC10ZXN0";
    let hook = callgate::config::AppWebhookConfig::new(format!("http://{nowhere}/hooks"), secret)
        .expect("a valid webhook");
    let app = spawn_app_with(Options {
        isolated: true,
        configure: Box::new(move |config| config.app_webhook = Some(hook)),
    })
    .await;
    let (alice, bob) = (app.user("female"), app.user("male"));
    let (call, _) = app.ring(&alice, &[&bob], "audio").await;
    let (status, body) = app.call_action(&call, "accept", &bob, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app.call_action(&call, "token", &alice, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app.call_action(&call, "end", &alice, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(app.deliver_raw("{}", Some("forged")).await, StatusCode::UNAUTHORIZED);

    let unreachable = spawn_app_with(Options {
        isolated: true,
        configure: Box::new(move |config| config.livekit.api_url = format!("http://{nowhere}")),
    })
    .await;
    let (carol, dave) = (unreachable.user("female"), unreachable.user("male"));
    let (status, _) = unreachable.start_call(&carol, &[&dave], "audio").await;
    assert!(status.is_server_error(), "LiveKit does not answer: {status}");

    scrape(&app).await + &scrape(&unreachable).await
}

#[tokio::test]
async fn the_dashboard_queries_only_metrics_and_routes_the_service_exports() {
    let exposition = everything_exported().await;
    let (names, routes) = (exported(&exposition), routes(&exposition));
    for family in [
        "callgate_calls_ended_total",
        "callgate_livekit_request_errors_total",
        "callgate_livekit_webhooks_total",
    ] {
        assert!(names.contains(family), "{family} recorded for the check, in\n{exposition}");
    }
    let dashboard = dashboard();
    let problems = problems(&dashboard, &names, &routes);
    assert!(problems.is_empty(), "{DASHBOARD}: {problems:#?}");

    // Each of the service's figures has its panel.
    let all = queries(&dashboard).join("\n");
    let missing: Vec<&String> =
        names.iter().filter(|n| !n.ends_with("_sum") && !all.contains(n.as_str())).collect();
    let missing: Vec<&&String> = missing
        .iter()
        .filter(|n| {
            // A histogram is shown by its buckets.
            let family = n.trim_end_matches("_count");
            !(n.ends_with("_count") && all.contains(&format!("{family}_bucket")))
        })
        .collect();
    assert!(missing.is_empty(), "exported but on no panel: {missing:?}");

    // And a misspelt metric, a route that does not exist, or a query of
    // another exporter's metrics is caught.
    let text = dashboard.to_string();
    let broken: Value = serde_json::from_str(
        &text
            .replacen("callgate_live_calls", "callgate_live_call", 1)
            .replacen(r#"/api/v1/calls/{id}/token\""#, r#"/api/v1/calls/{id}/tokens\""#, 1)
            .replacen("count(callgate_event_sockets_open", "count(up", 1),
    )
    .expect("still JSON");
    let problems = self::problems(&broken, &names, &routes);
    for needle in [
        "callgate_live_call is not exported",
        "no route \"/api/v1/calls/{id}/tokens\"",
        "names no callgate metric",
    ] {
        assert!(problems.iter().any(|p| p.contains(needle)), "{needle:?} not caught: {problems:#?}");
    }
}

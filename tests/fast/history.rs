//! History by conversation and by person: exactly those calls, newest
//! first, cursor-paginated, and only the reader's own calls.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::http::{Api as TestApp, Caller as TestUser};
use crate::support::World;

async fn call_in(app: &TestApp, caller: &TestUser, callee: &TestUser, conversation: Option<&str>) -> String {
    let mut body = json!({"participantIds": [callee.id], "type": "audio"});
    if let Some(c) = conversation {
        body["conversationId"] = json!(c);
    }
    let (status, started) = app.post("/api/v1/calls", caller, body).await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    let call = started["call"]["id"].as_str().expect("id").to_owned();
    app.act(&call, "end", caller, json!({})).await;
    call
}

async fn ids(app: &TestApp, user: &TestUser, query: &str) -> Vec<String> {
    let (status, page) = app.get(&format!("/api/v1/calls/history?{query}"), user).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["calls"]
        .as_array()
        .expect("calls")
        .iter()
        .map(|c| c["id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_by_conversation_and_by_person_returns_exactly_those_calls_newest_first() {
    let world = World::new().await;
    let app = TestApp::new(&world);
    let (alice, bob, carol) = (app.user("female"), app.user("male"), app.user("female"));
    let conv = format!("conv-{}", &alice.id[2..10]);
    let first = call_in(&app, &alice, &bob, Some(&conv)).await;
    let with_carol = call_in(&app, &alice, &carol, Some("elsewhere")).await;
    let second = call_in(&app, &bob, &alice, Some(&conv)).await;
    let plain = call_in(&app, &alice, &bob, None).await;

    assert_eq!(ids(&app, &alice, &format!("conversationId={conv}")).await, [second.clone(), first.clone()]);
    assert_eq!(
        ids(&app, &alice, &format!("with={}", bob.id)).await,
        [plain.clone(), second.clone(), first.clone()]
    );
    assert_eq!(ids(&app, &alice, &format!("with={}", carol.id)).await, [with_carol]);
    assert!(ids(&app, &bob, &format!("with={}", carol.id)).await.is_empty(), "only one's own calls");
    assert!(ids(&app, &bob, "conversationId=elsewhere").await.is_empty());

    // Page by page, under the filter.
    let (_, page) = app.get(&format!("/api/v1/calls/history?with={}&limit=2", bob.id), &alice).await;
    let cursor = page["nextCursor"].as_str().expect("a next page").to_owned();
    let rest = ids(&app, &alice, &format!("with={}&limit=2&cursor={cursor}", bob.id)).await;
    assert_eq!(rest, [first]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_filter_is_refused_naming_it() {
    let world = World::new().await;
    let app = TestApp::new(&world);
    let alice = app.user("female");
    let long = "x".repeat(300);
    for (query, field) in
        [(format!("conversationId={long}"), "conversationId"), ("with=a%20b".to_owned(), "with")]
    {
        let (status, body): (StatusCode, Value) =
            app.get(&format!("/api/v1/calls/history?{query}"), &alice).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["field"], field);
    }
}

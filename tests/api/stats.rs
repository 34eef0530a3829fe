//! Service-wide statistics for administrators, checked against a known set
//! of calls in a database of its own.

use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::lk_events::spawn_unreconciled_app;

const WINDOW: &str = "from=2021-03-01T00:00:00Z&to=2021-03-02T00:00:00Z";

struct Past {
    outcome: &'static str,
    created: &'static str,
    answered: Option<&'static str>,
    connected: Option<&'static str>,
    ended: &'static str,
    scheduled: bool,
}

async fn insert(db: &PgPool, call: &Past) -> Uuid {
    let id = Uuid::new_v4();
    sqlx::query(
        "insert into calls (id, room_name, type, state, outcome, end_reason, initiator_id, scheduled, \
         created_at, answered_at, connected_at, ended_at) \
         values ($1, $2, 'audio', 'ended', $3, 'hangup', 'someone', $4, $5::timestamptz, $6::timestamptz, \
         $7::timestamptz, $8::timestamptz)",
    )
    .bind(id)
    .bind(format!("past-{id}"))
    .bind(call.outcome)
    .bind(call.scheduled)
    .bind(format!("2021-03-01T{}Z", call.created))
    .bind(call.answered.map(|t| format!("2021-03-01T{t}Z")))
    .bind(call.connected.map(|t| format!("2021-03-01T{t}Z")))
    .bind(format!("2021-03-01T{}Z", call.ended))
    .execute(db)
    .await
    .expect("a past call");
    id
}

async fn ledger(db: &PgPool, call: Uuid, kinds: &[&str]) {
    let request = Uuid::new_v4();
    for kind in kinds {
        sqlx::query(
            "insert into consent_ledger (call_id, kind, actor, request_id) values ($1, $2, 'someone', $3)",
        )
        .bind(call)
        .bind(kind)
        .bind(request)
        .execute(db)
        .await
        .expect("a ledger entry");
    }
}

async fn samples(db: &PgPool, call: Uuid, values: &[(f64, f64, f64)]) {
    for (jitter, loss, rtt) in values {
        sqlx::query(
            "insert into quality_samples (call_id, user_id, jitter_ms, packet_loss_pct, rtt_ms) \
             values ($1, 'someone', $2, $3, $4)",
        )
        .bind(call)
        .bind(jitter)
        .bind(loss)
        .bind(rtt)
        .execute(db)
        .await
        .expect("a sample");
    }
}

fn past(outcome: &'static str, created: &'static str, ended: &'static str) -> Past {
    Past { outcome, created, answered: None, connected: None, ended, scheduled: false }
}

#[tokio::test]
async fn statistics_add_up_over_a_known_set_of_calls() {
    // Its reconciler stays idle: the call made active below stays so.
    let app = spawn_unreconciled_app().await;
    let db = app.state.db.clone();
    let c1 = insert(
        &db,
        &Past {
            answered: Some("10:00:04"),
            connected: Some("10:00:06"),
            ..past("completed", "10:00:00", "10:01:06")
        },
    )
    .await;
    let c2 = insert(
        &db,
        &Past {
            answered: Some("11:00:10"),
            connected: Some("11:00:11"),
            ..past("completed", "11:00:00", "11:03:11")
        },
    )
    .await;
    insert(&db, &past("declined", "12:00:00", "12:00:05")).await;
    insert(&db, &past("missed", "13:00:00", "13:00:30")).await;
    let c5 =
        insert(&db, &Past { answered: Some("14:00:02"), ..past("failed", "14:00:00", "14:00:32") }).await;
    let c6 = insert(
        &db,
        &Past {
            answered: Some("15:00:00"),
            connected: Some("15:05:00"),
            scheduled: true,
            ..past("completed", "15:00:00", "15:35:00")
        },
    )
    .await;
    // The next day: outside the window.
    let outside = insert(&db, &past("completed", "23:59:59", "23:59:59")).await;
    sqlx::query("update calls set created_at = created_at + interval '1 second' where id = $1")
        .bind(outside)
        .execute(&db)
        .await
        .expect("moved");
    ledger(&db, c1, &["request", "consent", "on"]).await;
    ledger(&db, c2, &["request", "reject"]).await;
    ledger(&db, c6, &["request", "on"]).await;
    ledger(&db, outside, &["request", "on"]).await;
    samples(&db, c1, &[(5.0, 0.0, 40.0)]).await; // MOS 4.39: excellent
    samples(&db, c2, &[(20.0, 2.0, 100.0)]).await; // 4.22: good
    samples(&db, c5, &[(50.0, 5.0, 400.0)]).await; // 3.19: poor
    samples(&db, c6, &[(30.0, 1.0, 150.0), (10.0, 0.0, 50.0)]).await; // medians 20, 0.5, 100: 4.33, excellent
    samples(&db, outside, &[(500.0, 50.0, 5000.0)]).await;
    // And one call active right now, made through the API.
    let (alice, bob) = (app.user("female"), app.user("male"));
    let (call, _) = app.ring(&alice, &[&bob], "audio").await;
    app.call_action(&call, "accept", &bob, json!({})).await;
    sqlx::query("update calls set state = 'active', connected_at = now() where id = $1")
        .bind(Uuid::parse_str(&call).expect("uuid"))
        .execute(&db)
        .await
        .expect("active");

    let admin = app.user_with_roles("male", &["admin"]);
    let (status, stats) = app.get(&format!("/api/v1/stats?{WINDOW}"), &admin).await;
    assert_eq!(status, StatusCode::OK, "{stats}");
    assert_eq!(stats["calls"]["total"], 6);
    assert_eq!(
        stats["calls"]["byOutcome"],
        json!({"completed": 3, "declined": 1, "missed": 1, "cancelled": 0, "busy": 0, "failed": 1})
    );
    assert_eq!(stats["activeNow"], 1);
    assert_eq!(stats["successRate"], 0.5);
    // Durations 60, 180, 1800: p95 sits 0.9 of the way from 180 to 1800.
    assert_eq!(stats["durationSeconds"], json!({"average": 680.0, "p95": 1638.0}));
    // Calls that rang and were answered: 4, 10 and 2 seconds (the scheduled one never rang).
    assert_eq!(stats["ringToAnswerSeconds"], json!({"average": 5.33, "p95": 9.4}));
    assert_eq!(stats["videoRequests"], json!({"requests": 3, "accepted": 2, "acceptanceRate": 0.6667}));
    assert_eq!(stats["quality"], json!({"excellent": 2, "good": 1, "fair": 0, "poor": 1}));
}

#[tokio::test]
async fn statistics_are_for_administrators_and_check_their_window() {
    let app = spawn_unreconciled_app().await;
    let (status, body) = app.get(&format!("/api/v1/stats?{WINDOW}"), &app.user("female")).await;
    assert_eq!((status, body["code"].clone()), (StatusCode::FORBIDDEN, json!("admin_only")));
    let admin = app.user_with_roles("female", &["admin"]);
    let (status, body) = app.get("/api/v1/stats?from=yesterday", &admin).await;
    assert_eq!((status, body["field"].clone()), (StatusCode::UNPROCESSABLE_ENTITY, json!("from")));
    let (status, body) =
        app.get("/api/v1/stats?from=2021-03-02T00:00:00Z&to=2021-03-01T00:00:00Z", &admin).await;
    assert_eq!((status, body["field"].clone()), (StatusCode::UNPROCESSABLE_ENTITY, json!("from")));
    let (status, body) = app.get("/api/v1/stats", &admin).await;
    assert_eq!(status, StatusCode::OK, "the last day by default: {body}");
    assert_eq!(body["successRate"], json!(null), "no ended call, no rate");
    assert_eq!(body["durationSeconds"], json!({"average": null, "p95": null}));
}

/// issue 16 A: a signed six-digit year used to drop the connection (date
/// arithmetic panicked); every date is bounded where it is parsed.
#[tokio::test]
async fn a_date_outside_the_years_1970_to_9999_is_refused_naming_it() {
    let app = spawn_unreconciled_app().await;
    let admin = app.user_with_roles("female", &["admin"]);
    for (query, field) in [
        ("to=-262143-01-01T00:00:00Z", "to"),
        ("to=%2B262142-12-31T23:59:59Z", "to"),
        ("from=0001-01-01T00:00:00Z&to=2021-03-01T00:00:00Z", "from"),
        ("from=1969-12-31T23:59:59Z", "from"),
        ("from=2021-03-01T00:00:00Z&to=10000-01-01T00:00:00Z", "to"),
    ] {
        let (status, body) = app.get(&format!("/api/v1/stats?{query}"), &admin).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}: {body}");
        assert_eq!(body["field"], field, "{query}: {body}");
    }
    let (status, body) = app.get("/api/v1/stats?to=1970-01-01T00:00:00Z", &admin).await;
    assert_eq!(status, StatusCode::OK, "the first day of the range: {body}");
    let (status, body) =
        app.get("/api/v1/stats?from=1970-01-01T00:00:00Z&to=9999-12-31T23:59:59Z", &admin).await;
    assert_eq!(status, StatusCode::OK, "the whole range: {body}");
}

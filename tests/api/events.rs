//! The event stream: events reach a user's every connection on any
//! instance, within a blink; refused credentials never get a socket;
//! presence; slow and silent clients; shutdown.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::helpers::binary::{free_port, launch};
use crate::helpers::events::{EventStream, events_url, refusal_status, try_connect};
use crate::helpers::{
    TestApp, TestUser, base_config, eventually, isolated_database, spawn_app, spawn_app_configured, spawn_on,
};

const BLINK: Duration = Duration::from_secs(1);

fn is(kind: &'static str) -> impl Fn(&Value) -> bool {
    move |event| event["type"] == kind
}

async fn ticket(app: &TestApp, user: &TestUser) -> Value {
    let (status, body) = app.post("/api/v1/events/ticket", user, json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body
}

#[tokio::test]
async fn a_call_started_on_one_instance_rings_the_callee_on_the_other_within_a_second() {
    let (one, two) = (spawn_app().await, spawn_app().await);
    let (alice, bob) = (one.user("female"), one.user("male"));
    let mut bobs = EventStream::connect(&one, &bob).await;
    let mut alices = EventStream::connect(&two, &alice).await;

    // Within a second of the call existing (the API's answer); usually
    // before the answer is even back.
    let (call, _) = two.ring(&alice, &[&bob], "audio").await;
    let incoming = bobs.wait_for(BLINK, "call.incoming", is("call.incoming")).await;
    assert_eq!(incoming["callId"], call);
    assert!(incoming["id"].is_string() && incoming["at"].is_string(), "{incoming}");
    assert_eq!(incoming["data"]["call"]["initiatorId"], alice.id);

    let (status, body) = one.call_action(&call, "accept", &bob, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let accepted = alices.wait_for(BLINK, "call.accepted", is("call.accepted")).await;
    assert_eq!(accepted["callId"], call);
    assert_eq!(accepted["data"]["by"], bob.id);
}

#[tokio::test]
async fn every_connection_of_a_user_rings_whichever_instance_it_is_on() {
    let (one, two) = (spawn_app().await, spawn_app().await);
    let (alice, bob) = (one.user("female"), one.user("male"));
    let mut phone = EventStream::connect(&one, &bob).await;
    let mut laptop = EventStream::connect(&two, &bob).await;

    let (call, _) = one.ring(&alice, &[&bob], "audio").await;
    let on_phone = phone.wait_for(BLINK, "call.incoming", is("call.incoming")).await;
    let on_laptop = laptop.wait_for(BLINK, "call.incoming", is("call.incoming")).await;
    assert_eq!(on_phone["callId"], call);
    assert_eq!(on_phone["id"], on_laptop["id"], "the same event, so a client can dedupe");
}

#[tokio::test]
async fn events_arrive_in_the_order_they_happened() {
    let app = spawn_app().await;
    let (alice, bob) = (app.user("female"), app.user("male"));
    let mut bobs = EventStream::connect(&app, &bob).await;
    let (call, _) = app.ring(&alice, &[&bob], "audio").await;
    app.call_action(&call, "end", &alice, json!({})).await;
    // Delivery is at least once (a replay after a lost subscription may
    // repeat an event): a client dedupes by id, and so does this test.
    let mut seen = std::collections::HashSet::new();
    let kinds: Vec<Value> = bobs
        .collect(Duration::from_millis(1500))
        .await
        .into_iter()
        .filter(|e| seen.insert(e["id"].to_string()))
        .map(|e| e["type"].clone())
        .collect();
    assert_eq!(
        kinds,
        vec![
            json!("call.incoming"),
            json!("call.ring_stopped"),
            json!("call.cancelled"),
            json!("call.ended")
        ]
    );
}

#[tokio::test]
async fn a_browser_opens_the_stream_with_a_one_time_ticket() {
    let (one, two) = (spawn_app().await, spawn_app().await);
    let (alice, bob) = (one.user("female"), one.user("male"));
    let issued = ticket(&one, &bob).await;
    let ticket = issued["ticket"].as_str().expect("a ticket");
    assert!(issued["expiresAt"].is_string());
    assert!(!ticket.contains(&bob.token), "the ticket is not the user token");

    // Issued by one instance, redeemed at the other.
    let url = format!("{}?ticket={ticket}", events_url(&two));
    let mut bobs =
        EventStream::from_socket(try_connect(&url, None).await.expect("the ticket opens the stream"));
    let (call, _) = one.ring(&alice, &[&bob], "audio").await;
    let incoming = bobs.wait_for(BLINK, "call.incoming", is("call.incoming")).await;
    assert_eq!(incoming["callId"], call, "the stream is the ticket holder's");

    assert_eq!(refusal_status(try_connect(&url, None).await), 401, "a used ticket is refused");
}

#[tokio::test]
async fn an_expired_ticket_is_refused() {
    let app = spawn_app_configured(|c| c.events.ticket_ttl = Duration::from_secs(1)).await;
    let bob = app.user("male");
    let issued = ticket(&app, &bob).await;
    tokio::time::sleep(Duration::from_millis(2100)).await; // past its lifetime
    let url = format!("{}?ticket={}", events_url(&app), issued["ticket"].as_str().expect("ticket"));
    assert_eq!(refusal_status(try_connect(&url, None).await), 401);
}

#[tokio::test]
async fn the_upgrade_is_refused_without_valid_credentials() {
    let app = spawn_app().await;
    let bob = app.user("male");
    let url = events_url(&app);
    assert_eq!(refusal_status(try_connect(&url, None).await), 401, "no credentials");
    assert_eq!(refusal_status(try_connect(&url, Some("not-a-jwt")).await), 401, "a bad token");
    let forged = format!("{}x", bob.token);
    assert_eq!(refusal_status(try_connect(&url, Some(&forged)).await), 401, "a bad signature");
    let guessed = format!("{url}?ticket=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    assert_eq!(refusal_status(try_connect(&guessed, None).await), 401, "an unknown ticket");
    let token_in_url = format!("{url}?access_token={}", bob.token);
    assert_eq!(refusal_status(try_connect(&token_in_url, None).await), 401, "user tokens never go in URLs");
}

#[tokio::test]
async fn heartbeats_flow_and_a_client_that_stops_answering_is_dropped() {
    let app = spawn_app_configured(|c| c.events.heartbeat = Duration::from_secs(1)).await;
    let (bob, carol) = (app.user("male"), app.user("female"));

    let mut alive = EventStream::connect(&app, &bob).await;
    let (mut pinged, mut beat) = (false, false);
    // Every second; a loaded box may be late with the first few.
    let deadline = Instant::now() + Duration::from_secs(8);
    while !(pinged && beat) && Instant::now() < deadline {
        match alive.next_frame(Duration::from_secs(3)).await {
            Some(Message::Ping(_)) => pinged = true,
            Some(Message::Text(text)) => beat |= text.contains("\"heartbeat\""),
            _ => {}
        }
    }
    assert!(pinged && beat, "a ping (for the server) and a heartbeat message (for browsers) arrive");

    // Bob's client keeps reading (and so answers pings); Carol's reads
    // nothing, answers no ping, and after two intervals is gone.
    tokio::spawn(async move { while alive.next_frame(Duration::from_secs(60)).await.is_some() {} });
    let _silent = EventStream::connect(&app, &carol).await;
    let has = |user: &TestUser| app.state.events.hub.connections().iter().any(|(u, _)| *u == user.id);
    assert!(has(&carol));
    eventually(Duration::from_secs(8), "the silent client is dropped", || {
        let gone = !has(&carol);
        async move { gone }
    })
    .await;
    assert!(has(&bob), "the answering client stays");
}

/// A stream whose reader never reads, with a small receive buffer, so the
/// server's writes to it block soon.
async fn stalled_stream(app: &TestApp, user: &TestUser) -> EventStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("receive buffer");
    let port = app.address.rsplit(':').next().and_then(|p| p.parse::<u16>().ok()).expect("port");
    let stream = socket.connect(([127, 0, 0, 1], port).into()).await.expect("connect");
    let mut request = events_url(app).into_client_request().expect("request");
    request.headers_mut().insert("authorization", format!("Bearer {}", user.token).parse().expect("header"));
    let (socket, _) =
        tokio_tungstenite::client_async(request, tokio_tungstenite::MaybeTlsStream::Plain(stream))
            .await
            .expect("the stream opens");
    EventStream::from_socket(socket)
}

#[tokio::test]
async fn a_slow_client_is_dropped_and_never_holds_back_the_others() {
    let app = spawn_app().await;
    let bob = app.user("male");
    let mut fast = EventStream::connect(&app, &bob).await;
    let mut slow = stalled_stream(&app, &bob).await;

    // A steady flow (a burst larger than a connection's queue would drop
    // any client), far more in all than the slow one's buffers and queue.
    let (n, chunk) = (800i64, 20i64);
    let db = app.state.db.clone();
    let user = bob.id.clone();
    tokio::spawn(async move {
        for from in (1..=n).step_by(chunk as usize) {
            sqlx::query(
                "insert into user_events (id, user_id, type, data) \
                 select gen_random_uuid(), $1, 'test.bulk', jsonb_build_object('n', g, 'pad', repeat('x', 16000)) \
                 from generate_series($2, $3) g",
            )
            .bind(&user)
            .bind(from)
            .bind(from + chunk - 1)
            .execute(&db)
            .await
            .expect("insert events");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    // At least once: like any client, skip an event seen before.
    let mut seen = std::collections::HashSet::new();
    let mut expected = 1;
    while expected <= n {
        let event = fast
            .next_event(Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("the fast client stopped at {expected}"));
        if seen.insert(event["id"].as_str().expect("an id").to_owned()) {
            assert_eq!(event["data"]["n"], expected, "in order, none lost");
            expected += 1;
        }
    }
    let mine =
        |app: &TestApp| app.state.events.hub.connections().iter().filter(|(u, _)| *u == bob.id).count();
    eventually(Duration::from_secs(5), "the slow connection is dropped", || {
        let live = mine(&app);
        async move { live == 1 }
    })
    .await;
    let mut received = 0;
    while let Some(Message::Text(_)) = slow.next_frame(Duration::from_secs(2)).await {
        received += 1;
    }
    assert!(received < n, "the slow client was cut off ({received} of {n})");
}

#[tokio::test]
async fn a_stopping_instance_closes_its_streams_with_a_reason() {
    let app = spawn_app().await;
    let bob = app.user("male");
    let mut stream = EventStream::connect(&app, &bob).await;
    drop(app); // cancels it, as SIGTERM does
    let frame = stream.closed(Duration::from_secs(5)).await.expect("a close frame");
    assert_eq!(frame.code, CloseCode::Away);
    assert_eq!(frame.reason.as_str(), "server shutting down; reconnect");
}

#[tokio::test]
async fn with_callee_online_required_only_connected_callees_are_rung() {
    let required = |c: &mut callgate::config::Config| c.events.require_callee_online = true;
    let (one, two) = (spawn_app_configured(required).await, spawn_app_configured(required).await);
    let (alice, bob) = (one.user("female"), one.user("male"));

    let (status, body) = one.start_call(&alice, &[&bob], "audio").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "callee_offline");

    let stream = EventStream::connect(&two, &bob).await;
    let (call, _) = one.ring(&alice, &[&bob], "audio").await;
    one.call_action(&call, "end", &alice, json!({})).await;

    stream.close().await;
    eventually(Duration::from_secs(5), "bob is offline once his stream closes", || {
        let (state, bob) = (one.state.clone(), bob.id.clone());
        async move { matches!(state.presence.is_online(&bob).await, Ok(false)) }
    })
    .await;
    let (status, body) = one.start_call(&alice, &[&bob], "audio").await;
    assert_eq!(body["code"], "callee_offline", "{status} {body}");
}

#[tokio::test]
async fn a_killed_instance_does_not_leave_its_users_online() {
    let config = base_config();
    let env = [
        ("DATABASE_URL", config.database_url.expose_secret().to_owned()),
        ("ROOM_PREFIX", config.room_prefix.clone()),
        ("PRESENCE_TTL", "2".to_owned()),
    ];
    let service = launch(free_port(), &env).await;
    let app = spawn_app_configured(|c| c.events.require_callee_online = true).await;
    let (alice, bob) = (app.user("female"), app.user("male"));
    let url = format!("{}/api/v1/events", service.address.replacen("http", "ws", 1));
    let _bobs = try_connect(&url, Some(&bob.token)).await.expect("the stream opens");
    let online = |expected: bool| {
        let (state, bob) = (app.state.clone(), bob.id.clone());
        async move { matches!(state.presence.is_online(&bob).await, Ok(online) if online == expected) }
    };
    eventually(Duration::from_secs(2), "bob is online", || online(true)).await;

    service.kill().await; // no goodbye: only the expiry can take him offline
    let killed = Instant::now();
    eventually(Duration::from_secs(6), "bob goes offline", || online(false)).await;
    assert!(killed.elapsed() >= Duration::from_millis(500), "offline by expiry, not by a clean disconnect");
    let (_, body) = app.start_call(&alice, &[&bob], "audio").await;
    assert_eq!(body["code"], "callee_offline", "{body}");
}

#[tokio::test]
async fn a_ringing_timeout_on_two_instances_gives_one_missed_event_and_one_outbox_row() {
    let database = isolated_database(&base_config()).await;
    let quick = |c: &mut callgate::config::Config| c.timeouts.ringing = Duration::from_secs(1);
    let (one, two) = (spawn_on(&database, quick).await, spawn_on(&database, quick).await);
    let (alice, bob) = (one.user("female"), one.user("male"));
    let mut bobs = EventStream::connect(&one, &bob).await;
    let mut alices = EventStream::connect(&two, &alice).await;

    let (call, _) = two.ring(&alice, &[&bob], "audio").await;
    alices.wait_for(Duration::from_secs(5), "call.missed", is("call.missed")).await;
    // Both instances poll the deadline; give a second firing every chance.
    let bob_saw = bobs.collect(Duration::from_secs(2)).await;
    let missed = bob_saw.iter().filter(|e| e["type"] == "call.missed").count();
    assert_eq!(missed, 1, "{bob_saw:?}");
    assert_eq!(bob_saw.iter().filter(|e| e["type"] == "call.ended").count(), 1);

    let count = |sql: &'static str| one.db_count(sql, &call);
    assert_eq!(
        count("select count(*) from user_events where call_id = $1 and type = 'call.missed'").await,
        2
    );
    let outbox = "select count(*) from app_webhook_outbox where call_id = $1 and type = 'call.missed'";
    assert_eq!(count(outbox).await, 1);
    let ended = "select count(*) from app_webhook_outbox where call_id = $1 and type = 'call.ended'";
    assert_eq!(count(ended).await, 1);
}

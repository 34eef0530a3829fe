//! Keeps the join-token cache (`calls::join_cache`) in step with the
//! database: LISTENs on its own connection for the ids of calls that
//! changed (migration `0011`) and forgets each. The cache serves only while
//! the LISTEN is confirmed; the moment the connection is in doubt it serves
//! nothing until a new LISTEN is.

use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;

use crate::calls::Core;
use crate::domain::CallId;
use crate::store::job_pool;

pub const CALL_CHANGED_NOTIFY: &str = "callgate_call_changed";

const RETRY: Duration = Duration::from_secs(1);

pub async fn run(app: Core, stop: CancellationToken) {
    let db = job_pool(&app.db, 1);
    let mut failures = 0u32;
    loop {
        let listened = async {
            let mut listener = PgListener::connect_with(&db).await?;
            listener.listen(CALL_CHANGED_NOTIFY).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        match listened.await {
            Ok(mut listener) => {
                failures = 0;
                app.joins.start();
                let lost = follow(&app, &mut listener, &stop).await;
                app.joins.stop();
                if stop.is_cancelled() {
                    return;
                }
                tracing::warn!(
                    error = lost,
                    "lost the LISTEN for call changes; join tokens read the database"
                );
            }
            Err(err) => {
                failures += 1;
                if failures == 1 || failures.is_multiple_of(60) {
                    tracing::warn!(error = %err, "could not LISTEN for call changes");
                }
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(RETRY) => {}
        }
    }
}

/// Forgets each call that changed, until the connection fails (its error)
/// or `stop`.
async fn follow(app: &Core, listener: &mut PgListener, stop: &CancellationToken) -> String {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return "stopping".into(),
            received = listener.try_recv() => match received {
                Ok(Some(notification)) => match notification.payload().parse() {
                    Ok(id) => app.joins.forget(CallId(id)),
                    Err(_) => tracing::warn!(payload = notification.payload(), "a call change that names no call"),
                },
                // The connection closed; try_recv would reconnect without a word.
                Ok(None) => return "the connection closed".into(),
                Err(err) => return err.to_string(),
            },
        }
    }
}

//! Deletes what is only history (`crate::store::housekeeping`): every
//! `EVERY`, on every instance, until nothing old is left. A table flooded
//! for a day (a client changing its media as fast as it may writes a client
//! event per participant each time) is worked off a day later at the rate a
//! batch of `PURGE_BATCH` rows is deleted, far above any rate it can be
//! written at (README, "Trust and safety"); instances purging at once split
//! the rows. Recordings past `RECORDING_RETENTION` go the same way, their
//! files (or objects) and then their rows (`calls::recording::purge`).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::calls::Core;
use crate::store::housekeeping;

const EVERY: Duration = Duration::from_secs(5);

pub async fn run(core: Core, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(EVERY) => {}
        }
        let purge = housekeeping::purge_old_rows(&core.db);
        let purged = tokio::select! {
            _ = stop.cancelled() => return,
            purged = purge => purged,
        };
        match purged {
            Ok(purged) if purged.values().any(|n| *n > 0) => {
                tracing::debug!(?purged, "deleted rows that are only history");
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "could not delete old rows; trying again later"),
        }
        // Recordings past RECORDING_RETENTION: their files, then their rows.
        match crate::calls::recording::purge(&core).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(recordings = n, "deleted recordings past their retention"),
            Err(err) => tracing::warn!(error = format!("{err:#}"), "could not delete old recordings"),
        }
    }
}

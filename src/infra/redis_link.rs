//! A Redis connection that is made on first use and re-made after failures,
//! so the service starts and keeps serving while Redis is down.

use std::sync::Arc;

use redis::aio::ConnectionManager;
use tokio::sync::Mutex;

#[derive(Clone)]
pub struct RedisLink {
    client: redis::Client,
    manager: Arc<Mutex<Option<ConnectionManager>>>,
}

impl RedisLink {
    pub fn new(url: &str) -> redis::RedisResult<Self> {
        Ok(Self { client: redis::Client::open(url)?, manager: Arc::new(Mutex::new(None)) })
    }

    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    /// A multiplexed connection; cheap to clone and use concurrently.
    pub async fn conn(&self) -> redis::RedisResult<ConnectionManager> {
        let mut slot = self.manager.lock().await;
        if let Some(manager) = slot.as_ref() {
            return Ok(manager.clone());
        }
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(std::time::Duration::from_secs(2)))
            .set_response_timeout(Some(std::time::Duration::from_secs(2)))
            .set_number_of_retries(1);
        let manager = ConnectionManager::new_with_config(self.client.clone(), config).await?;
        *slot = Some(manager.clone());
        Ok(manager)
    }

    pub async fn ping(&self) -> redis::RedisResult<()> {
        let mut conn = self.conn().await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await.map(|_| ())
    }
}

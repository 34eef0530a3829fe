//! A Redis connection that is made on first use and re-made after failures,
//! so the service starts and keeps serving while Redis is down; to a single
//! Redis or to a Redis Cluster (`REDIS_CLUSTER`).
//!
//! Every key the service writes for one user carries the user's hash tag
//! ([`user_tag`]), so the keys a script touches together live in one slot
//! of a cluster.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};
use tokio::sync::Mutex;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Where Redis is.
#[derive(Clone)]
pub enum Target {
    Single(redis::Client),
    /// The seed nodes of a cluster.
    Cluster(Vec<String>),
}

#[derive(Clone)]
pub struct RedisLink {
    target: Target,
    conn: Arc<Mutex<Option<RedisConn>>>,
}

/// A multiplexed connection to Redis (a single server or a cluster); cheap
/// to clone and use concurrently.
#[derive(Clone)]
pub enum RedisConn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConn::Single(conn) => conn.req_packed_command(cmd),
            RedisConn::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConn::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            RedisConn::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConn::Single(conn) => conn.get_db(),
            RedisConn::Cluster(conn) => conn.get_db(),
        }
    }
}

impl RedisConn {
    /// Runs commands that may touch keys of many slots, each given with the
    /// group it belongs to (a user's tag: the commands of one group stay in
    /// one slot and in order). One pipeline on a single Redis; on a cluster,
    /// a pipeline per group (a cluster pipeline must stay in one slot), all
    /// at once on the multiplexed connection.
    pub fn run_all(&mut self, commands: Vec<(String, Cmd)>) -> BoxFuture<'static, redis::RedisResult<()>> {
        let mut conn = self.clone();
        Box::pin(async move {
            match &mut conn {
                RedisConn::Single(single) => {
                    let mut pipe = redis::pipe();
                    for (_, cmd) in commands {
                        pipe.add_command(cmd).ignore();
                    }
                    pipe.query_async::<()>(single).await
                }
                RedisConn::Cluster(cluster) => {
                    let mut groups: HashMap<String, Pipeline> = HashMap::new();
                    for (group, cmd) in commands {
                        groups.entry(group).or_default().add_command(cmd).ignore();
                    }
                    let sends = groups.into_values().map(|pipe| {
                        let mut conn = cluster.clone();
                        async move { pipe.query_async::<()>(&mut conn).await }
                    });
                    futures::future::try_join_all(sends).await.map(|_| ())
                }
            }
        })
    }
}

/// The part of a user's keys and channels that decides their cluster slot:
/// the user id without braces (a brace would end the tag early), never empty.
pub fn user_tag(user: &str) -> String {
    let tag: String = user.chars().filter(|c| *c != '{' && *c != '}').collect();
    if tag.is_empty() { "_".into() } else { tag }
}

/// `<prefix>:{<tag>}:<user>`: a per-user name in the user's slot.
pub fn user_key(prefix: &str, user: &str) -> String {
    format!("{prefix}:{{{}}}:{user}", user_tag(user))
}

/// The user of a name made by [`user_key`] with this prefix.
pub fn user_of_key<'a>(prefix: &str, key: &'a str) -> Option<&'a str> {
    let rest = key.strip_prefix(prefix)?.strip_prefix(":{")?;
    let close = rest.find('}')?;
    rest[close + 1..].strip_prefix(':')
}

impl RedisLink {
    /// `url` is one Redis URL, or with `cluster` a comma-separated list of
    /// the cluster's seed nodes.
    pub fn new(url: &str, cluster: bool) -> redis::RedisResult<Self> {
        let target = if cluster {
            let nodes: Vec<String> =
                url.split(',').map(str::trim).filter(|n| !n.is_empty()).map(String::from).collect();
            // Parse them now, so a bad URL fails at start.
            ClusterClient::new(nodes.clone())?;
            Target::Cluster(nodes)
        } else {
            Target::Single(redis::Client::open(url)?)
        };
        Ok(Self { target, conn: Arc::new(Mutex::new(None)) })
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self.target, Target::Cluster(_))
    }

    /// The command that publishes to a channel: `SPUBLISH` on a cluster
    /// (sharded pub/sub: a message goes to its slot's nodes only, not the
    /// whole cluster), `PUBLISH` on a single Redis.
    pub fn publish_command(&self) -> &'static str {
        if self.is_cluster() { "SPUBLISH" } else { "PUBLISH" }
    }

    /// A multiplexed connection; cheap to clone and use concurrently.
    pub async fn conn(&self) -> redis::RedisResult<RedisConn> {
        let mut slot = self.conn.lock().await;
        if let Some(conn) = slot.as_ref() {
            return Ok(conn.clone());
        }
        let conn = match &self.target {
            Target::Single(client) => {
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(RESPONSE_TIMEOUT))
                    .set_number_of_retries(1);
                RedisConn::Single(ConnectionManager::new_with_config(client.clone(), config).await?)
            }
            Target::Cluster(nodes) => {
                let client = redis::cluster::ClusterClientBuilder::new(nodes.clone())
                    .connection_timeout(CONNECT_TIMEOUT)
                    .response_timeout(RESPONSE_TIMEOUT)
                    .retries(1)
                    .build()?;
                RedisConn::Cluster(client.get_async_connection().await?)
            }
        };
        *slot = Some(conn.clone());
        Ok(conn)
    }

    pub async fn ping(&self) -> redis::RedisResult<()> {
        let mut conn = self.conn().await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_users_names_share_one_tag_and_give_the_user_back() {
        for user in ["alice", "a}b", "{x}", "}", "{", "we:ird:{id}"] {
            let key = user_key("callgate:ev", user);
            assert_eq!(user_of_key("callgate:ev", &key), Some(user), "{key}");
            let tag = &key[key.find('{').unwrap() + 1..key.find('}').unwrap()];
            assert_eq!(tag, user_tag(user));
            assert!(!tag.is_empty() && !tag.contains('{'));
        }
        assert_eq!(user_of_key("callgate:ev", "callgate:other:{a}:a"), None);
        assert_eq!(user_of_key("callgate:ev", "callgate:ev:{a}"), None);
    }
}

//! The Redis side of the fan-out: one channel per user.
//!
//! A user's events go out on the user's own channel, and an instance
//! subscribes to the channels of the users it holds a stream of, and to no
//! others: no instance receives the whole deployment's events. On a single
//! Redis these are plain channels (`PUBLISH`/`SUBSCRIBE`); on a Redis
//! Cluster they are sharded channels (`SPUBLISH`/`SSUBSCRIBE`), so a message
//! stays on the nodes of its slot instead of crossing the whole cluster.
//!
//! A channel also carries the notices that close one of the user's streams
//! (the stream limit, `streams`): the instance holding it is, by the same
//! rule, the one subscribed.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::cluster_async::ClusterConnection;
use redis::{PushInfo, PushKind, RedisResult, Value};

use crate::infra::redis_link::{Target, user_key, user_of_key};

/// Channels are `callgate:ev:{<user tag>}:<user id>`.
pub const PREFIX: &str = "callgate:ev";
/// A notice to close a stream is `close\n<instance>:<connection>`; events
/// are JSON objects, so the two never mix.
pub const CLOSE: &str = "close\n";

/// At most this many channels in one (un)subscribe command.
const CHUNK: usize = 500;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(3);

/// The channel of `user`'s events.
pub fn channel(user: &str) -> String {
    user_key(PREFIX, user)
}

/// What arrived on a user's channel.
#[derive(Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// An event for `user`: the JSON that goes to their streams as it is.
    Event { user: &'a str, body: &'a [u8] },
    /// Close the stream `<instance>:<conn>` of `user`.
    Close { user: &'a str, instance: &'a str, conn: u64 },
}

/// Reads a channel message; `None` for anything that is not ours.
pub fn decode<'a>(channel: &'a str, payload: &'a [u8]) -> Option<Message<'a>> {
    let user = user_of_key(PREFIX, channel)?;
    match payload.strip_prefix(CLOSE.as_bytes()) {
        Some(member) => {
            let (instance, conn) = std::str::from_utf8(member).ok()?.split_once(':')?;
            Some(Message::Close { user, instance, conn: conn.parse().ok()? })
        }
        None => Some(Message::Event { user, body: payload }),
    }
}

/// A message push as (channel, payload); `None` for the other pushes.
pub fn message_of(push: &PushInfo) -> Option<(&str, &[u8])> {
    if !matches!(push.kind, PushKind::Message | PushKind::SMessage) {
        return None;
    }
    let [channel, payload] = push.data.as_slice() else { return None };
    let (Value::BulkString(channel), Value::BulkString(payload)) = (channel, payload) else { return None };
    Some((std::str::from_utf8(channel).ok()?, payload.as_slice()))
}

/// The connection that holds this instance's subscriptions. Messages (and
/// the news that the connection is gone, a [`PushKind::Disconnection`]) reach
/// the push handler given at connect, on the connection's own task.
pub enum Subscriber {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl Subscriber {
    pub async fn connect(
        target: &Target,
        on_push: impl Fn(PushInfo) -> Result<(), std::convert::Infallible> + Send + Sync + 'static,
    ) -> RedisResult<Self> {
        match target {
            Target::Single(client) => {
                let info = client.get_connection_info().clone();
                let settings = info.redis_settings().clone().set_protocol(redis::ProtocolVersion::RESP3);
                let client = redis::Client::open(info.set_redis_settings(settings))?;
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(RESPONSE_TIMEOUT))
                    .set_push_sender(on_push);
                Ok(Subscriber::Single(client.get_multiplexed_async_connection_with_config(&config).await?))
            }
            Target::Cluster(nodes) => {
                let client = redis::cluster::ClusterClientBuilder::new(nodes.clone())
                    .use_protocol(redis::ProtocolVersion::RESP3)
                    .connection_timeout(CONNECT_TIMEOUT)
                    .response_timeout(RESPONSE_TIMEOUT)
                    .push_sender(on_push)
                    .build()?;
                Ok(Subscriber::Cluster(client.get_async_connection().await?))
            }
        }
    }

    /// Subscribes to the channels of these users.
    pub async fn follow(&mut self, users: &[String]) -> RedisResult<()> {
        self.each(users, true).await
    }

    /// Unsubscribes from the channels of these users.
    pub async fn unfollow(&mut self, users: &[String]) -> RedisResult<()> {
        self.each(users, false).await
    }

    async fn each(&mut self, users: &[String], follow: bool) -> RedisResult<()> {
        match self {
            Subscriber::Single(conn) => {
                for chunk in users.chunks(CHUNK) {
                    let channels: Vec<String> = chunk.iter().map(|u| channel(u)).collect();
                    if follow {
                        conn.subscribe(&channels).await?;
                    } else {
                        conn.unsubscribe(&channels).await?;
                    }
                }
                Ok(())
            }
            // Sharded channels of different slots cannot share a command;
            // the connection sends these side by side.
            Subscriber::Cluster(conn) => {
                for chunk in users.chunks(CHUNK) {
                    let sends = chunk.iter().map(|user| {
                        let mut conn = conn.clone();
                        let channel = channel(user);
                        async move {
                            if follow {
                                conn.ssubscribe(&channel).await
                            } else {
                                conn.sunsubscribe(&channel).await
                            }
                        }
                    });
                    futures::future::try_join_all(sends).await?;
                }
                Ok(())
            }
        }
    }

    /// Whether the connection still answers.
    pub async fn ping(&mut self) -> RedisResult<()> {
        let ping = redis::cmd("PING");
        match self {
            Subscriber::Single(conn) => ping.query_async::<Value>(conn).await.map(|_| ()),
            Subscriber::Cluster(conn) => ping.query_async::<Value>(conn).await.map(|_| ()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_and_a_close_notice_are_told_apart_on_the_users_channel() {
        let channel = channel("a}b");
        assert_eq!(
            decode(&channel, br#"{"id":"x"}"#),
            Some(Message::Event { user: "a}b", body: br#"{"id":"x"}"# })
        );
        assert_eq!(
            decode(&channel, b"close\ninst1:42"),
            Some(Message::Close { user: "a}b", instance: "inst1", conn: 42 })
        );
        assert_eq!(decode(&channel, b"close\ninst1:notanumber"), None);
        assert_eq!(decode("callgate:events", b"{}"), None);
    }

    #[test]
    fn only_message_pushes_carry_a_payload() {
        let push = |kind| PushInfo {
            kind,
            data: vec![Value::BulkString(b"ch".to_vec()), Value::BulkString(b"body".to_vec())],
        };
        assert_eq!(message_of(&push(PushKind::Message)), Some(("ch", &b"body"[..])));
        assert_eq!(message_of(&push(PushKind::SMessage)), Some(("ch", &b"body"[..])));
        assert_eq!(message_of(&push(PushKind::Subscribe)), None);
        assert_eq!(message_of(&PushInfo { kind: PushKind::Message, data: vec![] }), None);
    }
}

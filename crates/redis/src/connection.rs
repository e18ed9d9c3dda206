//! How the store reaches Redis: one endpoint, a Cluster, or the master a set of Sentinels
//! names (followed across failovers), behind one connection type the commands are sent on;
//! and the listener that subscribes to the publish channel on whichever of them it can.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::sentinel::SentinelClient;
use redis::{
    Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, RedisResult, ServerErrorKind, Value,
};

use tower_bearer::store::Notifier;

/// Where the store's commands go. Cheap to clone: every variant is a handle on connections
/// shared by all clones.
#[derive(Clone)]
pub(crate) enum Connection {
    /// One endpoint: reconnects to it by itself.
    Single(ConnectionManager),
    /// A Redis Cluster: every command goes to the master of its key's slot, and follows
    /// `MOVED` after a failover or a resharding.
    Cluster(ClusterConnection),
    /// The master the Sentinels name.
    Sentinel(FollowedMaster),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Single(connection) => connection.req_packed_command(cmd),
            Connection::Cluster(connection) => connection.req_packed_command(cmd),
            Connection::Sentinel(master) => Box::pin(master.send(cmd)),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Single(connection) => {
                connection.req_packed_commands(pipeline, offset, count)
            }
            Connection::Cluster(connection) => {
                connection.req_packed_commands(pipeline, offset, count)
            }
            Connection::Sentinel(master) => Box::pin(master.send_pipeline(pipeline, offset, count)),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(connection) => connection.get_db(),
            Connection::Cluster(connection) => connection.get_db(),
            Connection::Sentinel(_) => 0,
        }
    }
}

// ===== impl FollowedMaster =====

/// The master a set of Sentinels name, asked again whenever the connection to it fails or
/// it answers `READONLY` (it was demoted): a connection to a fixed address (what redis-rs's
/// `SentinelClient` hands out) keeps reconnecting to the old master after a failover.
#[derive(Clone)]
pub(crate) struct FollowedMaster {
    shared: Arc<Followed>,
}

struct Followed {
    /// Held while the Sentinels are asked, so that one call asks and the others wait for its
    /// answer rather than ask again.
    sentinels: tokio::sync::Mutex<SentinelClient>,
    master: Mutex<Master>,
    config: ConnectionManagerConfig,
    /// How long asking the Sentinels (and checking the master's role) may take.
    timeout: Duration,
}

#[derive(Default)]
struct Master {
    connection: Option<ConnectionManager>,
    /// How many times the Sentinels have been asked: a connection is forgotten only if it is
    /// still the one a failing call used.
    asked: u64,
}

impl FollowedMaster {
    pub(crate) fn new(
        sentinels: SentinelClient,
        config: ConnectionManagerConfig,
        timeout: Duration,
    ) -> Self {
        FollowedMaster {
            shared: Arc::new(Followed {
                sentinels: tokio::sync::Mutex::new(sentinels),
                master: Mutex::default(),
                config,
                timeout,
            }),
        }
    }

    fn master(&self) -> std::sync::MutexGuard<'_, Master> {
        self.shared
            .master
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The connection to the master, asking the Sentinels for it if there is none.
    async fn connection(&self) -> RedisResult<(ConnectionManager, u64)> {
        let asked = {
            let master = self.master();
            if let Some(connection) = &master.connection {
                return Ok((connection.clone(), master.asked));
            }
            master.asked
        };
        let mut sentinels = self.shared.sentinels.lock().await;
        {
            // Asked while this call waited: its answer is this call's too.
            let master = self.master();
            if master.asked != asked {
                return match &master.connection {
                    Some(connection) => Ok((connection.clone(), master.asked)),
                    None => Err(no_master()),
                };
            }
        }
        let found =
            match tokio::time::timeout(self.shared.timeout, sentinels.async_get_client()).await {
                Ok(Ok(client)) => {
                    ConnectionManager::new_lazy_with_config(client, self.shared.config.clone())
                }
                Ok(Err(error)) => Err(error),
                Err(_) => Err(RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the sentinels did not name a master in time",
                ))),
            };
        let mut master = self.master();
        master.asked += 1;
        master.connection = found.as_ref().ok().cloned();
        found.map(|connection| (connection, master.asked))
    }

    /// Forgets the connection a call failed on, if it has lost the master: the next call asks
    /// the Sentinels again.
    fn failed(&self, asked: u64, error: &RedisError) {
        let mut master = self.master();
        if lost_master(error) && master.asked == asked {
            master.connection = None;
        }
    }

    /// A client for the master, for the pub/sub listener.
    async fn client(&self) -> RedisResult<redis::Client> {
        let mut sentinels = self.shared.sentinels.lock().await;
        match tokio::time::timeout(self.shared.timeout, sentinels.async_get_client()).await {
            Ok(found) => found,
            Err(_) => Err(no_master()),
        }
    }

    async fn send(&self, cmd: &Cmd) -> RedisResult<Value> {
        let (mut connection, asked) = self.connection().await?;
        let answer = connection.req_packed_command(cmd).await;
        if let Err(error) = &answer {
            self.failed(asked, error);
        }
        answer
    }

    async fn send_pipeline(
        &self,
        pipeline: &Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        let (mut connection, asked) = self.connection().await?;
        let answer = connection
            .req_packed_commands(pipeline, offset, count)
            .await;
        if let Err(error) = &answer {
            self.failed(asked, error);
        }
        answer
    }
}

/// Whether a call's error means the master is lost: the connection failed (refused, dropped,
/// timed out: each an I/O error to redis-rs), or the server answered `READONLY` (it was
/// demoted). Any other error is the command's, and the master stays.
fn lost_master(error: &RedisError) -> bool {
    error.is_io_error() || matches!(error.kind(), ErrorKind::Server(ServerErrorKind::ReadOnly))
}

fn no_master() -> RedisError {
    RedisError::from((
        ErrorKind::MasterNameNotFoundBySentinel,
        "the sentinels named no reachable master",
    ))
}

// ===== the pub/sub listener =====

/// Where the listener subscribes.
pub(crate) enum Subscriber {
    /// One of these nodes, the next one after each failure: the one endpoint, or a Cluster's
    /// seed nodes (a message published on any node of a Cluster reaches subscribers on every
    /// node).
    Nodes(Vec<redis::Client>),
    /// The master the Sentinels name at the time.
    Sentinel(FollowedMaster),
}

impl Subscriber {
    async fn client(&self, attempt: usize) -> Option<redis::Client> {
        match self {
            Subscriber::Nodes(nodes) => nodes.get(attempt % nodes.len().max(1)).cloned(),
            Subscriber::Sentinel(master) => master.client().await.ok(),
        }
    }
}

/// Listens on the publish channel, reconnecting after a failure; each message, and each
/// (re)subscription (something may have been published while it was not listening), wakes
/// the waiters.
pub(crate) async fn listen(
    subscriber: Subscriber,
    channel: String,
    notifier: Notifier,
    retry: Duration,
) {
    for attempt in 0.. {
        let subscribed = async {
            let client = subscriber.client(attempt).await?;
            let mut pubsub = client.get_async_pubsub().await.ok()?;
            pubsub.subscribe(&channel).await.ok()?;
            Some(pubsub)
        };
        if let Ok(Some(pubsub)) = tokio::time::timeout(retry, subscribed).await {
            notifier.notify();
            let mut messages = pubsub.into_on_message();
            while messages.next().await.is_some() {
                notifier.notify();
            }
        }
        tokio::time::sleep(retry).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(kind: std::io::ErrorKind) -> RedisError {
        RedisError::from(std::io::Error::new(kind, "test"))
    }

    #[test]
    fn a_failed_connection_or_a_demoted_master_loses_the_master_and_nothing_else_does() {
        use std::io::ErrorKind::{ConnectionRefused, ConnectionReset, Other, TimedOut};
        for kind in [ConnectionRefused, ConnectionReset, TimedOut, Other] {
            assert!(lost_master(&io(kind)), "{kind:?}");
        }
        let read_only =
            RedisError::from((ErrorKind::Server(ServerErrorKind::ReadOnly), "READONLY"));
        assert!(lost_master(&read_only));
        let no_script =
            RedisError::from((ErrorKind::Server(ServerErrorKind::NoScript), "NOSCRIPT"));
        assert!(!lost_master(&no_script));
    }

    fn followed() -> FollowedMaster {
        let sentinels = SentinelClient::build(
            vec!["redis://127.0.0.1:1/"],
            String::from("master"),
            None,
            redis::sentinel::SentinelServerType::Master,
        )
        .unwrap();
        FollowedMaster::new(
            sentinels,
            ConnectionManagerConfig::new(),
            Duration::from_secs(1),
        )
    }

    /// A connection that is never used: `new_lazy_with_config` connects on the first command.
    fn lazy() -> ConnectionManager {
        let client = redis::Client::open("redis://127.0.0.1:1/").unwrap();
        ConnectionManager::new_lazy_with_config(client, ConnectionManagerConfig::new()).unwrap()
    }

    /// Only a call on the connection still in use forgets it: a call that failed on one
    /// the Sentinels have since replaced must not drop its replacement.
    #[tokio::test]
    async fn only_a_lost_master_of_the_current_asking_is_forgotten() {
        let master = followed();
        {
            let mut state = master.master();
            state.connection = Some(lazy());
            state.asked = 2;
        }
        let remembered = |master: &FollowedMaster| master.master().connection.is_some();
        master.failed(1, &io(std::io::ErrorKind::ConnectionRefused));
        assert!(
            remembered(&master),
            "a failure on a connection already replaced"
        );
        master.failed(
            2,
            &RedisError::from((ErrorKind::Server(ServerErrorKind::NoScript), "NOSCRIPT")),
        );
        assert!(remembered(&master), "the command's error, not the master's");
        master.failed(2, &io(std::io::ErrorKind::ConnectionRefused));
        assert!(!remembered(&master), "the master is lost");
    }

    /// Every asking of the Sentinels is counted, answered or not: the count is what tells a
    /// failure on an older connection from one on the connection in use.
    #[tokio::test]
    async fn each_asking_of_the_sentinels_is_counted_whatever_they_answer() {
        let master = followed();
        for asked in 1..=2 {
            assert!(master.connection().await.is_err(), "no Sentinel listens");
            assert_eq!(master.master().asked, asked);
        }
    }

    /// The listener tries the nodes in turn, the first again after the last.
    #[tokio::test]
    async fn the_listener_tries_each_node_in_turn() {
        let nodes: Vec<_> = (1..=3)
            .map(|port| redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap())
            .collect();
        let subscriber = Subscriber::Nodes(nodes);
        let mut ports = Vec::new();
        for attempt in 0..7 {
            let client = subscriber.client(attempt).await.unwrap();
            ports.push(client.get_connection_info().addr().to_string());
        }
        let port = |p: u16| format!("127.0.0.1:{p}");
        assert_eq!(ports, [1, 2, 3, 1, 2, 3, 1].map(port),);
    }
}

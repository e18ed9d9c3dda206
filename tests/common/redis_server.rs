//! Redis servers of the tests' own, on free loopback ports, with no persistence: one server, a
//! Cluster (three masters, a replica each), or a primary, a replica and three Sentinels. Each
//! is killed when dropped, and its files removed. And the plumbing that runs
//! `examples/replica.rs` in a separate process.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::REAL_PATIENCE;

/// How long a server, a cluster or the Sentinels may take to be ready.
const STARTUP: Duration = Duration::from_secs(20);

// ===== one redis-server =====

pub struct RedisServer {
    pub port: u16,
    /// The arguments besides the port and persistence.
    args: Vec<String>,
    child: Option<Child>,
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_with(|port| vec!["--port".into(), port.to_string()])
    }

    pub fn start_with(args: impl FnOnce(u16) -> Vec<String>) -> Self {
        Self::start_on(free_port(), args)
    }

    fn start_on(port: u16, args: impl FnOnce(u16) -> Vec<String>) -> Self {
        let mut server = RedisServer {
            port,
            args: args(port),
            child: None,
        };
        server.restart();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(&self.args)
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| {
                panic!(
                    "could not start redis-server ({err}): these tests need it on PATH; \
                     install it with `apt-get install -y redis-server`"
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + STARTUP;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not start listening"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops (`true`) or resumes the server without closing its sockets: a Redis that no
    /// longer answers, as a hung host or a network partition looks to a client.
    pub fn pause(&self, paused: bool) {
        let pid = self.child.as_ref().expect("running").id();
        let signal = if paused { "-STOP" } else { "-CONT" };
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal} {pid}");
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        connect(self.port).await
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

async fn connect(port: u16) -> redis::aio::MultiplexedConnection {
    redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// `command` on the server at `port`, or its error.
pub async fn query<T: redis::FromRedisValue>(
    port: u16,
    command: &redis::Cmd,
) -> redis::RedisResult<T> {
    Access::default().query(port, command).await
}

/// How the tests' own connections reach a server: in plain text or over TLS (trusting the
/// tests' CA), as the default user or an ACL user, with a password or none.
#[derive(Clone, Default)]
pub struct Access {
    ca: Option<Vec<u8>>,
    user: Option<String>,
    password: Option<String>,
}

impl Access {
    /// Plain text, as the default user with `password`.
    fn password(password: Option<&str>) -> Self {
        Access {
            password: password.map(str::to_owned),
            ..Access::default()
        }
    }

    /// The URL of the server at `port`, as a user of the store gives it.
    pub fn url(&self, port: u16) -> String {
        let scheme = if self.ca.is_some() { "rediss" } else { "redis" };
        let auth = match (&self.user, &self.password) {
            (Some(user), Some(password)) => format!("{user}:{password}@"),
            (None, Some(password)) => format!(":{password}@"),
            (_, None) => String::new(),
        };
        format!("{scheme}://{auth}127.0.0.1:{port}")
    }

    /// `command` on the server at `port`, or its error.
    pub async fn query<T: redis::FromRedisValue>(
        &self,
        port: u16,
        command: &redis::Cmd,
    ) -> redis::RedisResult<T> {
        let url = self.url(port);
        let client = match &self.ca {
            Some(ca) => redis::Client::build_with_tls(
                url,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(ca.clone()),
                },
            )?,
            None => redis::Client::open(url)?,
        };
        let mut connection = client.get_multiplexed_async_connection().await?;
        command.query_async(&mut connection).await
    }

    /// How many clients the server at `port` counts subscribed to `channel`.
    pub async fn subscribers(&self, port: u16, channel: &str) -> usize {
        let (_, count): (String, usize) = self
            .query(port, redis::cmd("PUBSUB").arg("NUMSUB").arg(channel))
            .await
            .unwrap();
        count
    }
}

/// Polls `ready` until it holds, failing the test after `STARTUP`; each look opens a
/// connection or runs `redis-cli`, so not every few milliseconds.
async fn until<F: std::future::Future<Output = bool>>(what: &str, ready: impl FnMut() -> F) {
    super::poll_until(what, STARTUP, Duration::from_millis(50), ready).await;
}

/// A directory for the servers' files, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(what: &str) -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "tower-bearer-{what}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    /// A subdirectory, made.
    fn dir(&self, name: &str) -> String {
        let dir = self.0.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        dir.to_string_lossy().into_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ===== TLS =====

/// The ACL user of the servers that speak TLS, and its password: the default user is off.
pub const TLS_USER: &str = "tokens";
pub const TLS_PASSWORD: &str = "tls-PASSWORD";

/// Makes, with `openssl`, a CA (`ca.crt`, `ca.key`) and a certificate it signed for 127.0.0.1
/// and localhost (`server.crt`, `server.key`) in `dir`. The certificate is a client's too:
/// the nodes of a Cluster present it to each other on the cluster bus, where Redis checks it
/// whatever `tls-auth-clients` says, and a node that fails that check is never joined.
pub fn make_certificates(dir: &Path) {
    let openssl = |args: &[&str]| {
        let status = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap_or_else(|err| {
                panic!("openssl ({err}): install it with `apt-get install -y openssl`")
            });
        assert!(status.success(), "openssl {args:?}");
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"],
            &ec[..],
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "1",
                "-subj",
                "/CN=tower-bearer test CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"],
            &ec[..],
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=localhost",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         extendedKeyUsage=serverAuth,clientAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "1",
        "-extfile",
        "ext.cnf",
    ]);
}

/// A CA of the tests' own and a certificate it signed for 127.0.0.1 (see
/// [`make_certificates`]), in a directory removed when dropped.
pub struct Tls {
    scratch: Scratch,
}

impl Tls {
    pub fn make() -> Self {
        let scratch = Scratch::new("tls");
        make_certificates(&scratch.0);
        Tls { scratch }
    }

    fn path(&self, name: &str) -> String {
        self.scratch.0.join(name).to_string_lossy().into_owned()
    }

    /// The CA's certificate (PEM), for a store to trust.
    pub fn ca(&self) -> Vec<u8> {
        std::fs::read(self.scratch.0.join("ca.crt")).unwrap()
    }

    /// redis-server's arguments to listen on `port` over TLS only, with no plaintext port, and
    /// to reach its master over TLS too; clients need no certificate of their own.
    pub fn server_args(&self, port: u16) -> Vec<String> {
        [
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--tls-cert-file",
            &self.path("server.crt"),
            "--tls-key-file",
            &self.path("server.key"),
            "--tls-ca-cert-file",
            &self.path("ca.crt"),
            "--tls-auth-clients",
            "no",
            "--tls-replication",
            "yes",
        ]
        .map(str::to_owned)
        .to_vec()
    }

    /// How the tests' own connections reach a server of [`server_args`](Self::server_args)
    /// and [`acl_user`]`(TLS_USER, TLS_PASSWORD)`.
    pub fn access(&self) -> Access {
        Access {
            ca: Some(self.ca()),
            user: Some(TLS_USER.to_owned()),
            password: Some(TLS_PASSWORD.to_owned()),
        }
    }
}

/// redis-server's arguments for one user, `user` with `password`, allowed every command, key
/// and channel, in place of the default user.
pub fn acl_user(user: &str, password: &str) -> Vec<String> {
    // A config line's words are separate arguments.
    [
        "--user",
        "default",
        "off",
        "--user",
        user,
        "on",
        &format!(">{password}"),
        "~*",
        "&*",
        "+@all",
    ]
    .map(str::to_owned)
    .to_vec()
}

// ===== a Redis Cluster =====

/// Three masters and a replica each, made with `redis-cli --cluster create`.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
    /// How the nodes are reached.
    access: Access,
    // Dropped after the nodes: their files go once they are stopped.
    _scratch: Scratch,
}

impl RedisCluster {
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// With `tls`: nodes that speak only TLS, to clients, to each other (the cluster bus) and
    /// to their masters, and know only [`TLS_USER`].
    pub async fn start_over_tls(tls: &Tls) -> Self {
        Self::start_with(Some(tls)).await
    }

    async fn start_with(tls: Option<&Tls>) -> Self {
        let scratch = Scratch::new("cluster");
        let access = tls.map_or_else(Access::default, Tls::access);
        let nodes: Vec<_> = (0..6)
            .map(|_| {
                // The cluster bus listens on the port + 10000.
                let port = loop {
                    let port = free_port();
                    if port < 55536 && TcpListener::bind(("127.0.0.1", port + 10000)).is_ok() {
                        break port;
                    }
                };
                let dir = scratch.dir(&port.to_string());
                RedisServer::start_on(port, |port| {
                    let mut args: Vec<String> = [
                        "--dir",
                        &dir,
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        "2000",
                        // Replicas sync at once, not after waiting for others to join.
                        "--repl-diskless-sync-delay",
                        "0",
                    ]
                    .map(str::to_owned)
                    .to_vec();
                    match tls {
                        None => args.extend(["--port".into(), port.to_string()]),
                        Some(tls) => {
                            args.extend(tls.server_args(port));
                            args.extend(["--tls-cluster", "yes"].map(str::to_owned));
                            args.extend(acl_user(TLS_USER, TLS_PASSWORD));
                            args.extend(
                                ["--masteruser", TLS_USER, "--masterauth", TLS_PASSWORD]
                                    .map(str::to_owned),
                            );
                        }
                    }
                    args
                })
            })
            .collect();
        let mut create = Command::new("redis-cli");
        if let Some(tls) = tls {
            create
                .args(["--tls", "--cacert", &tls.path("ca.crt")])
                .args([
                    "--user",
                    TLS_USER,
                    "--pass",
                    TLS_PASSWORD,
                    "--no-auth-warning",
                ]);
        }
        create
            .args(["--cluster", "create"])
            .args(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)))
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let mut create = create
            .spawn()
            .expect("redis-cli on PATH: install it with `apt-get install -y redis-server`");
        // It waits for the nodes to join without end: if they never do (a node refusing the
        // others' certificates on the cluster bus), the test fails rather than hangs.
        let deadline = tokio::time::Instant::now() + STARTUP;
        let created = loop {
            if let Some(status) = create.try_wait().unwrap() {
                break status;
            }
            if tokio::time::Instant::now() >= deadline {
                let _ = create.kill();
                let _ = create.wait();
                panic!("redis-cli --cluster create: the nodes did not join in {STARTUP:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(created.success(), "redis-cli --cluster create");
        let cluster = RedisCluster {
            nodes,
            access,
            _scratch: scratch,
        };
        // Each node sees the whole cluster: the slots covered, and each master's replica.
        let access = &cluster.access;
        for node in &cluster.nodes {
            until("the cluster", || async {
                let info: String = access
                    .query(node.port, redis::cmd("CLUSTER").arg("INFO"))
                    .await
                    .unwrap_or_default();
                let nodes: String = access
                    .query(node.port, redis::cmd("CLUSTER").arg("NODES"))
                    .await
                    .unwrap_or_default();
                let replicas = nodes
                    .lines()
                    .filter(|line| line.split(' ').nth(2).is_some_and(|f| f.contains("slave")))
                    .count();
                info.contains("cluster_state:ok")
                    && info.contains("cluster_known_nodes:6")
                    && replicas == 3
            })
            .await;
        }
        // Each replica in sync with its master, so that a failover loses nothing.
        for node in &cluster.nodes {
            until("the replicas", || async {
                let info: String = access
                    .query(node.port, redis::cmd("INFO").arg("replication"))
                    .await
                    .unwrap_or_default();
                info.contains("role:master") || info.contains("master_link_status:up")
            })
            .await;
        }
        cluster
    }

    /// Some of the nodes' URLs, as a user gives them: three of the six.
    pub fn seeds(&self) -> Vec<String> {
        self.nodes
            .iter()
            .take(3)
            .map(|n| self.access.url(n.port))
            .collect()
    }

    /// How many clients are subscribed to `channel`, over all the nodes (each counts its own).
    pub async fn subscribers(&self, channel: &str) -> usize {
        let mut count = 0;
        for node in &self.nodes {
            count += self.access.subscribers(node.port, channel).await;
        }
        count
    }

    /// The port of the master holding `key`'s slot, and of its replica.
    pub async fn holder_of(&self, key: &str) -> (u16, u16) {
        let port = self.nodes[0].port;
        let slot: i64 = query(port, redis::cmd("CLUSTER").arg("KEYSLOT").arg(key))
            .await
            .unwrap();
        let nodes: String = query(port, redis::cmd("CLUSTER").arg("NODES"))
            .await
            .unwrap();
        let lines: Vec<Vec<&str>> = nodes.lines().map(|l| l.split(' ').collect()).collect();
        let port_of = |fields: &[&str]| -> u16 {
            let address = fields[1].split('@').next().unwrap();
            address.rsplit(':').next().unwrap().parse().unwrap()
        };
        let master = lines
            .iter()
            .find(|fields| {
                fields[2].contains("master")
                    && fields[8..].iter().any(|range| {
                        let mut ends = range.split('-').map(|e| e.parse::<i64>().unwrap_or(-1));
                        let start = ends.next().unwrap();
                        let end = ends.next().unwrap_or(start);
                        (start..=end).contains(&slot)
                    })
            })
            .expect("a master for the slot");
        let replica = lines
            .iter()
            .find(|fields| fields[3] == master[0])
            .expect("a replica of the slot's master");
        (port_of(master), port_of(replica))
    }

    /// `CLUSTER FAILOVER` on the replica at `port`; returns once it is a master.
    pub async fn fail_over_to(&self, port: u16) {
        let _: () = query(port, redis::cmd("CLUSTER").arg("FAILOVER"))
            .await
            .unwrap();
        until("the failover", || async {
            let info: String = query(port, redis::cmd("INFO").arg("replication"))
                .await
                .unwrap_or_default();
            info.contains("role:master")
        })
        .await;
    }
}

// ===== a primary, a replica and three Sentinels =====

pub const SENTINEL_MASTER: &str = "tokens";

pub struct RedisSentinels {
    pub primary: RedisServer,
    pub replica: RedisServer,
    pub sentinels: Vec<RedisServer>,
    /// How the Sentinels are reached, and the primary and the replica.
    sentinel_access: Access,
    pub node_access: Access,
    _scratch: Scratch,
}

impl RedisSentinels {
    pub async fn start() -> Self {
        Self::start_with(None, None).await
    }

    /// With `password` on the primary and the replica (`requirepass`), none on the Sentinels.
    pub async fn start_with_password(password: Option<&str>) -> Self {
        Self::start_with(password, None).await
    }

    /// With `tls`: the primary, the replica and the Sentinels speak only TLS, to clients and
    /// to each other, and know only [`TLS_USER`].
    pub async fn start_over_tls(tls: &Tls) -> Self {
        Self::start_with(None, Some(tls)).await
    }

    async fn start_with(password: Option<&str>, tls: Option<&Tls>) -> Self {
        let (sentinel_access, node_access) = match tls {
            Some(tls) => (tls.access(), tls.access()),
            None => (Access::default(), Access::password(password)),
        };
        let mut auth: Vec<String> = password
            .map(|p| {
                ["--requirepass", p, "--masterauth", p]
                    .map(str::to_owned)
                    .to_vec()
            })
            .unwrap_or_default();
        // How a node listens on `port`.
        let listen = |port: u16| match tls {
            Some(tls) => tls.server_args(port),
            None => vec!["--port".into(), port.to_string()],
        };
        // The Sentinels' own lines: how they log in to the nodes and to each other.
        let mut sentinel_auth = password.map_or_else(String::new, |p| {
            format!("sentinel auth-pass {SENTINEL_MASTER} {p}\n")
        });
        if tls.is_some() {
            auth.extend(acl_user(TLS_USER, TLS_PASSWORD));
            auth.extend(
                ["--masteruser", TLS_USER, "--masterauth", TLS_PASSWORD].map(str::to_owned),
            );
            sentinel_auth = format!(
                "sentinel auth-user {SENTINEL_MASTER} {TLS_USER}\n\
                 sentinel auth-pass {SENTINEL_MASTER} {TLS_PASSWORD}\n\
                 sentinel sentinel-user {TLS_USER}\n\
                 sentinel sentinel-pass {TLS_PASSWORD}\n"
            );
        }
        let scratch = Scratch::new("sentinel");
        // Replication writes a snapshot, even with persistence off: into the scratch directory.
        let primary_dir = scratch.dir("primary");
        let primary = RedisServer::start_with(|port| {
            listen(port)
                .into_iter()
                .chain(
                    ["--dir", &primary_dir, "--repl-diskless-sync-delay", "0"].map(str::to_owned),
                )
                .chain(auth.clone())
                .collect()
        });
        let primary_port = primary.port;
        let replica_dir = scratch.dir("replica");
        let replica = RedisServer::start_with(|port| {
            listen(port)
                .into_iter()
                .chain(
                    [
                        "--dir",
                        &replica_dir,
                        "--replicaof",
                        "127.0.0.1",
                        &primary_port.to_string(),
                    ]
                    .map(str::to_owned),
                )
                .chain(auth.clone())
                .collect()
        });
        let sentinels = (0..3)
            .map(|i| {
                let dir = scratch.dir(&format!("sentinel-{i}"));
                // A Sentinel rewrites its configuration file: one each.
                let config = format!("{dir}/sentinel.conf");
                std::fs::write(
                    &config,
                    format!(
                        "sentinel monitor {SENTINEL_MASTER} 127.0.0.1 {primary_port} 2\n\
                         sentinel down-after-milliseconds {SENTINEL_MASTER} 500\n\
                         sentinel failover-timeout {SENTINEL_MASTER} 5000\n{sentinel_auth}"
                    ),
                )
                .unwrap();
                RedisServer::start_with(|port| {
                    let mut args = vec![config.clone(), "--sentinel".into()];
                    args.extend(listen(port));
                    args.extend(["--dir".into(), dir.clone()]);
                    if tls.is_some() {
                        args.extend(acl_user(TLS_USER, TLS_PASSWORD));
                    }
                    args
                })
            })
            .collect();
        let set = RedisSentinels {
            primary,
            replica,
            sentinels,
            sentinel_access,
            node_access,
            _scratch: scratch,
        };
        // Each Sentinel knows the replica and the two others: a failover needs them.
        for sentinel in &set.sentinels {
            until("the sentinels", || async {
                let master: Vec<String> = set
                    .sentinel_access
                    .query(
                        sentinel.port,
                        redis::cmd("SENTINEL").arg("MASTER").arg(SENTINEL_MASTER),
                    )
                    .await
                    .unwrap_or_default();
                let field = |name: &str| {
                    master
                        .iter()
                        .position(|f| f == name)
                        .and_then(|i| master.get(i + 1))
                        .cloned()
                        .unwrap_or_default()
                };
                field("num-slaves") == "1" && field("num-other-sentinels") == "2"
            })
            .await;
        }
        let replica_port = set.replica.port;
        until("the replica", || async {
            let info: String = set
                .node_access
                .query(replica_port, redis::cmd("INFO").arg("replication"))
                .await
                .unwrap_or_default();
            info.contains("master_link_status:up")
        })
        .await;
        set
    }

    pub fn urls(&self) -> Vec<String> {
        self.sentinels
            .iter()
            .map(|s| self.sentinel_access.url(s.port))
            .collect()
    }
}

// ===== what happens to one key =====

/// What Redis does to one key, as it does it (keyspace notifications): for a test that waits
/// on a change too brief to poll for, such as a lease taken and let go at once.
pub struct KeyEvents {
    key: String,
    messages: redis::aio::PubSubStream,
}

impl KeyEvents {
    /// What happens to `key` on `server` from now on: `set` (`SET`), `expire` (`PEXPIRE`, and
    /// `SET … PX` after its `set`), `del` (`DEL`), `expired` (its time ran out).
    pub async fn watch(server: &RedisServer, key: &str) -> Self {
        let _: () = query(
            server.port,
            redis::cmd("CONFIG")
                .arg("SET")
                .arg("notify-keyspace-events")
                .arg("Kg$x"),
        )
        .await
        .unwrap();
        let client = redis::Client::open(server.url()).unwrap();
        let mut pubsub = client.get_async_pubsub().await.unwrap();
        pubsub
            .subscribe(format!("__keyspace@0__:{key}"))
            .await
            .unwrap();
        KeyEvents {
            key: key.to_owned(),
            messages: pubsub.into_on_message(),
        }
    }

    /// Waits for the key's next `event`, past any other, failing the test with `what` if it
    /// does not come within `REAL_PATIENCE`.
    pub async fn next(&mut self, event: &str, what: &str) {
        use tokio_stream::StreamExt;
        let key = &self.key;
        let messages = &mut self.messages;
        let wait = async {
            while let Some(message) = messages.next().await {
                if message.get_payload::<String>().unwrap() == event {
                    return;
                }
            }
            panic!("the subscription to {key}'s events ended");
        };
        tokio::time::timeout(REAL_PATIENCE, wait)
            .await
            .unwrap_or_else(|_| panic!("never happened within {REAL_PATIENCE:?}: {what}"));
    }
}

// ===== replicas in processes of their own =====

/// Starts this test binary again, as a separate process running only `replica_process`,
/// which runs `examples/replica.rs` with `args`.
pub fn spawn_replica(args: &[String]) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["replica_process", "--exact", "--ignored", "--nocapture"])
        .env("TOWER_BEARER_REPLICA_ARGS", args.join("\u{1f}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// The replica process's report lines (one per cache), once it has exited.
pub fn finish(child: Child) -> Vec<String> {
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let lines: Vec<String> = stdout
        .lines()
        .filter(|l| l.starts_with("replica "))
        .map(str::to_owned)
        .collect();
    assert!(!lines.is_empty(), "no report from a replica: {stdout}");
    assert!(output.status.success(), "{lines:?}");
    lines
}

/// The arguments of a replica process, from `TOWER_BEARER_REPLICA_ARGS`; `None` when the
/// test runs as a test rather than as a replica.
pub fn replica_process_args() -> Option<Vec<String>> {
    let args = std::env::var("TOWER_BEARER_REPLICA_ARGS").ok()?;
    Some(args.split('\u{1f}').map(str::to_owned).collect())
}

// ===== what a fleet's run should cost the authorization server =====

/// The refreshes one shared token needs over a run that took `took`, with 2 s tokens: one per
/// 1.5 s of it (the last quarter of a token's life is its refresh-ahead window), plus the one
/// whose window the run ended in. A loaded machine stretches a run past its plan, and a longer
/// run rightly needs more; what sharing saves is every replica's own refresh besides.
pub fn refreshes_for(took: Duration) -> std::ops::RangeInclusive<u64> {
    5..=(took.as_secs_f64() / 1.5) as u64 + 1
}

/// What the mock's counters say, for an assertion's message.
pub fn counts(c: &tower_bearer_mock::apivideo::Counters) -> String {
    format!(
        "{} API-key logins, {} refreshes, {} rejected refresh tokens, {} 401s, {} requests with an expired token",
        c.api_key_logins,
        c.refreshes,
        c.rejected_refresh_tokens,
        c.unauthorized,
        c.expired_token_requests
    )
}

/// A fleet shared one token through a run that took `took`: one login, the refreshes one
/// token needs, no refresh token rejected, no request sent with an expired token.
pub fn assert_one_shared_token(c: &tower_bearer_mock::apivideo::Counters, took: Duration) {
    assert_eq!(c.api_key_logins, 1, "{}", counts(c));
    assert!(
        refreshes_for(took).contains(&c.refreshes),
        "{} in {took:?}",
        counts(c)
    );
    assert_eq!(c.rejected_refresh_tokens, 0, "{}", counts(c));
    assert_eq!(c.expired_token_requests, 0, "{}", counts(c));
}

//! Connection URLs and a client that follows Sentinel failover by itself.
//!
//! The redis crate's `ConnectionManager` reconnects to the address it was built with, so after a
//! failover it stays pinned to the dead primary. [`Connection`] instead re-resolves the primary
//! through Sentinel whenever the link breaks or the node answers `READONLY`, and retries only what
//! is safe to retry (see [`Retry`]).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, Client, ConnectionAddr, ConnectionInfo, ErrorKind, FromRedisValue,
    IntoConnectionInfo, Pipeline, RedisConnectionInfo, RedisError, ServerErrorKind,
    TlsCertificates, Value,
};
use tokio::sync::Mutex;

use crate::error::{Error, Result};

/// Default Redis port.
pub const DEFAULT_REDIS_PORT: u16 = 6379;
/// Default Sentinel port.
pub const DEFAULT_SENTINEL_PORT: u16 = 26379;
/// How long a request waits for a reply before the link is treated as broken.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a TCP (and TLS) connect may take.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a request keeps retrying through a failover before giving up. Sentinel's own
/// failover takes down-after + election (~2–15 s depending on settings), so the default covers
/// the operator's default `downAfterMilliseconds` of 5 s with room to spare.
pub const DEFAULT_FAILOVER_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause between attempts while waiting for a new primary.
pub(crate) const RETRY_BACKOFF: Duration = Duration::from_millis(50);

const SCHEME_REDIS: &str = "redis";
const SCHEME_REDIS_TLS: &str = "rediss";
const SCHEME_SENTINEL: &str = "redis+sentinel";
const SCHEME_SENTINEL_TLS: &str = "rediss+sentinel";
const SCHEME_CLUSTER: &str = "redis+cluster";
const SCHEME_CLUSTER_TLS: &str = "rediss+cluster";

/// A password that never shows up in `Debug` output or logs. One read from a file is read
/// again at every new connection ([`Secret::current`]), so a rotated Secret (the kubelet
/// rewrites the mounted file) is picked up without restarting the client.
#[derive(Clone)]
pub struct Secret {
    value: String,
    file: Option<PathBuf>,
    /// The last password a server accepted (shared by clones): the fallback while a rotated
    /// file is ahead of the server.
    last_good: Arc<std::sync::Mutex<Option<String>>>,
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value && self.file == other.file
    }
}

impl Eq for Secret {}

impl Secret {
    /// Wraps a password.
    pub fn new(value: impl Into<String>) -> Self {
        Self {
            value: value.into(),
            file: None,
            last_good: Arc::default(),
        }
    }

    /// Reads a password from a file (trailing newline removed), as mounted from a Kubernetes
    /// Secret. The file must be readable now; it is read again for every new connection.
    pub fn from_file(what: &'static str, path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        let value = read_password_file(&path).map_err(|source| Error::File {
            what,
            path: path.clone(),
            source,
        })?;
        Ok(Self {
            value,
            file: Some(path),
            last_good: Arc::default(),
        })
    }

    /// Reads a password from an environment variable.
    pub fn from_env(what: &'static str, var: &str) -> Result<Self> {
        std::env::var(var)
            .map(Self::new)
            .map_err(|_| Error::MissingEnv {
                what,
                var: var.to_owned(),
            })
    }

    /// The password as read when the spec was made; only for handing to a handshake.
    pub fn expose(&self) -> &str {
        &self.value
    }

    /// The password to log in with now: the file's content when it came from a file (a
    /// rotation may have replaced it), else the value. If the file cannot be read at this
    /// moment (the kubelet swaps the mounted files atomically, but a hand edit may not), the
    /// value read before is used.
    pub fn current(&self) -> String {
        match &self.file {
            Some(path) => match read_password_file(path) {
                Ok(value) if !value.is_empty() => value,
                Ok(_) | Err(_) => {
                    tracing::debug!(file = %path.display(), "password file unreadable or empty; using the password read before");
                    self.value.clone()
                }
            },
            None => self.value.clone(),
        }
    }
}

impl Secret {
    /// The password to try when [`Secret::current`] is refused: the last one a server
    /// accepted, if it differs. A file rotated before the server learnt the new password (or
    /// after it was told to drop the old one) is thus survived without an error.
    pub fn fallback(&self, refused: &str) -> Option<String> {
        let last = self.last_good.lock().ok()?.clone();
        last.filter(|last| last != refused)
    }

    /// Records that a server accepted `password`.
    pub fn accepted(&self, password: &str) {
        if let Ok(mut last) = self.last_good.lock()
            && last.as_deref() != Some(password)
        {
            *last = Some(password.to_owned());
        }
    }
}

fn read_password_file(path: &Path) -> std::io::Result<String> {
    let text = std::fs::read_to_string(path)?;
    Ok(text.trim_end_matches(['\r', '\n']).to_owned())
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A `host:port` pair.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Where the data lives: one server, or whatever primary a set of sentinels reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A single server (`redis://`, `rediss://`): a primary, a replica or a managed endpoint.
    Direct(HostPort),
    /// The primary of `master`, as reported by any of `sentinels`.
    Sentinel {
        sentinels: Vec<HostPort>,
        master: String,
    },
    /// A Redis Cluster: any of `nodes` tells the slot map (`redis+cluster://`,
    /// `rediss+cluster://`); requests go to the primary of their keys' slot.
    Cluster { nodes: Vec<HostPort> },
}

/// Credentials for one kind of server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// ACL user name; `None` means the `default` user.
    pub username: Option<String>,
    pub password: Option<Secret>,
}

/// Everything needed to connect, parsed from a URL and optionally adjusted by the caller (for
/// instance a CLI flag naming a password file).
///
/// URL forms:
/// - `redis://[user[:password]@]host[:port][/db]`
/// - `rediss://…` — TLS; `?ca_file=/path/ca.crt` trusts a private CA
/// - `redis+sentinel://[user[:password]@]host1:port1,host2:port2/<master>[/db]`, and
///   `rediss+sentinel://…` for TLS to sentinels and data nodes alike
/// - `redis+cluster://[user[:password]@]host1:port1,host2:port2[/]`: a Redis Cluster, any of
///   the nodes as seeds (`rediss+cluster://` for TLS); database 0 only, as the cluster has no
///   other
///
/// Query parameters: `password_file`, `password_env`, `ca_file`, `sentinel_username`,
/// `sentinel_password_file`, `sentinel_password_env`, `response_timeout_ms`,
/// `connect_timeout_ms`, `failover_timeout_ms`. The user and password in the URL are for the
/// data nodes; sentinels take their own (Sentinel's `requirepass`/ACL is separate): none by
/// default, `sentinel_username` alone means that user with the data password (ABStore's
/// sentinels know every user under the same name and password), and `sentinel_password_file`
/// or `sentinel_password_env` give a password of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionSpec {
    pub endpoint: Endpoint,
    pub tls: bool,
    pub ca_file: Option<PathBuf>,
    pub db: i64,
    pub credentials: Credentials,
    pub sentinel_credentials: Credentials,
    pub response_timeout: Duration,
    pub connect_timeout: Duration,
    pub failover_timeout: Duration,
    /// The URL as given, with the password masked: what errors and logs show.
    pub redacted_url: String,
    /// Send `READONLY` on every new link: a cluster replica answers reads only after it (else
    /// it redirects them to its primary). Set by [`ConnectionSpec::cluster_replica`].
    pub replica_reads: bool,
}

impl ConnectionSpec {
    /// Parses a connection URL; see the type's documentation for the forms.
    pub fn parse(url: &str) -> Result<Self> {
        let redacted = redact_url(url);
        let invalid = |reason: String| Error::InvalidUrl {
            url: redacted.clone(),
            reason,
        };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| invalid("missing scheme (expected redis://, rediss://, redis+sentinel://, rediss+sentinel://, redis+cluster:// or rediss+cluster://)".into()))?;
        let (tls, sentinel, cluster) = match scheme.to_ascii_lowercase().as_str() {
            SCHEME_REDIS => (false, false, false),
            SCHEME_REDIS_TLS => (true, false, false),
            SCHEME_SENTINEL => (false, true, false),
            SCHEME_SENTINEL_TLS => (true, true, false),
            SCHEME_CLUSTER => (false, false, true),
            SCHEME_CLUSTER_TLS => (true, false, true),
            other => {
                return Err(invalid(format!(
                    "unknown scheme {other:?} (expected redis, rediss, redis+sentinel, rediss+sentinel, redis+cluster or rediss+cluster)"
                )));
            }
        };
        // The authority may hold several comma-separated hosts, which `url` cannot parse, so the
        // host list is cut out here and the rest (user info, path, query) parsed by `url`.
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((user, hosts)) => (Some(user), hosts),
            None => (None, authority),
        };
        let placeholder = match userinfo {
            Some(user) => format!("redis://{user}@placeholder{tail}"),
            None => format!("redis://placeholder{tail}"),
        };
        let parsed = url::Url::parse(&placeholder).map_err(|e| invalid(e.to_string()))?;
        let default_port = if sentinel {
            DEFAULT_SENTINEL_PORT
        } else {
            DEFAULT_REDIS_PORT
        };
        let host_list = parse_hosts(hosts, default_port).map_err(invalid)?;

        let segments: Vec<String> = parsed
            .path_segments()
            .map(|s| s.filter(|p| !p.is_empty()).map(percent_decode).collect())
            .unwrap_or_default();
        let parse_db = |s: &str| {
            s.parse::<i64>()
                .ok()
                .filter(|db| (0..=15_000).contains(db))
                .ok_or_else(|| invalid(format!("database {s:?} is not a number")))
        };
        let (endpoint, db) = if sentinel {
            let master = segments.first().cloned().ok_or_else(|| {
                invalid("missing master name: redis+sentinel://host:port,…/<master>".into())
            })?;
            let db = match segments.get(1) {
                Some(s) => parse_db(s)?,
                None => 0,
            };
            if segments.len() > 2 {
                return Err(invalid("path must be /<master>[/<db>]".into()));
            }
            (
                Endpoint::Sentinel {
                    sentinels: host_list,
                    master,
                },
                db,
            )
        } else if cluster {
            if !segments.is_empty() {
                return Err(invalid(
                    "a cluster URL has no path: a Redis Cluster has only database 0".into(),
                ));
            }
            (Endpoint::Cluster { nodes: host_list }, 0)
        } else {
            let [host] = <[HostPort; 1]>::try_from(host_list).map_err(|_| {
                invalid(
                    "several hosts are only allowed with redis+sentinel:// or redis+cluster://"
                        .into(),
                )
            })?;
            let db = match segments.as_slice() {
                [] => 0,
                [db] => parse_db(db)?,
                _ => return Err(invalid("path must be empty or /<db>".into())),
            };
            (Endpoint::Direct(host), db)
        };

        let mut credentials = Credentials {
            username: Some(percent_decode(parsed.username())).filter(|u| !u.is_empty()),
            password: parsed.password().map(|p| Secret::new(percent_decode(p))),
        };
        let mut sentinel_credentials = Credentials::default();
        let mut spec_tls_ca = None;
        let mut response_timeout = DEFAULT_RESPONSE_TIMEOUT;
        let mut connect_timeout = DEFAULT_CONNECT_TIMEOUT;
        let mut failover_timeout = DEFAULT_FAILOVER_TIMEOUT;
        let millis = |name: &str, v: &str| {
            v.parse::<u64>()
                .ok()
                .filter(|ms| *ms > 0)
                .map(Duration::from_millis)
                .ok_or_else(|| {
                    invalid(format!(
                        "{name} must be a positive number of milliseconds, got {v:?}"
                    ))
                })
        };
        for (name, value) in parsed.query_pairs() {
            let value = value.into_owned();
            match name.as_ref() {
                "password_file" => {
                    credentials.password = Some(Secret::from_file("password_file", value)?)
                }
                "password_env" => {
                    credentials.password = Some(Secret::from_env("password_env", &value)?)
                }
                "ca_file" => spec_tls_ca = Some(PathBuf::from(value)),
                "sentinel_username" => sentinel_credentials.username = Some(value),
                "sentinel_password_file" => {
                    sentinel_credentials.password =
                        Some(Secret::from_file("sentinel_password_file", value)?)
                }
                "sentinel_password_env" => {
                    sentinel_credentials.password =
                        Some(Secret::from_env("sentinel_password_env", &value)?)
                }
                "response_timeout_ms" => response_timeout = millis("response_timeout_ms", &value)?,
                "connect_timeout_ms" => connect_timeout = millis("connect_timeout_ms", &value)?,
                "failover_timeout_ms" => failover_timeout = millis("failover_timeout_ms", &value)?,
                other => {
                    return Err(invalid(format!(
                        "unknown parameter {other:?} (known: password_file, password_env, ca_file, sentinel_username, sentinel_password_file, sentinel_password_env, response_timeout_ms, connect_timeout_ms, failover_timeout_ms)"
                    )));
                }
            }
        }
        if spec_tls_ca.is_some() && !tls {
            return Err(invalid(
                "ca_file is given but the scheme is not TLS (use rediss://, rediss+sentinel:// or rediss+cluster://)"
                    .into(),
            ));
        }
        if !sentinel
            && (sentinel_credentials.username.is_some() || sentinel_credentials.password.is_some())
        {
            return Err(invalid(
                "sentinel_* parameters need a redis+sentinel:// URL".into(),
            ));
        }
        // A sentinel user without a password of its own is the data user's twin on the
        // sentinels (how ABStore sets them up): it authenticates with the same password.
        if sentinel_credentials.username.is_some() && sentinel_credentials.password.is_none() {
            sentinel_credentials.password = credentials.password.clone();
        }
        Ok(Self {
            endpoint,
            tls,
            ca_file: spec_tls_ca,
            db,
            credentials,
            sentinel_credentials,
            response_timeout,
            connect_timeout,
            failover_timeout,
            redacted_url: redacted,
            replica_reads: false,
        })
    }
}

impl ConnectionSpec {
    /// The same credentials, TLS and timeouts for one server (`redis://`-like): how jobs reach
    /// each node of a cluster, or a replica Sentinel named.
    pub fn direct(&self, server: &HostPort) -> ConnectionSpec {
        ConnectionSpec {
            endpoint: Endpoint::Direct(server.clone()),
            ..self.clone()
        }
    }

    /// [`ConnectionSpec::direct`] to a replica of a Redis Cluster, reading from it (`READONLY`
    /// on every link).
    pub fn cluster_replica(&self, server: &HostPort) -> ConnectionSpec {
        ConnectionSpec {
            replica_reads: true,
            ..self.direct(server)
        }
    }
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

fn parse_hosts(list: &str, default_port: u16) -> std::result::Result<Vec<HostPort>, String> {
    if list.is_empty() {
        return Err("no host given".into());
    }
    list.split(',')
        .map(|item| {
            let item = item.trim();
            let (host, port) = if let Some(rest) = item.strip_prefix('[') {
                let (host, after) = rest
                    .split_once(']')
                    .ok_or_else(|| format!("unclosed '[' in host {item:?}"))?;
                match after.strip_prefix(':') {
                    Some(p) => (host, Some(p)),
                    None if after.is_empty() => (host, None),
                    None => return Err(format!("unexpected {after:?} after host {host:?}")),
                }
            } else {
                match item.rsplit_once(':') {
                    Some((h, p)) => (h, Some(p)),
                    None => (item, None),
                }
            };
            if host.is_empty() {
                return Err(format!("empty host in {list:?}"));
            }
            let port = match port {
                Some(p) => p
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| format!("invalid port {p:?} for host {host:?}"))?,
                None => default_port,
            };
            Ok(HostPort {
                host: host.to_owned(),
                port,
            })
        })
        .collect()
}

/// Masks the password in a URL (`redis://app:***@host`) so it can go into errors and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{hosts}"),
            None => format!("{userinfo}@{hosts}"),
        },
        None => authority.to_owned(),
    };
    // Passwords can also sit in the query string of hand-written URLs; mask any `password=`.
    let tail = tail
        .split('&')
        .map(|part| match part.split_once("password=") {
            Some((before, _)) if !before.ends_with('_') => format!("{before}password=***"),
            _ => part.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&");
    format!("{scheme}://{authority}{tail}")
}

/// Whether a request may be sent again after the link broke with the request in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Applying it twice is the same as once (PFADD, SET NX, EXPIREAT NX, reads, a script guarded
    /// by a dedup flag): retried through failover until the deadline.
    Idempotent,
    /// Applying it twice would double count (INCRBY): retried only when the failure proves it was
    /// not applied (refused connection, READONLY, LOADING, …), else [`Error::OutcomeUnknown`].
    NotIdempotent,
}

/// How a failed request relates to the server's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The server did not apply it, and another node (or the same one later) may: reconnect, retry.
    NotApplied,
    /// The link broke with the request in flight; it may or may not have been applied.
    Unknown,
    /// A real error (wrong type, no permission, bad argument): retrying cannot help.
    Fatal,
}

pub(crate) fn classify(e: &RedisError) -> Failure {
    if e.is_connection_refusal() {
        return Failure::NotApplied;
    }
    match e.kind() {
        ErrorKind::Server(
            ServerErrorKind::ReadOnly
            | ServerErrorKind::MasterDown
            | ServerErrorKind::BusyLoading
            | ServerErrorKind::TryAgain
            | ServerErrorKind::NoScript
            // Cluster mode: the node did not run it (another serves the slot, or the cluster
            // is failing over).
            | ServerErrorKind::Moved
            | ServerErrorKind::Ask
            | ServerErrorKind::ClusterDown,
        ) => return Failure::NotApplied,
        ErrorKind::Io => return Failure::Unknown,
        _ => {}
    }
    // Errors the client library has no kind for, by their code.
    match e.code() {
        Some("NOREPLICAS") => Failure::NotApplied,
        _ if e.is_timeout() || e.is_connection_dropped() => Failure::Unknown,
        _ => Failure::Fatal,
    }
}

/// Classifies the error of a whole pipeline of `commands` commands. The client library reports a
/// pipeline whose commands failed as one error listing each failure (a MULTI/EXEC as
/// `EXECABORT` with the reasons): when every command failed for a reason that means "not applied"
/// (`NOREPLICAS` right after a failover, `READONLY`, …), nothing was applied and the pipeline may
/// be resent whole. If only some failed, the others were applied: a resend could apply them
/// twice, so that is never `NotApplied`.
pub(crate) fn classify_pipeline(e: &RedisError, commands: usize) -> Failure {
    let direct = classify(e);
    if direct != Failure::Fatal {
        return direct;
    }
    let Some(items) = e.clone().into_server_errors() else {
        return direct;
    };
    let all_failed = items.len() == commands
        || matches!(e.kind(), ErrorKind::Server(ServerErrorKind::ExecAbort));
    let all_not_applied = !items.is_empty()
        && items
            .iter()
            .all(|(_, item)| classify(&RedisError::from(item.clone())) == Failure::NotApplied);
    if all_failed && all_not_applied {
        Failure::NotApplied
    } else {
        direct
    }
}

/// Classifies one entry of a pipeline answered with `ignore_errors`.
pub(crate) fn classify_value(v: &Value) -> Option<(Failure, RedisError)> {
    match v {
        Value::ServerError(e) => {
            let err = RedisError::from(e.clone());
            Some((classify(&err), err))
        }
        _ => None,
    }
}

/// A pipeline that got no replies: where it went, why, and whether it may have reached the
/// server (`sent`): an unsent pipeline is safe to resend whatever it holds.
#[derive(Debug)]
pub(crate) struct ExecFailure {
    pub server: HostPort,
    pub error: RedisError,
    pub sent: bool,
}

struct Current {
    generation: u64,
    server: Option<(HostPort, MultiplexedConnection)>,
    /// Index of the sentinel that answered last, asked first next time.
    preferred_sentinel: usize,
}

/// A connection to the current primary (or the one direct server), shared by clones.
///
/// Clones share one multiplexed link; requests from many tasks are pipelined on it.
#[derive(Clone)]
pub struct Connection {
    spec: Arc<ConnectionSpec>,
    tls: Option<TlsCertificates>,
    current: Arc<Mutex<Current>>,
    /// Cluster mode: the slot map and the links to the nodes.
    pub(crate) router: Option<Arc<crate::cluster::Router>>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("url", &self.spec.redacted_url)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Parses `url` and connects (resolving the primary through Sentinel if it is a sentinel URL).
    pub async fn open(url: &str) -> Result<Self> {
        Self::connect(ConnectionSpec::parse(url)?).await
    }

    /// Connects with an already parsed (and possibly adjusted) spec.
    pub async fn connect(spec: ConnectionSpec) -> Result<Self> {
        let tls = tls_certificates(&spec)?;
        if spec.tls {
            // Binaries install it at start; programs embedding the library may not have.
            crate::crypto::install_default_provider();
        }
        let router = match &spec.endpoint {
            Endpoint::Cluster { nodes } => Some(Arc::new(crate::cluster::Router::new(nodes))),
            _ => None,
        };
        let conn = Self {
            spec: Arc::new(spec),
            tls,
            current: Arc::new(Mutex::new(Current {
                generation: 0,
                server: None,
                preferred_sentinel: 0,
            })),
            router,
        };
        match &conn.router {
            // The slot map, read now: a wrong URL or password fails here, not at the first write.
            Some(router) => {
                let deadline = Instant::now() + conn.spec.connect_timeout;
                conn.cluster_primaries(router, deadline)
                    .await
                    .map_err(|failure| Error::Redis {
                        server: failure.server.to_string(),
                        context: "read the cluster's slot map",
                        source: failure.error,
                    })?;
            }
            None => {
                conn.link().await?;
            }
        }
        Ok(conn)
    }

    /// Whether this is a Redis Cluster connection (`redis+cluster://`): keys must then use the
    /// cluster layout ([`crate::keys`]) so that each request stays in one slot.
    pub fn is_cluster(&self) -> bool {
        self.router.is_some()
    }

    /// A new link to one node, with the data credentials.
    pub(crate) async fn node_link(
        &self,
        hp: &HostPort,
    ) -> std::result::Result<MultiplexedConnection, RedisError> {
        self.open_link(hp, &self.spec.credentials, 0).await
    }

    /// The parsed connection settings.
    pub fn spec(&self) -> &ConnectionSpec {
        &self.spec
    }

    /// The server requests currently go to, if connected.
    pub async fn current_server(&self) -> Option<HostPort> {
        self.current
            .lock()
            .await
            .server
            .as_ref()
            .map(|(hp, _)| hp.clone())
    }

    /// Sends `pipe` and returns its replies, following failover as `retry` allows.
    pub async fn exec<T: FromRedisValue>(
        &self,
        pipe: &Pipeline,
        retry: Retry,
        context: &'static str,
    ) -> Result<T> {
        let deadline = Instant::now() + self.spec.failover_timeout;
        if let Some(router) = &self.router {
            return self
                .cluster_exec(router, pipe, retry, context, deadline)
                .await;
        }
        loop {
            let (generation, server, mut conn) = self.link_until(deadline).await?;
            match pipe.query_async::<T>(&mut conn).await {
                Ok(v) => return Ok(v),
                Err(e) => {
                    let failure = classify_pipeline(&e, pipe.len());
                    if failure != Failure::Fatal {
                        self.invalidate(generation).await;
                    }
                    let may_retry = match failure {
                        Failure::NotApplied => true,
                        Failure::Unknown => retry == Retry::Idempotent,
                        Failure::Fatal => false,
                    };
                    if may_retry && Instant::now() < deadline {
                        tracing::debug!(server = %server, error = %e, "retrying after failover-type error");
                        tokio::time::sleep(RETRY_BACKOFF).await;
                        continue;
                    }
                    let server = server.to_string();
                    return Err(
                        if failure == Failure::Unknown && retry == Retry::NotIdempotent {
                            Error::OutcomeUnknown {
                                server,
                                context,
                                source: e,
                            }
                        } else {
                            Error::Redis {
                                server,
                                context,
                                source: e,
                            }
                        },
                    );
                }
            }
        }
    }

    /// Sends `pipe` once with per-command replies (`ignore_errors`), so a caller that knows which
    /// entries are safe to resend can retry just those. A broken link is returned as an error
    /// (with the connection invalidated); server errors come back inside the replies.
    pub(crate) async fn exec_each(
        &self,
        pipe: &mut Pipeline,
        deadline: Instant,
    ) -> std::result::Result<(HostPort, Vec<Value>), ExecFailure> {
        if let Some(router) = &self.router {
            return self.cluster_exec_each(router, pipe, deadline).await;
        }
        let (generation, server, mut conn) = match self.link_until(deadline).await {
            Ok(v) => v,
            Err(e) => {
                // No link, so nothing was sent: safe to resend even non-idempotent commands.
                return Err(ExecFailure {
                    server: HostPort {
                        host: "unresolved".into(),
                        port: 0,
                    },
                    error: RedisError::from((ErrorKind::Io, "no primary reachable", e.to_string())),
                    sent: false,
                });
            }
        };
        pipe.ignore_errors();
        match pipe.query_async::<Vec<Value>>(&mut conn).await {
            Ok(values) => {
                if values
                    .iter()
                    .any(|v| matches!(classify_value(v), Some((Failure::NotApplied, _))))
                {
                    // READONLY and friends: this node is no longer the primary.
                    self.invalidate(generation).await;
                }
                Ok((server, values))
            }
            Err(error) => {
                self.invalidate(generation).await;
                Err(ExecFailure {
                    server,
                    error,
                    sent: true,
                })
            }
        }
    }

    /// Forgets the current link (if it is still the one that failed) so the next request
    /// re-resolves the primary.
    pub(crate) async fn invalidate(&self, generation: u64) {
        let mut current = self.current.lock().await;
        if current.generation == generation && current.server.is_some() {
            tracing::info!(url = %self.spec.redacted_url, "dropping link to Redis; will re-resolve the primary");
            current.server = None;
        }
    }

    async fn link_until(
        &self,
        deadline: Instant,
    ) -> Result<(u64, HostPort, MultiplexedConnection)> {
        let started = Instant::now();
        loop {
            match self.link().await {
                Ok(v) => return Ok(v),
                Err(e) if Instant::now() < deadline && is_transient(&e) => {
                    tracing::debug!(error = %e, "waiting for a primary");
                    tokio::time::sleep(RETRY_BACKOFF).await;
                }
                Err(Error::NoPrimary {
                    master,
                    sentinels,
                    last_error,
                    ..
                }) => {
                    return Err(Error::NoPrimary {
                        master,
                        sentinels,
                        waited_ms: started.elapsed().as_millis(),
                        last_error,
                    });
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Returns the live link, establishing one if needed. The lock is held while connecting so
    /// that many tasks failing at once cause one re-resolution, not a stampede.
    async fn link(&self) -> Result<(u64, HostPort, MultiplexedConnection)> {
        let mut current = self.current.lock().await;
        if let Some((hp, conn)) = &current.server {
            return Ok((current.generation, hp.clone(), conn.clone()));
        }
        let (hp, conn, preferred) = match &self.spec.endpoint {
            Endpoint::Direct(hp) => {
                let conn = self
                    .open_link(hp, &self.spec.credentials, self.spec.db)
                    .await
                    .map_err(|source| Error::Redis {
                        server: hp.to_string(),
                        context: "connect",
                        source,
                    })?;
                (hp.clone(), conn, 0)
            }
            Endpoint::Sentinel { sentinels, master } => {
                self.resolve_primary(sentinels, master, current.preferred_sentinel)
                    .await?
            }
            Endpoint::Cluster { .. } => {
                // Cluster requests are routed per slot (crate::cluster), never through here.
                return Err(Error::InvalidArgument {
                    field: "url",
                    reason: format!(
                        "{} is a cluster URL: there is no single primary to link to",
                        self.spec.redacted_url
                    ),
                });
            }
        };
        current.generation += 1;
        current.preferred_sentinel = preferred;
        current.server = Some((hp.clone(), conn.clone()));
        tracing::info!(server = %hp, url = %self.spec.redacted_url, "connected to Redis");
        Ok((current.generation, hp, conn))
    }

    /// The replicas of a Sentinel URL's master that the sentinels consider healthy (not
    /// subjectively or objectively down, not disconnected, link to the primary up), from the
    /// first sentinel that answers. Jobs that must not load the primary (`backup
    /// --from-replica`) connect to one of them with an [`Endpoint::Direct`] spec. An empty list
    /// means the sentinels know no healthy replica; an error means no sentinel answered.
    pub async fn healthy_replicas(spec: &ConnectionSpec) -> Result<Vec<HostPort>> {
        let Endpoint::Sentinel { sentinels, master } = &spec.endpoint else {
            return Err(Error::InvalidArgument {
                field: "url",
                reason: format!(
                    "{} is not a Sentinel URL, so there are no replicas to discover (use redis+sentinel://)",
                    spec.redacted_url
                ),
            });
        };
        // A link-less Connection, only to reuse the TLS and credential handling of `open_link`.
        let asker = Self {
            spec: Arc::new(spec.clone()),
            tls: tls_certificates(spec)?,
            current: Arc::new(Mutex::new(Current {
                generation: 0,
                server: None,
                preferred_sentinel: 0,
            })),
            router: None,
        };
        let mut last_error = None;
        for sentinel in sentinels {
            let reply: std::result::Result<Value, RedisError> = async {
                let mut conn = asker
                    .open_link(sentinel, &spec.sentinel_credentials, 0)
                    .await?;
                redis::cmd("SENTINEL")
                    .arg("REPLICAS")
                    .arg(master)
                    .query_async(&mut conn)
                    .await
            }
            .await;
            match reply {
                Ok(reply) => return Ok(healthy_from_sentinel_reply(&reply)),
                Err(source) => {
                    last_error = Some(Error::Redis {
                        server: sentinel.to_string(),
                        context: "SENTINEL REPLICAS",
                        source,
                    })
                }
            }
        }
        Err(last_error.unwrap_or_else(|| Error::InvalidArgument {
            field: "url",
            reason: format!("{} names no sentinel", spec.redacted_url),
        }))
    }

    /// Asks each sentinel (starting with the one that answered last) for the primary, and checks
    /// with `ROLE` that the node really is a primary: a sentinel can lag behind a failover.
    async fn resolve_primary(
        &self,
        sentinels: &[HostPort],
        master: &str,
        preferred: usize,
    ) -> Result<(HostPort, MultiplexedConnection, usize)> {
        let started = Instant::now();
        let mut errors = Vec::new();
        for offset in 0..sentinels.len() {
            let index = (preferred + offset) % sentinels.len();
            let Some(sentinel) = sentinels.get(index) else {
                continue;
            };
            match self.ask_sentinel(sentinel, master).await {
                Ok(Some(primary)) => {
                    match self
                        .open_link(&primary, &self.spec.credentials, self.spec.db)
                        .await
                    {
                        Ok(mut conn) => match role_of(&mut conn).await {
                            Ok(role) if role == "master" => return Ok((primary, conn, index)),
                            Ok(role) => errors.push(format!(
                                "sentinel {sentinel} named {primary}, which is a {role}"
                            )),
                            Err(e) => errors.push(format!("ROLE on {primary}: {e}")),
                        },
                        Err(e) => {
                            errors.push(format!("primary {primary} from sentinel {sentinel}: {e}"))
                        }
                    }
                }
                Ok(None) => errors.push(format!(
                    "sentinel {sentinel} does not know master {master:?}"
                )),
                Err(e) => errors.push(format!("sentinel {sentinel}: {e}")),
            }
        }
        Err(Error::NoPrimary {
            master: master.to_owned(),
            sentinels: sentinels
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
            waited_ms: started.elapsed().as_millis(),
            last_error: errors.join("; "),
        })
    }

    async fn ask_sentinel(
        &self,
        sentinel: &HostPort,
        master: &str,
    ) -> std::result::Result<Option<HostPort>, RedisError> {
        let mut conn = self
            .open_link(sentinel, &self.spec.sentinel_credentials, 0)
            .await?;
        let addr: Option<(String, u16)> = redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(master)
            .query_async(&mut conn)
            .await?;
        Ok(addr.map(|(host, port)| HostPort { host, port }))
    }

    async fn open_link(
        &self,
        hp: &HostPort,
        credentials: &Credentials,
        db: i64,
    ) -> std::result::Result<MultiplexedConnection, RedisError> {
        let Some(secret) = &credentials.password else {
            return self.open_link_with(hp, credentials, None, db).await;
        };
        let password = secret.current();
        match self
            .open_link_with(hp, credentials, Some(&password), db)
            .await
        {
            Ok(conn) => {
                secret.accepted(&password);
                Ok(conn)
            }
            Err(e) if e.kind() == redis::ErrorKind::AuthenticationFailed => {
                let Some(fallback) = secret.fallback(&password) else {
                    return Err(e);
                };
                tracing::debug!(server = %hp, "password refused; trying the one accepted before (a rotation in progress)");
                let conn = self
                    .open_link_with(hp, credentials, Some(&fallback), db)
                    .await?;
                Ok(conn)
            }
            Err(e) => Err(e),
        }
    }

    async fn open_link_with(
        &self,
        hp: &HostPort,
        credentials: &Credentials,
        password: Option<&str>,
        db: i64,
    ) -> std::result::Result<MultiplexedConnection, RedisError> {
        let addr = if self.spec.tls {
            ConnectionAddr::TcpTls {
                host: hp.host.clone(),
                port: hp.port,
                insecure: false,
                tls_params: None,
            }
        } else {
            ConnectionAddr::Tcp(hp.host.clone(), hp.port)
        };
        let mut settings = RedisConnectionInfo::default().set_db(db);
        if let Some(user) = &credentials.username {
            settings = settings.set_username(user);
        }
        if let Some(password) = password {
            settings = settings.set_password(password);
        }
        let info: ConnectionInfo = addr.into_connection_info()?.set_redis_settings(settings);
        let client = match &self.tls {
            Some(certs) => Client::build_with_tls(info, certs.clone())?,
            None => Client::open(info)?,
        };
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.spec.connect_timeout))
            .set_response_timeout(Some(self.spec.response_timeout));
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        if self.spec.replica_reads {
            let () = redis::cmd("READONLY").query_async(&mut conn).await?;
        }
        Ok(conn)
    }
}

/// The private CA to trust, when the spec is TLS and names one.
fn tls_certificates(spec: &ConnectionSpec) -> Result<Option<TlsCertificates>> {
    Ok(match (&spec.tls, &spec.ca_file) {
        (true, Some(path)) => Some(TlsCertificates {
            client_tls: None,
            root_cert: Some(std::fs::read(path).map_err(|source| Error::File {
                what: "ca_file",
                path: path.clone(),
                source,
            })?),
        }),
        _ => None,
    })
}

/// Picks the healthy replicas out of a `SENTINEL REPLICAS` reply (a list of flat field/value
/// arrays in RESP2, or maps in RESP3).
fn healthy_from_sentinel_reply(reply: &Value) -> Vec<HostPort> {
    let text = |v: &Value| match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    };
    let Value::Array(replicas) = reply else {
        return Vec::new();
    };
    replicas
        .iter()
        .filter_map(|replica| {
            let pairs: Vec<(String, String)> = match replica {
                Value::Array(flat) => flat
                    .chunks(2)
                    .filter_map(|kv| Some((text(kv.first()?)?, text(kv.get(1)?)?)))
                    .collect(),
                Value::Map(map) => map
                    .iter()
                    .filter_map(|(k, v)| Some((text(k)?, text(v)?)))
                    .collect(),
                _ => return None,
            };
            let field = |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.as_str())
            };
            let flags = field("flags").unwrap_or_default();
            let unhealthy = flags
                .split(',')
                .any(|f| matches!(f, "s_down" | "o_down" | "disconnected"));
            if unhealthy || field("master-link-status") != Some("ok") {
                return None;
            }
            Some(HostPort {
                host: field("ip")?.to_owned(),
                port: field("port")?.parse().ok()?,
            })
        })
        .collect()
}

/// Whether waiting may help: no primary yet, or a refused/broken connection; not bad credentials.
fn is_transient(e: &Error) -> bool {
    match e {
        Error::NoPrimary { .. } => true,
        Error::Redis { source, .. } => classify(source) != Failure::Fatal,
        _ => false,
    }
}

async fn role_of(conn: &mut MultiplexedConnection) -> std::result::Result<String, RedisError> {
    let reply: Value = redis::cmd("ROLE").query_async(conn).await?;
    let role = match reply {
        Value::Array(items) => items.into_iter().next(),
        _ => None,
    };
    match role {
        Some(Value::BulkString(b)) => Ok(String::from_utf8_lossy(&b).into_owned()),
        Some(Value::SimpleString(s)) => Ok(s),
        other => Err(RedisError::from((
            ErrorKind::UnexpectedReturnType,
            "unexpected ROLE reply",
            format!("{other:?}"),
        ))),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn hp(host: &str, port: u16) -> HostPort {
        HostPort {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn direct_url_with_user_password_and_db() {
        let spec = ConnectionSpec::parse("redis://app:s%40cret@10.0.0.1:6380/2").unwrap();
        assert_eq!(spec.endpoint, Endpoint::Direct(hp("10.0.0.1", 6380)));
        assert_eq!(spec.db, 2);
        assert!(!spec.tls);
        assert_eq!(spec.credentials.username.as_deref(), Some("app"));
        assert_eq!(
            spec.credentials.password.as_ref().map(Secret::expose),
            Some("s@cret")
        );
        assert_eq!(spec.redacted_url, "redis://app:***@10.0.0.1:6380/2");
    }

    #[test]
    fn sentinel_url_lists_every_sentinel_and_the_master() {
        let spec =
            ConnectionSpec::parse("redis+sentinel://app:pw@s1:26379,s2,[::1]:26380/mymaster/1")
                .unwrap();
        assert_eq!(
            spec.endpoint,
            Endpoint::Sentinel {
                sentinels: vec![hp("s1", 26379), hp("s2", 26379), hp("::1", 26380)],
                master: "mymaster".into()
            }
        );
        assert_eq!(spec.db, 1);
        assert_eq!(spec.credentials.username.as_deref(), Some("app"));
    }

    #[test]
    fn cluster_urls_list_seed_nodes_and_allow_no_database() {
        let spec = ConnectionSpec::parse("redis+cluster://app:pw@n1:7000,n2,[::1]:7002/").unwrap();
        assert_eq!(
            spec.endpoint,
            Endpoint::Cluster {
                nodes: vec![hp("n1", 7000), hp("n2", 6379), hp("::1", 7002)]
            }
        );
        assert!(!spec.tls);
        let tls = ConnectionSpec::parse("rediss+cluster://n1:7000?ca_file=/etc/ca.crt").unwrap();
        assert!(tls.tls);
        for (url, needle) in [
            ("redis+cluster://n1:7000/2", "only database 0"),
            (
                "redis+cluster://n1:7000?sentinel_username=app",
                "redis+sentinel://",
            ),
        ] {
            let msg = ConnectionSpec::parse(url).unwrap_err().to_string();
            assert!(msg.contains(needle), "{url}: {msg}");
        }
    }

    #[test]
    fn tls_sentinel_url_with_ca_and_sentinel_credentials() {
        let spec = ConnectionSpec::parse(
            "rediss+sentinel://h:1/m?ca_file=/etc/ca.crt&sentinel_username=sentinel&failover_timeout_ms=5000",
        )
        .unwrap();
        assert!(spec.tls);
        assert_eq!(spec.ca_file, Some(PathBuf::from("/etc/ca.crt")));
        assert_eq!(
            spec.sentinel_credentials.username.as_deref(),
            Some("sentinel")
        );
        assert_eq!(spec.failover_timeout, Duration::from_secs(5));
    }

    #[test]
    fn a_sentinel_username_alone_authenticates_with_the_data_password() {
        // ABStore's credentials Secrets name the same user for both; a second password
        // parameter pointing at the same file would only be something to get wrong.
        let spec =
            ConnectionSpec::parse("redis+sentinel://app:pw-for-both@h:1/m?sentinel_username=app")
                .unwrap();
        assert_eq!(spec.sentinel_credentials.username.as_deref(), Some("app"));
        assert_eq!(
            spec.sentinel_credentials
                .password
                .as_ref()
                .map(Secret::expose),
            Some("pw-for-both")
        );
        let own = ConnectionSpec::parse(
            "redis+sentinel://app:pw@h:1/m?sentinel_username=s&sentinel_password_env=ABSTORE_TEST_SENTINEL_PW_UNSET",
        );
        assert!(
            own.is_err(),
            "its own password parameter is used, not the data one"
        );
        let without = ConnectionSpec::parse("redis+sentinel://app:pw@h:1/m").unwrap();
        assert_eq!(without.sentinel_credentials, Credentials::default());
    }

    #[test]
    fn password_comes_from_a_file_without_trailing_newline() {
        let dir = std::env::temp_dir().join(format!("abstore-pw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("password");
        std::fs::write(&file, "from-file\n").unwrap();
        let spec =
            ConnectionSpec::parse(&format!("redis://app@h:1?password_file={}", file.display()))
                .unwrap();
        assert_eq!(
            spec.credentials.password.as_ref().map(Secret::expose),
            Some("from-file")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_password_file_names_the_file() {
        let err = ConnectionSpec::parse("redis://h:1?password_file=/nonexistent/pw").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("password_file") && msg.contains("/nonexistent/pw"),
            "{msg}"
        );
    }

    #[test]
    fn bad_urls_are_refused_with_the_reason_and_no_password() {
        for (url, needle) in [
            ("http://h:1", "unknown scheme"),
            ("h:6379", "missing scheme"),
            ("redis://u:topsecret@h:99999", "invalid port"),
            ("redis://u:topsecret@a:1,b:2", "several hosts"),
            ("redis+sentinel://u:topsecret@a:1,b:2", "missing master"),
            ("redis://u:topsecret@h:1/x", "database"),
            (
                "redis://u:topsecret@h:1?colour=red",
                "unknown parameter \"colour\"",
            ),
            ("redis://u:topsecret@h:1?ca_file=/x", "not TLS"),
            (
                "redis://u:topsecret@h:1?response_timeout_ms=0",
                "response_timeout_ms",
            ),
            ("redis://u:topsecret@/0", "no host"),
        ] {
            let msg = ConnectionSpec::parse(url).unwrap_err().to_string();
            assert!(msg.contains(needle), "{url}: {msg}");
            assert!(
                !msg.contains("topsecret"),
                "{url} leaked the password: {msg}"
            );
        }
    }

    #[test]
    fn secrets_do_not_appear_in_debug_output() {
        let spec = ConnectionSpec::parse("redis://u:topsecret@h:1").unwrap();
        assert!(!format!("{spec:?}").contains("topsecret"));
    }

    #[test]
    fn redaction_masks_query_passwords_too() {
        assert_eq!(
            redact_url("redis://h:1?password=abc&password_file=/x"),
            "redis://h:1?password=***&password_file=/x"
        );
    }
}

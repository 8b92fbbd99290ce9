//! A store rendered the way the operator renders it: the model validated from a spec, generated
//! passwords, and every file the pods mount (redis.conf, sentinel.conf, ACL files, credentials,
//! scripts) written into a temporary directory laid out like the pod's mounts. Tests start real
//! redis-server / redis-sentinel processes from these files.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use abstore_operator::config::{self, ConfigFiles, ConfigPaths, REDIS_CONF, START_SENTINEL};
use abstore_operator::crd::ABStore;
use abstore_operator::credentials::{Credentials, Role, generate_password};
use abstore_operator::model::Model;
use abstore_operator::validate::validate_on;
use tempfile::TempDir;

use crate::{LOOPBACK, SentinelServer, free_port};

/// One rendered store: its model, passwords, and every file the pods would mount, written into
/// a temporary directory laid out like the pod's mounts.
#[allow(missing_debug_implementations)] // holds passwords
pub struct Rendered {
    _dir: TempDir,
    pub paths: ConfigPaths,
    pub model: Model,
    pub credentials: Credentials,
    pub files: ConfigFiles,
}

impl Rendered {
    pub fn new(spec: &str) -> Rendered {
        Rendered::on(spec, &abstore_operator::model::Platform::default())
    }

    /// As `local up` renders it (cluster mode, `file://` backups: what only runs locally).
    pub fn local(spec: &str) -> Rendered {
        Rendered::on(spec, &abstore_operator::model::Platform::local())
    }

    fn on(spec: &str, platform: &abstore_operator::model::Platform) -> Rendered {
        let indented: String = spec.lines().map(|l| format!("  {l}\n")).collect();
        let yaml = format!(
            "apiVersion: abstore.dev/v1alpha1\nkind: ABStore\nmetadata:\n  name: shop\n  namespace: ab\nspec:\n{indented}"
        );
        let store: ABStore = serde_yaml::from_str(&yaml).unwrap();
        let model = validate_on(&store, platform).unwrap();
        let credentials = Credentials::resolve(&model, &BTreeMap::new(), &mut generate_password);
        let dir = tempfile::tempdir().unwrap();
        let sub = |name: &str| {
            let path = dir.path().join(name);
            std::fs::create_dir_all(&path).unwrap();
            path.display().to_string()
        };
        let paths = ConfigPaths {
            data_dir: sub("data"),
            acl_file: format!("{}/users.acl", sub("acl")),
            tls_dir: sub("tls"),
            credentials_dir: sub("credentials"),
            config_dir: sub("config"),
        };
        std::fs::write(&paths.acl_file, config::acl_file(&model, &credentials)).unwrap();
        std::fs::write(
            paths.sentinel_acl_file(),
            config::sentinel_acl_file(&model, &credentials),
        )
        .unwrap();
        for (user, password) in credentials.users() {
            // Mounted Secrets end files without a newline, but people's own files often have one.
            std::fs::write(paths.credential_file(user), format!("{password}\n")).unwrap();
        }
        let files = config::config_files(&model, &paths);
        for (name, content) in &files.files {
            std::fs::write(Path::new(&paths.config_dir).join(name), content).unwrap();
        }
        Rendered {
            _dir: dir,
            paths,
            model,
            credentials,
            files,
        }
    }

    pub fn password(&self, user: &str) -> &str {
        self.credentials.password(user).unwrap()
    }

    /// redis.conf plus the masterauth line start-redis.sh appends (checked separately below).
    pub fn redis_conf(&self) -> String {
        format!(
            "{}\nmasterauth \"{}\"\n",
            self.files.get(REDIS_CONF).unwrap(),
            self.password(Role::Replication.username())
        )
    }

    /// `redis://user:password@127.0.0.1:port`
    pub fn url(&self, user: &str, port: u16) -> String {
        format!("redis://{user}:{}@{LOOPBACK}:{port}", self.password(user))
    }

    /// The abstore library's URL form: user in the URL, password from the mounted file (and the
    /// same user on the sentinels for a Sentinel URL, as the credentials Secrets have it).
    pub fn library_url(&self, user: &str, hosts: &str) -> String {
        let sentinel = if hosts.contains("+sentinel://") {
            format!("sentinel_username={user}&")
        } else {
            String::new()
        };
        format!(
            "{hosts}?{sentinel}password_file={}",
            self.paths.credential_file(user)
        )
        .replacen("://", &format!("://{user}@"), 1)
    }

    /// Runs one of the rendered scripts with `sh`, pod settings replaced by `env`.
    pub fn run_script(&self, name: &str, env: &[(&str, String)]) -> Output {
        let script = Path::new(&self.paths.config_dir).join(name);
        Command::new("sh")
            .arg(&script)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .unwrap()
    }

    /// A sentinel started the way a sentinel pod starts: start-sentinel.sh writes its config
    /// (finding the primary through the other sentinels or the data nodes), then redis-sentinel.
    /// `others`: the port of a running sentinel to ask first (asserted to have answered);
    /// `harness_user`: who the harness's own queries to it log in as.
    pub fn start_sentinel(
        &self,
        index: usize,
        peers: &[String],
        others: Option<u16>,
        harness_user: &str,
    ) -> SentinelServer {
        let runtime = Path::new(&self.paths.data_dir).join(format!("sentinel-{index}.conf"));
        let asked = others.unwrap_or_else(|| free_port().unwrap());
        let output = Command::new("sh")
            .arg(Path::new(&self.paths.config_dir).join(START_SENTINEL))
            .envs([
                ("POD_NAME", format!("shop-sentinel-{index}")),
                ("ABSTORE_ANNOUNCE_HOST", LOOPBACK.to_owned()),
                ("ABSTORE_SENTINEL_HOST", LOOPBACK.to_owned()),
                ("ABSTORE_SENTINEL_PORT", asked.to_string()),
                ("ABSTORE_SENTINEL_ATTEMPTS", "1".to_owned()),
                ("ABSTORE_PEERS", peers.join(" ")),
                ("ABSTORE_RUNTIME_CONFIG", runtime.display().to_string()),
                ("ABSTORE_DRY_RUN", "yes".to_owned()),
            ])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        if others.is_some() {
            // Asked as the sentinel role, the other sentinel answered (no fallback to the pods).
            let log = String::from_utf8_lossy(&output.stderr);
            assert!(log.contains("other sentinels report primary"), "{log}");
        }
        let conf = std::fs::read_to_string(&runtime).unwrap();
        let mut sentinel = SentinelServer::start(&conf).unwrap();
        sentinel.authenticate_as(harness_user, self.password(harness_user));
        sentinel
    }
}

//! The processes of a local store: starting them from the rendered configs, restarting the ones
//! that die (as replicas of the current primary), healing on a timer, following edits of the
//! ABStore file (rolling restarts and scaling through [`rollout`](crate::rollout)), stopping them.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio::time::Instant;

use super::state::{LocalState, ProcessState};
use super::{
    BOOTSTRAP_TIMEOUT, HEAL_INTERVAL, LOOPBACK, Layout, LocalError, Result, credentials,
    heal_target, io_error, load_model, node_config, sentinel_config, tls, write_acl_files,
    write_private,
};
use crate::config;
use crate::credentials::Credentials;
use crate::heal::{self, Decision, Endpoint, HealTarget, Observation, Report};
use crate::model::Model;
use crate::rollout::{self, Member, RolloutInput, Step};

/// How long a started process gets to listen on its port.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How many ports a new process tries when others keep taking the one it was given.
pub(super) const START_ATTEMPTS: u32 = 5;
/// What Redis logs (then exits 1) when its port is taken.
const ADDR_IN_USE: &str = "Address already in use";
/// Log lines quoted when a process exits or does not start.
const LOG_LINES: usize = 5;
const POLL: Duration = Duration::from_millis(50);
/// The redis.conf directive heal keeps right live, left out of the rollout fingerprint.
const LIVE_DIRECTIVE: &str = "min-replicas-to-write ";
/// How long a stopped process gets to flush its AOF and exit before SIGKILL.
pub(super) const STOP_GRACE: Duration = Duration::from_secs(10);
/// Where a data node and a sentinel log, in their directories.
pub(super) const NODE_LOG: &str = "redis.log";
const SENTINEL_LOG: &str = "sentinel.log";

/// A running local store: its children and the state file.
#[derive(Debug)]
pub struct Supervisor {
    layout: Layout,
    model: Model,
    credentials: Credentials,
    state: LocalState,
    target: HealTarget,
    nodes: Vec<Option<Child>>,
    sentinels: Vec<Option<Child>>,
    /// When each node was found dead (until it is started again).
    down_since: Vec<Option<Instant>>,
    /// The backup and prune jobs on their cron schedules.
    jobs: Vec<ScheduledJob>,
    last_decision: Option<String>,
    /// The ABStore file (absolute) and its content when last read.
    spec: PathBuf,
    spec_text: String,
    /// The configuration each node and sentinel was started with (see `node_fingerprint`):
    /// one that differs from what the model renders now is rolled.
    node_applied: Vec<String>,
    sentinel_applied: Vec<String>,
    /// Per node and sentinel: its port was picked by this supervisor and no process has
    /// listened on it yet, so nothing (a sentinel, a replica, a printed URL) knows it. Another
    /// program can take a free port between the pick and the bind; such a member moves to
    /// another port, the others keep theirs (they are the member's address).
    node_port_new: Vec<bool>,
    sentinel_port_new: Vec<bool>,
    last_step: Option<Step>,
    switchovers: Vec<SwitchoverRecord>,
    /// The tracking API, when the spec enables it.
    api: super::api::LocalApi,
}

/// One switchover a rollout or scale-down made, for logs and the tests' figures.
#[derive(Clone, Debug)]
pub struct SwitchoverRecord {
    pub from: Endpoint,
    /// The new primary, or why it failed.
    pub to: std::result::Result<Endpoint, String>,
    pub started: std::time::Instant,
    pub finished: std::time::Instant,
}

impl Supervisor {
    /// Starts (or restarts, on an existing directory) every process of the store in `spec`, and
    /// heals until the sentinels have elected a primary.
    pub async fn up(spec: &Path, dir: &Path) -> Result<Supervisor> {
        let Prepared {
            spec,
            spec_text,
            model,
            layout,
            credentials,
            mut state,
        } = prepare(spec, dir)?;
        let state_file = layout.state_file();
        state.name = model.name.clone();
        state.master_name = model.master_name().to_owned();
        state.spec_file = spec.display().to_string();
        state.supervisor_pid = Some(std::process::id());
        state.tls = model.spec.tls.enabled;
        // Never fewer than the last run had: a store shrunk in the file while `up` was not
        // running is scaled down by the rollout (primary switched away first), not truncated.
        let nodes = count(model.spec.redis.replicas).max(state.nodes.len());
        let sentinels = count(model.spec.sentinel.replicas).max(state.sentinels.len());
        let (known_nodes, known_sentinels) = (state.nodes.len(), state.sentinels.len());
        resize(&mut state.nodes, nodes, &state.sentinels)?;
        resize(&mut state.sentinels, sentinels, &state.nodes)?;
        state.write(&state_file)?;

        let target = heal_target(&model, &layout, &credentials, &state)?;
        let mut supervisor = Supervisor {
            layout,
            model,
            credentials,
            target,
            nodes: Vec::new(),
            sentinels: Vec::new(),
            down_since: Vec::new(),
            jobs: Vec::new(),
            last_decision: None,
            spec,
            spec_text,
            node_applied: Vec::new(),
            sentinel_applied: Vec::new(),
            node_port_new: (0..nodes).map(|i| i >= known_nodes).collect(),
            sentinel_port_new: (0..sentinels).map(|i| i >= known_sentinels).collect(),
            last_step: None,
            switchovers: Vec::new(),
            api: super::api::LocalApi::default(),
            state,
        };
        supervisor.node_applied = vec![String::new(); supervisor.state.nodes.len()];
        supervisor.sentinel_applied = vec![String::new(); supervisor.state.sentinels.len()];
        supervisor.nodes = (0..supervisor.state.nodes.len()).map(|_| None).collect();
        supervisor.down_since = vec![None; supervisor.state.nodes.len()];
        supervisor.sentinels = (0..supervisor.state.sentinels.len())
            .map(|_| None)
            .collect();
        stop_leftovers(
            supervisor
                .state
                .nodes
                .iter_mut()
                .chain(supervisor.state.sentinels.iter_mut()),
        )
        .await;
        if let Err(error) = supervisor.start_all().await {
            // Nothing is left running by an `up` that failed.
            tracing::warn!(%error, "local up failed; stopping the processes it started");
            supervisor.stop().await?;
            return Err(error);
        }
        supervisor.save()?;
        supervisor.bootstrap().await?;
        supervisor.jobs = scheduled_jobs(&supervisor.model, &supervisor.layout, &supervisor.state);
        // The API after the primary is elected: its readiness is Redis answering.
        supervisor.api.arm();
        if let Err(error) = supervisor
            .api
            .ensure(&supervisor.model, &supervisor.layout, &mut supervisor.state)
            .await
        {
            supervisor.stop().await?;
            return Err(error);
        }
        supervisor.save()?;
        Ok(supervisor)
    }

    /// Starts every data node (as a replica of the primary the state remembers, if any; never a
    /// primary the sentinels remember whose data is gone) and every sentinel.
    async fn start_all(&mut self) -> Result<()> {
        let primary = self.known_primary();
        let has_data: Vec<bool> = (0..self.nodes.len())
            .map(|i| has_local_data(&self.layout.node_dir(i)))
            .collect();
        for index in 0..self.nodes.len() {
            let own = Endpoint::new(LOOPBACK, self.state.nodes[index].port);
            if primary.as_ref() == Some(&own)
                && !has_data[index]
                && (0..has_data.len()).any(|i| i != index && has_data[i])
            {
                // The sentinels remember it as the primary, but its data is gone: started, it
                // would wipe its replicas. Left down, it is a dead primary to `heal_pass`.
                tracing::warn!(
                    node = index,
                    "not starting an empty primary; replicas hold data"
                );
                self.down_since[index] = Some(Instant::now());
                continue;
            }
            self.start_node(index, primary.as_ref()).await?;
        }
        for index in 0..self.sentinels.len() {
            self.start_sentinel(index).await?;
        }
        Ok(())
    }

    pub fn state(&self) -> &LocalState {
        &self.state
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Heals until the sentinels agree on a primary.
    async fn bootstrap(&mut self) -> Result<()> {
        let deadline = Instant::now() + BOOTSTRAP_TIMEOUT;
        loop {
            let report = self.heal_pass().await?;
            if matches!(report.decision, Decision::Elected { .. }) && report.primary.is_some() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(LocalError::NoPrimary {
                    seconds: BOOTSTRAP_TIMEOUT.as_secs(),
                    reason: format!("{:?}", report.decision),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// One pass: follow an edited ABStore file, restart processes that exited, start the ones a
    /// scale-up added, heal, take the next rollout step, save the state.
    pub async fn heal_pass(&mut self) -> Result<Report> {
        self.reload_spec()?;
        self.take_restart_request();
        self.grow().await?;
        let now = Instant::now();
        for index in 0..self.nodes.len() {
            if let Some(status) = exited(&mut self.nodes[index]) {
                let log = self.layout.node_dir(index).join(NODE_LOG);
                tracing::warn!(node = index, port = self.state.nodes[index].port, %status, last_log_lines = %last_lines(&log), "redis-server exited");
                self.state.nodes[index].pid = None;
                self.down_since[index] = Some(now);
            }
        }
        let primary = self.known_primary();
        for index in 0..self.nodes.len() {
            if self.nodes[index].is_some() {
                continue;
            }
            let own = Endpoint::new(LOOPBACK, self.state.nodes[index].port);
            if primary.as_ref() == Some(&own) {
                // The primary died. Restarting it at once as the primary would serve what its
                // AOF kept, which can be less than its replicas had: let Sentinel promote a
                // replica first, then it rejoins as that replica's replica. Only if no
                // failover comes (a single node) does it restart as the primary, and never
                // empty.
                let waited = now.duration_since(self.down_since[index].unwrap_or(now));
                if waited < self.failover_grace() {
                    continue;
                }
                if !has_local_data(&self.layout.node_dir(index)) {
                    tracing::warn!(node = index, "not restarting an empty primary");
                    continue;
                }
            }
            tracing::info!(node = index, primary = ?primary.as_ref().map(Endpoint::to_string), reason = "it is not running", "starting redis-server");
            // One process that cannot start must not stop the healing of the others.
            if let Err(error) = self.start_node(index, primary.as_ref()).await {
                tracing::warn!(node = index, %error, "redis-server not started; trying again at the next pass");
                continue;
            }
            self.down_since[index] = None;
        }
        for index in 0..self.sentinels.len() {
            if let Some(status) = exited(&mut self.sentinels[index]) {
                let log = self.layout.sentinel_dir(index).join(SENTINEL_LOG);
                tracing::warn!(sentinel = index, port = self.state.sentinels[index].port, %status, last_log_lines = %last_lines(&log), "redis-sentinel exited");
                self.state.sentinels[index].pid = None;
            }
            if self.sentinels[index].is_none() {
                tracing::info!(
                    sentinel = index,
                    reason = "it is not running",
                    "starting redis-sentinel"
                );
                if let Err(error) = self.start_sentinel(index).await {
                    tracing::warn!(sentinel = index, %error, "redis-sentinel not started; trying again at the next pass");
                }
            }
        }
        for job in &mut self.jobs {
            job.tick(&mut self.state);
        }
        if let Err(error) = self
            .api
            .ensure(&self.model, &self.layout, &mut self.state)
            .await
        {
            tracing::warn!(%error, "abstore-api not started; trying again at the next pass");
        }
        self.refresh_credentials().await?;
        let report = heal::heal_once(&self.target).await?;
        let decision = format!("{:?}", report.decision);
        if self.last_decision.as_ref() != Some(&decision) {
            tracing::info!(primary = ?report.primary.as_ref().map(Endpoint::to_string), decision = %decision, "heal");
            self.last_decision = Some(decision);
        }
        if let Some(primary) = &report.primary {
            self.state.primary = Some(primary.to_string());
        }
        self.roll(&report.observation).await?;
        self.save()?;
        Ok(report)
    }

    /// Re-reads the password files (a rotation starts when one was edited, and ends after the
    /// grace period), rewrites the ACL file when anything changed, and heals every node's ACL
    /// live, as the controller does.
    async fn refresh_credentials(&mut self) -> Result<()> {
        let credentials = credentials(&self.model, &self.layout)?;
        if credentials != self.credentials {
            write_acl_files(&self.model, &self.layout, &credentials)?;
            self.credentials = credentials;
            self.target = heal_target(&self.model, &self.layout, &self.credentials, &self.state)?;
        }
        let report = heal::acl::heal_acls(
            &self.target,
            &crate::topology::acl_desired(&self.model, &self.credentials),
        )
        .await;
        if let Some(note) = report.change_note() {
            tracing::info!("{note}");
        }
        for failure in report.failures() {
            tracing::debug!(server = ?failure.endpoint.as_ref().map(Endpoint::to_string), error = ?failure.error, "ACL heal skipped a server");
        }
        Ok(())
    }

    /// The last rollout step taken or waited on.
    pub fn last_step(&self) -> Option<&Step> {
        self.last_step.as_ref()
    }

    /// Every switchover this supervisor made, oldest first.
    pub fn switchovers(&self) -> &[SwitchoverRecord] {
        &self.switchovers
    }

    /// Rolls every process (replicas, then the primary by switchover, then the sentinels) as if
    /// the configuration had changed. `local restart --dir` asks a running `up` for this.
    pub fn request_restart(&mut self) {
        tracing::info!("rolling restart of every process requested");
        self.node_applied.iter_mut().for_each(String::clear);
        self.sentinel_applied.iter_mut().for_each(String::clear);
    }

    /// Picks up a restart request file written by `local restart`.
    fn take_restart_request(&mut self) {
        let request = self.layout.restart_request_file();
        if std::fs::remove_file(&request).is_ok() {
            self.request_restart();
        }
    }

    /// Re-reads the ABStore file; a changed, valid one becomes the model (processes whose
    /// rendered configuration changed are then rolled, counts are scaled). An invalid edit is
    /// logged, naming the field, and ignored: the running store keeps going.
    fn reload_spec(&mut self) -> Result<()> {
        let text = match std::fs::read_to_string(&self.spec) {
            Ok(text) => text,
            Err(e) => {
                if !self.spec_text.is_empty() {
                    tracing::warn!(file = %self.spec.display(), error = %e, "cannot read the ABStore file; keeping the running store as it is");
                    self.spec_text.clear();
                }
                return Ok(());
            }
        };
        if text == self.spec_text {
            return Ok(());
        }
        self.spec_text = text;
        let model = match load_model(&self.spec) {
            Ok(model) => model,
            Err(e) => {
                tracing::warn!(error = %e, "the ABStore file changed but is invalid; ignored, the running store keeps its configuration");
                return Ok(());
            }
        };
        if model.name != self.model.name {
            tracing::warn!(from = %self.model.name, to = %model.name, "the ABStore file renames the store; a local store cannot be renamed, ignored");
            return Ok(());
        }
        if model.spec.tls.enabled != self.model.spec.tls.enabled {
            // Mid-rollout some processes would speak TLS and the others not: replication and
            // Sentinel break. A restart switches every process at once.
            tracing::warn!(file = %self.spec.display(), "the ABStore file switches TLS on or off; a running local store cannot switch, ignored (`local down`, then `local up` again)");
            return Ok(());
        }
        if model == self.model {
            return Ok(());
        }
        tracing::info!(file = %self.spec.display(), "the ABStore file changed; rolling processes whose configuration changed");
        self.credentials = credentials(&model, &self.layout)?;
        write_acl_files(&model, &self.layout, &self.credentials)?;
        self.model = model;
        self.target = heal_target(&self.model, &self.layout, &self.credentials, &self.state)?;
        self.rebuild_jobs();
        Ok(())
    }

    /// Starts the data nodes and sentinels a scale-up asks for: nodes as replicas of the current
    /// primary (heal and the sentinels take them in), sentinels unmonitoring (heal makes them
    /// monitor).
    async fn grow(&mut self) -> Result<()> {
        let nodes = count(self.model.spec.redis.replicas).max(self.state.nodes.len());
        let sentinels = count(self.model.spec.sentinel.replicas).max(self.state.sentinels.len());
        if nodes == self.state.nodes.len() && sentinels == self.state.sentinels.len() {
            return Ok(());
        }
        let primary = self.known_primary();
        let first_node = self.state.nodes.len();
        resize(&mut self.state.nodes, nodes, &self.state.sentinels)?;
        self.nodes.resize_with(nodes, || None);
        self.down_since.resize(nodes, None);
        self.node_applied.resize(nodes, String::new());
        self.node_port_new.resize(nodes, true);
        for index in first_node..nodes {
            tracing::info!(node = index, "scale-up: starting a data node");
            remove_dir(&self.layout.node_dir(index));
            // Not started now, it is started by the next heal passes (which go on).
            if let Err(error) = self.start_node(index, primary.as_ref()).await {
                tracing::warn!(node = index, %error, "scale-up: data node not started; trying again at the next pass");
            }
        }
        let first_sentinel = self.state.sentinels.len();
        resize(&mut self.state.sentinels, sentinels, &self.state.nodes)?;
        self.sentinels.resize_with(sentinels, || None);
        self.sentinel_applied.resize(sentinels, String::new());
        self.sentinel_port_new.resize(sentinels, true);
        for index in first_sentinel..sentinels {
            tracing::info!(sentinel = index, "scale-up: starting a sentinel");
            remove_dir(&self.layout.sentinel_dir(index));
            if let Err(error) = self.start_sentinel(index).await {
                tracing::warn!(sentinel = index, %error, "scale-up: sentinel not started; trying again at the next pass");
            }
        }
        self.target = heal_target(&self.model, &self.layout, &self.credentials, &self.state)?;
        self.rebuild_jobs();
        self.save()
    }

    /// The next rollout step for this observation, taken. No process is ever `stuck` or aged
    /// for [`rollout::next_step`]'s replacement rule: a process that exited is restarted by
    /// `heal_pass` from the current configuration (never left running an outdated one), so the
    /// deadlock that rule ends cannot arise here.
    async fn roll(&mut self, observation: &Observation) -> Result<()> {
        let running = |child: &Option<Child>| child.is_some();
        let redis: Vec<Member> = (0..self.nodes.len())
            .map(|i| Member {
                up_to_date: self.node_applied[i] == self.node_fingerprint(i),
                ready: running(&self.nodes[i])
                    && observation.nodes.get(i).is_some_and(|o| o.state.is_ok()),
                ..Member::default()
            })
            .collect();
        let sentinels: Vec<Member> = (0..self.sentinels.len())
            .map(|i| Member {
                up_to_date: self.sentinel_applied[i] == self.sentinel_fingerprint(i),
                ready: running(&self.sentinels[i])
                    && observation
                        .sentinels
                        .get(i)
                        .is_some_and(|o| o.state.is_ok()),
                ..Member::default()
            })
            .collect();
        let step = rollout::next_step(&RolloutInput {
            redis: &redis,
            sentinels: &sentinels,
            desired_redis: count(self.model.spec.redis.replicas),
            desired_sentinels: count(self.model.spec.sentinel.replicas),
            target: &self.target,
            observation,
        });
        if self.last_step.as_ref() != Some(&step) {
            match &step {
                Step::Wait { .. } => tracing::debug!(step = %step, "rollout"),
                _ => tracing::info!(step = %step, "rollout"),
            }
        }
        self.state.rollout = Some(step.to_string());
        self.last_step = Some(step.clone());
        match step {
            Step::Done | Step::Wait { .. } => {}
            Step::RestartRedis { index } | Step::ReplaceRedis { index, .. } => {
                let reason = outdated(&self.node_applied[index], &self.node_fingerprint(index));
                tracing::info!(node = index, %reason, "restarting redis-server (rollout)");
                self.stop_node(index).await;
                let primary = self.known_primary();
                self.start_node(index, primary.as_ref()).await?;
            }
            Step::Switchover { from, avoid } => {
                let started = std::time::Instant::now();
                let result =
                    rollout::switchover(&self.target, &avoid, self.switchover_timeout()).await;
                if let Ok(new) = &result {
                    self.state.primary = Some(new.to_string());
                }
                self.switchovers.push(SwitchoverRecord {
                    from: self.target.nodes[from].clone(),
                    to: result.map_err(|e| e.to_string()),
                    started,
                    finished: std::time::Instant::now(),
                });
            }
            Step::RemoveRedis { from } => self.remove_nodes(from).await?,
            Step::RestartSentinel { index } | Step::ReplaceSentinel { index, .. } => {
                let reason = outdated(
                    &self.sentinel_applied[index],
                    &self.sentinel_fingerprint(index),
                );
                tracing::info!(sentinel = index, %reason, "restarting redis-sentinel (rollout)");
                self.stop_sentinel(index).await;
                self.start_sentinel(index).await?;
            }
            Step::RemoveSentinels { from } => {
                for index in (from..self.sentinels.len()).rev() {
                    tracing::info!(sentinel = index, "scale-down: stopping a sentinel");
                    self.stop_sentinel(index).await;
                    remove_dir(&self.layout.sentinel_dir(index));
                }
                self.state.sentinels.truncate(from);
                self.sentinels.truncate(from);
                self.sentinel_applied.truncate(from);
                self.sentinel_port_new.truncate(from);
                self.target =
                    heal_target(&self.model, &self.layout, &self.credentials, &self.state)?;
                self.rebuild_jobs();
            }
        }
        Ok(())
    }

    /// Scale-down of data nodes `from` and above (none is the primary): `min-replicas-to-write`
    /// is lowered on the nodes that stay first, so the primary never refuses writes for
    /// replicas that are about to go; then the nodes stop and their data directories go (a
    /// later scale-up starts them empty, as replicas that sync).
    async fn remove_nodes(&mut self, from: usize) -> Result<()> {
        let mut remaining = self.state.clone();
        remaining.nodes.truncate(from);
        let target = heal_target(&self.model, &self.layout, &self.credentials, &remaining)?;
        let value = target.effective_min_replicas_to_write();
        for node in &target.nodes {
            let lowered = async {
                let mut conn = heal::connect(&target, node, target.operator_auth.as_ref()).await?;
                redis::cmd("CONFIG")
                    .arg("SET")
                    .arg("min-replicas-to-write")
                    .arg(value)
                    .query_async::<()>(&mut conn)
                    .await
                    .map_err(|e| e.to_string())
            };
            if let Err(e) = lowered.await {
                tracing::warn!(node = %node, error = %e, "scale-down: min-replicas-to-write not lowered");
            }
        }
        for index in (from..self.nodes.len()).rev() {
            tracing::info!(node = index, "scale-down: stopping a data node");
            self.stop_node(index).await;
            remove_dir(&self.layout.node_dir(index));
        }
        self.state.nodes.truncate(from);
        self.nodes.truncate(from);
        self.down_since.truncate(from);
        self.node_applied.truncate(from);
        self.node_port_new.truncate(from);
        self.target = target;
        self.save()
    }

    /// How long one switchover may take: Sentinel reading the replica priorities (its INFO
    /// period is 10 s), then the failover itself.
    fn switchover_timeout(&self) -> Duration {
        Duration::from_secs(15) + Duration::from_millis(self.target.sentinel.failover_timeout_ms)
    }

    /// What decides whether node `index` runs the current configuration: its rendered redis.conf
    /// without the `replicaof` line (which follows the primary, not the spec) and without
    /// `min-replicas-to-write` (it follows the number of replicas, and heal sets it live: a scale
    /// change must not restart every node, least of all a single primary in place), plus the
    /// ACL file.
    fn node_fingerprint(&self, index: usize) -> String {
        let conf = node_config(
            &self.model,
            &self.layout,
            &self.credentials,
            index,
            self.state.nodes[index].port,
            None,
        );
        // ACL users and masterauth are healed live (heal::acl), not by a restart.
        conf.lines()
            .filter(|line| !line.starts_with(LIVE_DIRECTIVE) && !line.starts_with("masterauth "))
            .flat_map(|line| [line, "\n"])
            .collect()
    }

    /// The rendered sentinel.conf plus the per-master settings heal applies when it makes a
    /// sentinel monitor (a changed down-after is applied by restarting the sentinel). Users and
    /// passwords (the ACL file, `sentinel-pass`) are healed live, not by a restart.
    fn sentinel_fingerprint(&self, index: usize) -> String {
        let conf = sentinel_config(
            &self.model,
            &self.layout,
            &self.credentials,
            index,
            self.state.sentinels[index].port,
        );
        let mut text: String = conf
            .lines()
            .filter(|line| !line.starts_with("sentinel sentinel-pass "))
            .flat_map(|line| [line, "\n"])
            .collect();
        text.push_str(&config::sentinel_monitor_conf(&self.model));
        text
    }

    async fn stop_node(&mut self, index: usize) {
        if let Some(mut child) = self.nodes[index].take() {
            if let Some(pid) = child.id() {
                stop(pid, "redis", STOP_GRACE).await;
            }
            let _ = child.wait().await;
        }
        self.state.nodes[index].pid = None;
    }

    async fn stop_sentinel(&mut self, index: usize) {
        if let Some(mut child) = self.sentinels[index].take() {
            if let Some(pid) = child.id() {
                stop(pid, "redis", STOP_GRACE).await;
            }
            let _ = child.wait().await;
        }
        self.state.sentinels[index].pid = None;
    }

    /// New job definitions (schedules, and URLs that name the sentinels), keeping a run in
    /// progress and a binary set with `set_jobs_binary`.
    fn rebuild_jobs(&mut self) {
        rebuild_jobs(&mut self.jobs, &self.model, &self.layout, &self.state);
    }

    /// Heals every `HEAL_INTERVAL` until `shutdown` completes, then stops every process.
    pub async fn run_until(
        mut self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<()> {
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                () = tokio::time::sleep(HEAL_INTERVAL) => {}
            }
            if let Err(e) = self.heal_pass().await {
                tracing::warn!(error = %e, "heal pass failed");
            }
        }
        self.stop().await
    }

    /// Stops every process (SIGTERM, so Redis flushes its AOF) and clears the pids.
    pub async fn stop(mut self) -> Result<()> {
        let grace = STOP_GRACE;
        // The API first: it drains its requests while Redis still answers.
        self.api.stop(&mut self.state).await;
        for job in &mut self.jobs {
            if let Some(child) = job.running.take()
                && let Some(pid) = child.id()
            {
                stop(pid, "abstore-jobs", grace).await;
            }
        }
        for child in self.sentinels.iter_mut().chain(self.nodes.iter_mut()) {
            if let Some(child) = child.take()
                && let Some(pid) = child.id()
            {
                stop(pid, "redis", grace).await;
            }
        }
        for proc in self
            .state
            .nodes
            .iter_mut()
            .chain(self.state.sentinels.iter_mut())
        {
            proc.pid = None;
        }
        self.state.supervisor_pid = None;
        self.save()
    }

    /// How long a dead primary waits for Sentinel to promote a replica: the time to notice it
    /// is down plus time for the failover; nothing to wait for with a single node.
    fn failover_grace(&self) -> Duration {
        if self.nodes.len() < 2 {
            return Duration::ZERO;
        }
        Duration::from_millis(self.target.sentinel.down_after_ms.saturating_mul(2))
            + Duration::from_secs(5)
    }

    /// Uses `binary` for the tracking API instead of the `abstore-api` found next to this
    /// program or on PATH (it takes effect at the API's next start).
    pub fn set_api_binary(&mut self, binary: &Path) {
        self.api.set_binary(binary);
    }

    /// Uses `binary` for the backup and prune jobs instead of the `abstore-jobs` found next to
    /// this program or on PATH.
    pub fn set_jobs_binary(&mut self, binary: &Path) {
        for job in &mut self.jobs {
            job.binary = binary.to_owned();
        }
    }

    /// Starts a scheduled job (`backup` or `prune`) now, outside its schedule; its result is
    /// recorded in the state by the following heal passes. False when no such job is enabled.
    pub fn run_job_now(&mut self, name: &str) -> bool {
        match self.jobs.iter_mut().find(|job| job.name == name) {
            Some(job) if job.running.is_none() => {
                job.start();
                true
            }
            _ => false,
        }
    }

    fn save(&self) -> Result<()> {
        self.state.write(&self.layout.state_file())
    }

    fn known_primary(&self) -> Option<Endpoint> {
        let (host, port) = self.state.primary.as_deref()?.rsplit_once(':')?;
        Some(Endpoint::new(host, port.parse().ok()?))
    }

    /// Heal and the jobs address a member that moved to another port there.
    fn moved_port(&mut self) -> Result<()> {
        self.target = heal_target(&self.model, &self.layout, &self.credentials, &self.state)?;
        self.rebuild_jobs();
        self.save()
    }

    /// Starts node `index` from the current configuration and waits until it listens on its
    /// port. A new node whose port another program took first moves to another port.
    async fn start_node(&mut self, index: usize, primary: Option<&Endpoint>) -> Result<()> {
        let dir = self.layout.node_dir(index);
        std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        let conf = dir.join(config::REDIS_CONF);
        let log = dir.join(NODE_LOG);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = self.state.nodes[index].port;
            let text = node_config(
                &self.model,
                &self.layout,
                &self.credentials,
                index,
                port,
                primary,
            );
            write_private(&conf, &text)?;
            let what = format!("redis-server {index} on port {port}");
            match launch("redis-server", &conf, &log, port, &what).await {
                Ok(child) => {
                    self.state.nodes[index].pid = child.id();
                    self.nodes[index] = Some(child);
                    self.node_applied[index] = self.node_fingerprint(index);
                    self.node_port_new[index] = false;
                    return Ok(());
                }
                Err(Launch::PortTaken) if self.node_port_new[index] && attempt < START_ATTEMPTS => {
                    let new = free_port(&self.state.nodes, &self.state.sentinels)?;
                    tracing::warn!(
                        node = index,
                        port,
                        new_port = new,
                        "another program took the new node's port before it listened; it gets another"
                    );
                    self.state.nodes[index].port = new;
                    self.moved_port()?;
                }
                Err(Launch::PortTaken) => return Err(LocalError::PortTaken { what, port }),
                Err(Launch::Failed(error)) => return Err(error),
            }
        }
    }

    /// Starts sentinel `index` and waits until it listens on its port; a new sentinel whose
    /// port another program took first moves to another port.
    async fn start_sentinel(&mut self, index: usize) -> Result<()> {
        let dir = self.layout.sentinel_dir(index);
        std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        let conf = dir.join(config::SENTINEL_CONF);
        let log = dir.join(SENTINEL_LOG);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = self.state.sentinels[index].port;
            // Sentinel rewrites its file (its id, the primary, the known replicas and
            // sentinels): written once, then kept across restarts; written anew (keeping its
            // id) when the rendered configuration changed, and heal makes it monitor with the
            // new settings.
            let fingerprint = self.sentinel_fingerprint(index);
            if !conf.exists() || self.sentinel_applied[index] != fingerprint {
                let mut text =
                    sentinel_config(&self.model, &self.layout, &self.credentials, index, port);
                if let Some(id) = std::fs::read_to_string(&conf).ok().and_then(|old| {
                    old.lines()
                        .find(|l| l.starts_with("sentinel myid "))
                        .map(str::to_owned)
                }) {
                    text.push_str(&id);
                    text.push('\n');
                }
                write_private(&conf, &text)?;
            }
            let what = format!("redis-sentinel {index} on port {port}");
            match launch("redis-sentinel", &conf, &log, port, &what).await {
                Ok(child) => {
                    self.state.sentinels[index].pid = child.id();
                    self.sentinels[index] = Some(child);
                    self.sentinel_applied[index] = fingerprint;
                    self.sentinel_port_new[index] = false;
                    return Ok(());
                }
                Err(Launch::PortTaken)
                    if self.sentinel_port_new[index] && attempt < START_ATTEMPTS =>
                {
                    let new = free_port(&self.state.nodes, &self.state.sentinels)?;
                    tracing::warn!(
                        sentinel = index,
                        port,
                        new_port = new,
                        "another program took the new sentinel's port before it listened; it gets another"
                    );
                    self.state.sentinels[index].port = new;
                    self.moved_port()?;
                }
                Err(Launch::PortTaken) => return Err(LocalError::PortTaken { what, port }),
                Err(Launch::Failed(error)) => return Err(error),
            }
        }
    }
}

/// Why a process does not run the current configuration, for the log: a requested restart
/// (nothing recorded), or the lines of its configuration that changed.
fn outdated(applied: &str, current: &str) -> String {
    if applied.is_empty() {
        return "a restart of every process was requested".to_owned();
    }
    let old: Vec<&str> = applied.lines().collect();
    let new: Vec<&str> = current.lines().collect();
    let removed: Vec<&str> = old.iter().filter(|l| !new.contains(l)).copied().collect();
    let added: Vec<&str> = new.iter().filter(|l| !old.contains(l)).copied().collect();
    format!(
        "its configuration changed: {:?} became {:?}",
        removed, added
    )
}

/// What both supervisors start from.
pub(super) struct Prepared {
    /// The ABStore file (absolute) and its content.
    pub spec: PathBuf,
    pub spec_text: String,
    pub model: Model,
    pub layout: Layout,
    pub credentials: Credentials,
    /// The state file's content (empty for a new directory).
    pub state: LocalState,
}

/// The first steps of `local up` in either mode: the validated model, the directory with its
/// passwords, ACL files, certificates (TLS) and backups folder, and the state, refused while
/// another `up` runs on the directory.
pub(super) fn prepare(spec: &Path, dir: &Path) -> Result<Prepared> {
    let spec = std::path::absolute(spec).map_err(io_error(spec))?;
    let spec_text = std::fs::read_to_string(&spec).map_err(io_error(&spec))?;
    let model = load_model(&spec)?;
    std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    let layout = Layout::new(std::path::absolute(dir).map_err(io_error(dir))?);
    let credentials = credentials(&model, &layout)?;
    write_acl_files(&model, &layout, &credentials)?;
    if model.spec.tls.enabled {
        let certificates = tls::ensure(&layout, chrono::Utc::now())?;
        tracing::info!(dir = %layout.tls_dir().display(), origin = ?certificates.origin, server_certificate_ends = %certificates.not_after.to_rfc3339(), "TLS only: the plaintext ports stay closed");
        abstore::crypto::install_default_provider();
    }
    let backups = layout.backups_dir();
    std::fs::create_dir_all(&backups).map_err(io_error(&backups))?;
    let state_file = layout.state_file();
    let state = if state_file.exists() {
        LocalState::read(&state_file)?
    } else {
        LocalState::default()
    };
    if let Some(pid) = state.supervisor_pid
        && is_running(pid)
        && pid != std::process::id()
    {
        return Err(LocalError::State {
            path: state_file,
            reason: format!(
                "already running (local up, pid {pid}); `abstore-operator local down --dir {}` stops it",
                layout.dir.display()
            ),
        });
    }
    Ok(Prepared {
        spec,
        spec_text,
        model,
        layout,
        credentials,
        state,
    })
}

/// Stops processes left over from a `local up` that was killed, before ours start. Only a pid
/// that still listens on its member's port is one of them: pids are reused.
pub(super) async fn stop_leftovers(processes: impl Iterator<Item = &mut ProcessState>) {
    for proc in processes {
        if let Some(pid) = proc.pid.take()
            && stop_listener(pid, proc.port, STOP_GRACE).await
        {
            tracing::info!(
                pid,
                port = proc.port,
                "stopped a process left over from an earlier local up"
            );
        }
    }
}

/// A job `local up` runs on the store's cron schedule, like the CronJob in Kubernetes.
#[derive(Debug)]
pub(super) struct ScheduledJob {
    pub(super) name: &'static str,
    pub(super) binary: PathBuf,
    schedule: cron::Schedule,
    args: Vec<String>,
    next: Option<chrono::DateTime<chrono::Utc>>,
    pub(super) running: Option<Child>,
    log: PathBuf,
}

impl ScheduledJob {
    /// Starts the job when its time has come (skipping a run while the previous one still
    /// runs, as `concurrencyPolicy: Forbid` does), and records a finished run in the state.
    pub(super) fn tick(&mut self, state: &mut LocalState) {
        if let Some(child) = &mut self.running
            && let Ok(Some(status)) = child.try_wait()
        {
            self.running = None;
            let summary = std::fs::read_to_string(&self.log).ok().and_then(|log| {
                log.lines()
                    .rev()
                    .find(|l| l.starts_with('{'))
                    .map(str::to_owned)
            });
            tracing::info!(job = self.name, %status, summary = summary.as_deref().unwrap_or(""), "job finished");
            state.jobs.insert(
                self.name.to_owned(),
                super::state::JobRun {
                    finished_at: chrono::Utc::now().to_rfc3339(),
                    ok: status.success(),
                    summary,
                },
            );
        }
        let now = chrono::Utc::now();
        if self.next.is_some_and(|next| next <= now) {
            self.next = self.schedule.after(&now).next();
            if self.running.is_some() {
                tracing::warn!(
                    job = self.name,
                    "previous run still going; skipping this one"
                );
                return;
            }
            self.start();
        }
    }

    pub(super) fn start(&mut self) {
        match spawn_logged(&self.binary, &self.args, &self.log) {
            Ok(child) => {
                tracing::info!(job = self.name, "job started");
                self.running = Some(child);
            }
            Err(e) => tracing::warn!(job = self.name, error = %e, "job not started"),
        }
    }
}

/// The backup (to `<dir>/backups`) and prune jobs the spec enables.
pub(super) fn scheduled_jobs(
    model: &Model,
    layout: &Layout,
    state: &LocalState,
) -> Vec<ScheduledJob> {
    let url = |role| super::role_url(layout, state, role);
    let mut jobs = Vec::new();
    let mut add = |name: &'static str, schedule: &str, args: Vec<String>| {
        match crate::validate::parse_schedule(schedule) {
            Ok(schedule) => jobs.push(ScheduledJob {
                name,
                binary: jobs_binary(),
                next: schedule.upcoming(chrono::Utc).next(),
                schedule,
                args,
                running: None,
                log: layout.dir.join(format!("{name}.log")),
            }),
            Err(e) => tracing::warn!(job = name, error = %e, "bad schedule; job disabled"),
        }
    };
    let backup = &model.spec.backup;
    if backup.enabled {
        let mut args = vec![
            "backup".to_owned(),
            "--redis".to_owned(),
            url(crate::credentials::Role::Backup),
            "--to".to_owned(),
            format!("file://{}", layout.backups_dir().display()),
        ];
        for pattern in &backup.key_patterns {
            args.extend(["--match".to_owned(), pattern.clone()]);
        }
        add("backup", &backup.schedule, args);
    }
    let retention = &model.spec.retention;
    if retention.enabled {
        add(
            "prune",
            &retention.schedule,
            vec![
                "prune".to_owned(),
                "--redis".to_owned(),
                url(crate::credentials::Role::Prune),
                "--retention-days".to_owned(),
                retention.days.to_string(),
            ],
        );
    }
    jobs
}

/// The jobs of an edited spec, keeping a running job and the binary of the old ones.
pub(super) fn rebuild_jobs(
    jobs: &mut Vec<ScheduledJob>,
    model: &Model,
    layout: &Layout,
    state: &LocalState,
) {
    let mut new = scheduled_jobs(model, layout, state);
    for job in &mut new {
        if let Some(old) = jobs.iter_mut().find(|old| old.name == job.name) {
            job.running = old.running.take();
            job.binary = old.binary.clone();
        }
    }
    *jobs = new;
}

/// `abstore-jobs` next to this binary (a cargo build puts both in the same directory), else
/// from PATH.
fn jobs_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("abstore-jobs")))
        .filter(|path| path.is_file())
        .unwrap_or_else(|| PathBuf::from("abstore-jobs"))
}

pub(super) fn count(replicas: i32) -> usize {
    usize::try_from(replicas).unwrap_or(0)
}

/// Keeps the ports already allocated; new processes get free loopback ports, none of them
/// one of `others` (the store's other kind of process).
fn resize(processes: &mut Vec<ProcessState>, wanted: usize, others: &[ProcessState]) -> Result<()> {
    processes.truncate(wanted);
    while processes.len() < wanted {
        let port = free_port(processes, others)?;
        processes.push(ProcessState {
            port,
            pid: None,
            bus_port: None,
        });
    }
    Ok(())
}

/// A loopback port that was free a moment ago and is none of the store's. Free only until
/// someone binds it: [`launch`] tells when another program took it first.
pub(super) fn free_port(nodes: &[ProcessState], sentinels: &[ProcessState]) -> Result<u16> {
    let error = |e: std::io::Error| LocalError::Start {
        what: "a loopback port".to_owned(),
        reason: e.to_string(),
    };
    loop {
        let listener = std::net::TcpListener::bind((LOOPBACK, 0)).map_err(error)?;
        let port = listener.local_addr().map_err(error)?.port();
        if nodes.iter().chain(sentinels).all(|p| p.port != port) {
            return Ok(port);
        }
    }
}

fn spawn(program: &str, config: &Path, log: &Path) -> Result<Child> {
    spawn_logged(Path::new(program), &[config.display().to_string()], log).map_err(|e| match e {
        LocalError::Start { what, reason } if reason.contains("No such file") => {
            LocalError::Start {
                what,
                reason: format!(
                    "{program} is not installed (apt-get install redis-server redis-sentinel)"
                ),
            }
        }
        other => other,
    })
}

/// [`spawn_logged`] for the other programs a local store runs (the tracking API).
pub(super) fn spawn_program(program: &Path, args: &[String], log: &Path) -> Result<Child> {
    spawn_logged(program, args, log)
}

/// Starts `program args…` with stdout and stderr appended to `log`, in its own process group
/// (Ctrl-C reaches `local up`, which stops the servers in order) and surviving our exit.
fn spawn_logged(program: &Path, args: &[String], log: &Path) -> Result<Child> {
    let open_log = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(io_error(log))
    };
    Command::new(program)
        .args(args)
        .env("ABSTORE_TERMINATION_LOG", "/nonexistent/termination-log")
        .stdin(Stdio::null())
        .stdout(open_log()?)
        .stderr(open_log()?)
        .process_group(0)
        .kill_on_drop(false)
        .spawn()
        .map_err(|e| LocalError::Start {
            what: format!("{} {}", program.display(), args.join(" ")),
            reason: e.to_string(),
        })
}

/// Why [`launch`] returned no running process.
#[derive(Debug)]
pub(super) enum Launch {
    /// It exited because another program listens on its port.
    PortTaken,
    Failed(LocalError),
}

/// Starts `program config` (output appended to `log`) and waits until the child itself listens
/// on `port`. Anything else answering on the port does not count: a process whose port another
/// program took exits at once, and a bare connect would find the other program listening.
pub(super) async fn launch(
    program: &str,
    config: &Path,
    log: &Path,
    port: u16,
    what: &str,
) -> std::result::Result<Child, Launch> {
    let offset = std::fs::metadata(log).map(|m| m.len()).unwrap_or(0);
    let mut child = spawn(program, config, log).map_err(Launch::Failed)?;
    let failed = |reason: String| {
        Launch::Failed(LocalError::Start {
            what: what.to_owned(),
            reason,
        })
    };
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let output = read_from(log, offset);
                if output.contains(ADDR_IN_USE) {
                    return Err(Launch::PortTaken);
                }
                return Err(failed(format!(
                    "exited ({status}) before it listened; its log ({}): {}",
                    log.display(),
                    tail(&output)
                )));
            }
            Ok(None) => {}
            Err(e) => return Err(failed(format!("cannot poll the process: {e}"))),
        }
        if child.id().is_some_and(|pid| listens_on(pid, port)) {
            return Ok(child);
        }
        if Instant::now() >= deadline {
            // Not tracked by anyone once this fails: it must not linger.
            let _ = child.kill().await;
            return Err(failed(format!(
                "not listening on port {port} after {} s; its log ({}): {}",
                START_TIMEOUT.as_secs(),
                log.display(),
                tail(&read_from(log, offset))
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The file's content from byte `offset` on (what a process wrote since it was started).
fn read_from(path: &Path, offset: u64) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    let start = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

/// The last [`LOG_LINES`] lines of `text`, joined with ` | `.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .rev()
        .take(LOG_LINES)
        .collect();
    lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
}

/// The last lines of a process's log file.
pub(super) fn last_lines(log: &Path) -> String {
    tail(&read_from(log, 0))
}

/// Whether process `pid` holds a listening TCP socket on `port` (from /proc: its socket file
/// descriptors against the kernel's table of listeners). Ports are unique among listeners, so
/// this tells a process of ours from another program on the same port, and a pid from a state
/// file from the unrelated process that reuses it. False where /proc cannot be read.
pub fn listens_on(pid: u32, port: u16) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    let sockets: Vec<String> = fds
        .filter_map(std::result::Result::ok)
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|target| {
            target
                .to_str()?
                .strip_prefix("socket:[")?
                .strip_suffix(']')
                .map(str::to_owned)
        })
        .collect();
    if sockets.is_empty() {
        return false;
    }
    const LISTEN: &str = "0A";
    let port_hex = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|table| {
        std::fs::read_to_string(table).is_ok_and(|text| {
            text.lines().skip(1).any(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                matches!(
                    (fields.get(1), fields.get(3), fields.get(9)),
                    (Some(local), Some(&LISTEN), Some(inode))
                        if local.ends_with(&port_hex) && sockets.iter().any(|s| s == inode)
                )
            })
        })
    })
}

/// The exit status of a child that exited (and forgets it).
pub(super) fn exited(child: &mut Option<Child>) -> Option<std::process::ExitStatus> {
    let status = child.as_mut()?.try_wait().ok()??;
    *child = None;
    Some(status)
}

/// Removes the directory of a process that was scaled away (or is about to be started anew).
pub(super) fn remove_dir(dir: &Path) {
    if let Err(e) = std::fs::remove_dir_all(dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot remove the directory");
    }
}

/// Whether the node directory holds a dataset (RDB or AOF).
pub(super) fn has_local_data(dir: &Path) -> bool {
    let rdb: PathBuf = dir.join("dump.rdb");
    rdb.metadata().is_ok_and(|m| m.len() > 0) || dir.join("appendonlydir").is_dir()
}

/// Whether `pid` is a live (not zombie) process.
pub fn is_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit(')')
                .next()
                .and_then(|rest| rest.split_whitespace().next())
                .map(|state| state != "Z")
        })
        .unwrap_or(false)
}

fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " "))
        .unwrap_or_default()
}

/// [`stop`] for a process of a store, named by a state file: only while it still listens on
/// its member's `port` (a pid from an old state file may belong to any process now, another
/// store's Redis included). Returns whether it was stopped.
pub async fn stop_listener(pid: u32, port: u16, grace: Duration) -> bool {
    listens_on(pid, port) && stop(pid, "redis", grace).await
}

/// SIGTERM, wait up to `grace`, then SIGKILL. Only a process whose command line contains
/// `expect` is signalled (a pid from an old state file may belong to something else now).
/// Returns whether it was running.
pub async fn stop(pid: u32, expect: &str, grace: Duration) -> bool {
    if !is_running(pid) || !cmdline(pid).contains(expect) {
        return false;
    }
    signal(pid, "TERM").await;
    let deadline = Instant::now() + grace;
    while is_running(pid) {
        if Instant::now() >= deadline {
            signal(pid, "KILL").await;
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    true
}

/// `kill -<signal> <pid>` (the workspace has no unsafe code for libc::kill).
async fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// An executable shell script standing in for redis-server.
    fn program(dir: &Path, name: &str, body: &str) -> String {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path.display().to_string()
    }

    #[tokio::test]
    async fn another_programs_listener_on_the_port_is_never_taken_for_the_started_process() {
        // Another program listens on the port; the process exits because of it, as Redis does.
        let squatter = std::net::TcpListener::bind((LOOPBACK, 0)).unwrap();
        let port = squatter.local_addr().unwrap().port();
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("redis.conf");
        std::fs::write(&conf, "").unwrap();
        let log = dir.path().join("redis.log");
        // An earlier run's line in the log is not this start's reason.
        std::fs::write(&log, "bind: Address already in use (an earlier run)\n").unwrap();

        let taken = program(
            dir.path(),
            "taken",
            &format!(
                "echo \"# Warning: Could not create server TCP listening socket 127.0.0.1:{port}: bind: Address already in use\"\nexit 1"
            ),
        );
        let outcome = launch(&taken, &conf, &log, port, "redis-server 0").await;
        assert!(matches!(outcome, Err(Launch::PortTaken)), "{outcome:?}");

        let broken = program(
            dir.path(),
            "broken",
            "echo 'Bad directive or wrong number of arguments'\nexit 1",
        );
        match launch(&broken, &conf, &log, port, "redis-server 0").await {
            Err(Launch::Failed(LocalError::Start { what, reason })) => {
                assert_eq!(what, "redis-server 0");
                assert!(
                    reason.contains("Bad directive") && reason.contains("exit status: 1"),
                    "{reason}"
                );
                assert!(!reason.contains("earlier run"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_rollout_restart_names_the_configuration_lines_that_changed() {
        assert_eq!(
            outdated("port 7001\nmaxmemory 100\n", "port 7001\nmaxmemory 200\n"),
            r#"its configuration changed: ["maxmemory 100"] became ["maxmemory 200"]"#
        );
        assert_eq!(
            outdated("", "port 7001\n"),
            "a restart of every process was requested"
        );
    }

    #[test]
    fn only_the_process_holding_the_listener_listens_on_a_port() {
        let listener = std::net::TcpListener::bind((LOOPBACK, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(listens_on(std::process::id(), port));
        // A connected socket's local port is not a listener.
        let client = std::net::TcpStream::connect((LOOPBACK, port)).unwrap();
        let client_port = client.local_addr().unwrap().port();
        assert!(!listens_on(std::process::id(), client_port));
        // Another process does not hold this listener (pids are reused: a pid is not enough).
        let mut other = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        assert!(!listens_on(other.id(), port));
        other.kill().unwrap();
        other.wait().unwrap();
        drop(listener);
        assert!(!listens_on(std::process::id(), port));
    }
}

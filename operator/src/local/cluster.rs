//! `local up` of a `mode: cluster` store: `shards × (1 + replicasPerShard)` cluster-mode
//! `redis-server` processes on loopback, from the same rendered redis.conf the pods get, formed
//! and repaired by the operator's cluster heal ([`crate::cluster::heal`]): the same planner that
//! never gives slots to an empty node while another holds data. Failover is the cluster's own.
//!
//! Built so far (docs/cluster.md): start, bootstrap, restart of processes that exit (a dead
//! primary first gets the time for its replica to take over), the backup and prune jobs on
//! their schedules (every shard), TLS only (clients, replication and the cluster bus), edits of
//! the file followed (a changed configuration is rolled out: replicas first, each primary moved
//! away by `CLUSTER FAILOVER` before its restart; changed users reloaded live), `local restart`,
//! `status` per shard, `down`. Not yet: changing the number of shards or replicas per shard.

use std::path::Path;
use std::time::Duration;

use tokio::process::Child;
use tokio::time::Instant;

use super::process::{
    Launch, NODE_LOG, Prepared, START_ATTEMPTS, STOP_GRACE, ScheduledJob, exited, last_lines,
    launch, prepare, rebuild_jobs, remove_dir, scheduled_jobs, stop, stop_leftovers,
};
use super::state::{LocalState, ProcessState};
use super::{
    HEAL_INTERVAL, LOOPBACK, Layout, LocalError, Result, credentials, io_error, load_model,
    node_config, write_acl_files, write_private,
};
use crate::cluster::heal::{
    ClusterHealTarget, ClusterReport, ReshardOutcome, failover, heal_once, observe, reshard_pass,
};
use crate::cluster::nodes::SlotSet;
use crate::cluster::plan::member_position;
use crate::cluster::plan::{ClusterTarget, Member};
use crate::cluster::rollout::{RolloutStep, next_step};
use crate::config;
use crate::credentials::{Credentials, Role};
use crate::heal::Endpoint;
use crate::model::Model;

/// How long `up` waits for the cluster to form (every slot served, every member in place).
pub const CLUSTER_BOOTSTRAP_TIMEOUT: Duration = Duration::from_secs(90);

/// A running cluster-mode local store.
#[derive(Debug)]
pub struct ClusterSupervisor {
    layout: Layout,
    model: Model,
    credentials: Credentials,
    state: LocalState,
    target: ClusterHealTarget,
    nodes: Vec<Option<Child>>,
    /// When each node was found dead (until it is started again).
    down_since: Vec<Option<Instant>>,
    /// Each shard's primary at the last pass.
    primaries: Vec<Option<Endpoint>>,
    last_decision: Option<String>,
    /// The backup and prune jobs on their cron schedules.
    jobs: Vec<ScheduledJob>,
    /// The ABStore file (absolute) and its content when last read.
    spec: std::path::PathBuf,
    spec_text: String,
    /// The configuration each member was started with ([`ClusterSupervisor::fingerprint`]):
    /// one that differs from what the model renders now is rolled.
    applied: Vec<String>,
    last_step: Option<RolloutStep>,
    /// The tracking API, when the spec enables it.
    api: super::api::LocalApi,
}

/// What the cluster heal needs for this local store (with TLS, the CA in `<dir>/tls/ca.crt`).
pub fn cluster_heal_target(
    layout: &Layout,
    credentials: &Credentials,
    state: &LocalState,
) -> Result<ClusterHealTarget> {
    let shards = state.shards.unwrap_or(1);
    let per_shard = state.nodes.len() / usize::from(shards.max(1));
    let members = state
        .nodes
        .iter()
        .enumerate()
        .map(|(n, node)| {
            let (shard, index) = member_position(n, per_shard);
            Member {
                shard,
                index,
                endpoint: Endpoint::new(LOOPBACK, node.port),
                bus_port: node.bus_port,
            }
        })
        .collect();
    let tls_ca = if state.tls {
        Some(super::tls::read_ca(layout)?)
    } else {
        None
    };
    let (operator_auth, operator_auth_previous) =
        crate::cluster::kubernetes::operator_auth(credentials);
    Ok(ClusterHealTarget {
        cluster: ClusterTarget { shards, members },
        operator_auth: Some(operator_auth),
        operator_auth_previous,
        tls_ca,
    })
}

/// redis.conf of cluster member `index`: the node lines of Sentinel mode (port, directory,
/// ACL file, masterauth) plus its cluster bus port.
pub fn cluster_node_config(
    model: &Model,
    layout: &Layout,
    credentials: &Credentials,
    index: usize,
    node: &ProcessState,
) -> String {
    let mut conf = node_config(model, layout, credentials, index, node.port, None);
    if let Some(bus) = node.bus_port {
        conf.push_str(&format!("cluster-port {bus}\n"));
    }
    conf
}

/// A loopback port that was free a moment ago and is none of `taken`.
fn free_port(taken: &[ProcessState]) -> Result<u16> {
    let error = |e: std::io::Error| LocalError::Start {
        what: "a loopback port".to_owned(),
        reason: e.to_string(),
    };
    loop {
        let listener = std::net::TcpListener::bind((LOOPBACK, 0)).map_err(error)?;
        let port = listener.local_addr().map_err(error)?.port();
        if taken
            .iter()
            .all(|p| p.port != port && p.bus_port != Some(port))
        {
            return Ok(port);
        }
    }
}

/// A new member's data and bus ports.
fn new_member(taken: &[ProcessState]) -> Result<ProcessState> {
    let port = free_port(taken)?;
    let mut with_port = taken.to_vec();
    with_port.push(ProcessState {
        port,
        ..ProcessState::default()
    });
    let bus_port = free_port(&with_port)?;
    Ok(ProcessState {
        port,
        pid: None,
        bus_port: Some(bus_port),
    })
}

impl ClusterSupervisor {
    /// Starts (or restarts, on an existing directory) every member of the cluster-mode store in
    /// `spec`, and heals until the cluster serves every slot with every member in place.
    pub async fn up(spec: &Path, dir: &Path) -> Result<ClusterSupervisor> {
        let Prepared {
            spec,
            spec_text,
            model,
            layout,
            credentials,
            mut state,
        } = prepare(spec, dir)?;
        let state_file = layout.state_file();
        let cluster = model.cluster().ok_or_else(|| LocalError::Spec {
            path: spec.clone(),
            reason: "spec.mode is not cluster".to_owned(),
        })?;
        let per_shard = 1 + usize::try_from(cluster.replicas_per_shard).unwrap_or(0);
        // An existing store restarts with the shards it has; a different spec.cluster.shards
        // is reached by the heal passes (new shards started, slots moved).
        let shards = match state.shards {
            Some(existing) if !state.nodes.is_empty() => existing,
            _ => u16::try_from(cluster.shards).unwrap_or(1),
        };
        let members = usize::from(shards) * per_shard;
        if !state.nodes.is_empty() {
            if state.shards.is_none() {
                return Err(LocalError::State {
                    path: state_file,
                    reason: "this directory holds a Sentinel-mode store; a cluster-mode store needs its own directory (restore a backup into it)".to_owned(),
                });
            }
            if state.nodes.len() != members {
                return Err(LocalError::State {
                    path: state_file,
                    reason: format!(
                        "this store has {} members in {shards} shards, not {per_shard} per shard; changing spec.cluster.replicasPerShard of a local cluster is not built yet (docs/cluster.md)",
                        state.nodes.len()
                    ),
                });
            }
        }
        state.name = model.name.clone();
        state.master_name = model.master_name().to_owned();
        state.spec_file = spec.display().to_string();
        state.supervisor_pid = Some(std::process::id());
        if !state.nodes.is_empty() && state.tls != model.spec.tls.enabled {
            return Err(LocalError::State {
                path: state_file,
                reason: "spec.tls.enabled differs from what this store's processes were started with; switching TLS on an existing local cluster is not built yet".to_owned(),
            });
        }
        state.tls = model.spec.tls.enabled;
        state.shards = Some(shards);
        state.sentinels.clear();
        let known = state.nodes.len();
        while state.nodes.len() < members {
            let member = new_member(&state.nodes)?;
            state.nodes.push(member);
        }
        state.write(&state_file)?;

        let target = cluster_heal_target(&layout, &credentials, &state)?;
        let mut supervisor = ClusterSupervisor {
            nodes: (0..members).map(|_| None).collect(),
            down_since: vec![None; members],
            primaries: vec![None; usize::from(shards)],
            last_decision: None,
            jobs: Vec::new(),
            spec_text,
            spec,
            applied: vec![String::new(); members],
            last_step: None,
            api: super::api::LocalApi::default(),
            layout,
            model,
            credentials,
            state,
            target,
        };
        stop_leftovers(supervisor.state.nodes.iter_mut()).await;
        for index in 0..members {
            if let Err(error) = supervisor.start_node(index, index >= known).await {
                tracing::warn!(%error, "local up failed; stopping the processes it started");
                supervisor.stop().await?;
                return Err(error);
            }
        }
        supervisor.save()?;
        if let Err(error) = supervisor.bootstrap().await {
            supervisor.stop().await?;
            return Err(error);
        }
        supervisor.jobs = scheduled_jobs(&supervisor.model, &supervisor.layout, &supervisor.state);
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

    pub fn state(&self) -> &LocalState {
        &self.state
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// What the heal passes work on.
    pub fn target(&self) -> &ClusterHealTarget {
        &self.target
    }

    /// Each shard's primary at the last pass.
    pub fn primaries(&self) -> &[Option<Endpoint>] {
        &self.primaries
    }

    /// Heals until a pass finds nothing to do and knows every shard's primary.
    async fn bootstrap(&mut self) -> Result<()> {
        let deadline = Instant::now() + CLUSTER_BOOTSTRAP_TIMEOUT;
        loop {
            let report = self.heal_pass().await?;
            if report.settled() && report.primaries.iter().all(Option::is_some) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(LocalError::NoPrimary {
                    seconds: CLUSTER_BOOTSTRAP_TIMEOUT.as_secs(),
                    reason: format!(
                        "the cluster did not form: {:?}, warnings {:?}",
                        report.decision, report.warnings
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// One pass: restart members that exited (a dead primary only once its replica had the
    /// time to take over), heal, save the state.
    pub async fn heal_pass(&mut self) -> Result<ClusterReport> {
        self.reload_spec().await?;
        self.take_restart_request();
        self.grow().await?;
        if let Err(error) = self
            .api
            .ensure(&self.model, &self.layout, &mut self.state)
            .await
        {
            tracing::warn!(%error, "abstore-api not started; trying again at the next pass");
        }
        let now = Instant::now();
        for index in 0..self.nodes.len() {
            if let Some(status) = exited(&mut self.nodes[index]) {
                let log = self.layout.node_dir(index).join(NODE_LOG);
                tracing::warn!(node = index, port = self.state.nodes[index].port, %status, last_log_lines = %last_lines(&log), "redis-server exited");
                self.state.nodes[index].pid = None;
                self.down_since[index] = Some(now);
            }
        }
        for index in 0..self.nodes.len() {
            if self.nodes[index].is_some() {
                continue;
            }
            let own = Endpoint::new(LOOPBACK, self.state.nodes[index].port);
            if self.primaries.iter().flatten().any(|p| *p == own) {
                // Restarted at once it would be the primary again with what its AOF kept,
                // which can be less than its replica acknowledged: let the cluster promote the
                // replica first; the node rejoins as its replica.
                let waited = now.duration_since(self.down_since[index].unwrap_or(now));
                if waited < self.failover_grace() {
                    continue;
                }
            }
            tracing::info!(
                node = index,
                reason = "it is not running",
                "starting redis-server"
            );
            if let Err(error) = self.start_node(index, false).await {
                tracing::warn!(node = index, %error, "redis-server not started; trying again at the next pass");
                continue;
            }
            self.down_since[index] = None;
        }
        for job in &mut self.jobs {
            job.tick(&mut self.state);
        }
        let report = heal_once(&self.target).await;
        let decision = format!("{:?}", report.decision);
        if self.last_decision.as_ref() != Some(&decision) {
            tracing::info!(decision = %decision, primaries = ?report.primaries.iter().map(|p| p.as_ref().map(Endpoint::to_string)).collect::<Vec<_>>(), "cluster heal");
            self.last_decision = Some(decision);
        }
        for warning in &report.warnings {
            tracing::warn!(%warning, "cluster heal");
        }
        for (shard, primary) in report.primaries.iter().enumerate() {
            if let (Some(slot), Some(primary)) = (self.primaries.get_mut(shard), primary) {
                *slot = Some(primary.clone());
            }
        }
        if report.settled() {
            self.roll().await?;
            if self.last_step == Some(RolloutStep::Done) {
                self.reshard().await?;
            }
        } else if report.migrating() {
            // A move left half-way (a MIGRATE refused, a crash): only the resharding ends it.
            self.reshard().await?;
        }
        self.save()?;
        Ok(report)
    }

    /// Shards the file asks for.
    fn wanted_shards(&self) -> u16 {
        self.model
            .cluster()
            .and_then(|c| u16::try_from(c.shards).ok())
            .unwrap_or(1)
    }

    /// Members per shard: a primary and its replicas.
    fn per_shard(&self) -> usize {
        1 + self
            .model
            .cluster()
            .and_then(|c| usize::try_from(c.replicas_per_shard).ok())
            .unwrap_or(0)
    }

    /// Starts the members of shards the file added: the heal introduces them and attaches their
    /// replicas; [`ClusterSupervisor::reshard`] then gives them their share of the slots.
    async fn grow(&mut self) -> Result<()> {
        let wanted = self.wanted_shards();
        let current = self.state.shards.unwrap_or(1);
        if wanted <= current {
            return Ok(());
        }
        let first = self.state.nodes.len();
        let members = usize::from(wanted) * self.per_shard();
        tracing::info!(from = current, to = wanted, "adding shards");
        while self.state.nodes.len() < members {
            let member = new_member(&self.state.nodes)?;
            self.state.nodes.push(member);
        }
        self.nodes.resize_with(members, || None);
        self.down_since.resize(members, None);
        self.applied.resize(members, String::new());
        self.primaries.resize(usize::from(wanted), None);
        self.state.shards = Some(wanted);
        self.target = cluster_heal_target(&self.layout, &self.credentials, &self.state)?;
        self.save()?;
        for index in first..members {
            self.start_node(index, true).await?;
        }
        Ok(())
    }

    /// Moves slots towards the file's number of shards ([`crate::cluster::reshard`]) for up to
    /// 0.8 s per pass, one slot at a time; once every shard being removed holds none,
    /// stops its members (the heal then has the others forget them).
    async fn reshard(&mut self) -> Result<()> {
        const BUDGET: Duration = Duration::from_millis(800);
        let wanted = self.wanted_shards();
        match reshard_pass(&self.target, wanted, BUDGET).await {
            ReshardOutcome::Done => {}
            ReshardOutcome::Waiting { reason } => {
                tracing::debug!(%reason, "reshard waits");
                return Ok(());
            }
            ReshardOutcome::Moved { slots, keys } => {
                tracing::info!(slots, keys, "moved slots");
                return Ok(());
            }
            ReshardOutcome::Failed { slots, error } => {
                tracing::warn!(slots, %error, "slot move failed; trying again at the next pass");
                return Ok(());
            }
        }
        // Every slot is where it belongs: shards beyond the wanted ones are empty.
        let current = self.state.shards.unwrap_or(1);
        if wanted < current {
            let keep = usize::from(wanted) * self.per_shard();
            tracing::info!(from = current, to = wanted, "removing emptied shards");
            for index in keep..self.nodes.len() {
                if let Some(child) = self.nodes[index].take()
                    && let Some(pid) = child.id()
                {
                    stop(pid, "redis", STOP_GRACE).await;
                }
                // Its slots and keys live elsewhere now; a shard added later at this index
                // starts empty, with a new identity.
                remove_dir(&self.layout.node_dir(index));
            }
            self.state.nodes.truncate(keep);
            self.nodes.truncate(keep);
            self.down_since.truncate(keep);
            self.applied.truncate(keep);
            self.primaries.truncate(usize::from(wanted));
            self.state.shards = Some(wanted);
            self.target = cluster_heal_target(&self.layout, &self.credentials, &self.state)?;
            self.save()?;
        }
        Ok(())
    }

    /// The rollout step of the last pass.
    pub fn last_step(&self) -> Option<&RolloutStep> {
        self.last_step.as_ref()
    }

    /// The configuration member `index` runs when started now (its rendered redis.conf
    /// without `masterauth`, which changes with a rotation applied live).
    fn fingerprint(&self, index: usize) -> String {
        cluster_node_config(
            &self.model,
            &self.layout,
            &self.credentials,
            index,
            &self.state.nodes[index],
        )
        .lines()
        .filter(|line| !line.starts_with("masterauth "))
        .flat_map(|line| [line, "\n"])
        .collect()
    }

    /// One rollout step ([`crate::cluster::rollout`]) for members whose configuration changed.
    async fn roll(&mut self) -> Result<()> {
        let outdated: Vec<bool> = (0..self.nodes.len())
            .map(|i| self.applied[i] != self.fingerprint(i))
            .collect();
        if !outdated.contains(&true) {
            if self
                .last_step
                .as_ref()
                .is_some_and(|s| *s != RolloutStep::Done)
            {
                tracing::info!("rollout done: every member runs the current configuration");
            }
            self.last_step = Some(RolloutStep::Done);
            self.state.rollout = Some("done".to_owned());
            return Ok(());
        }
        let observation = observe(&self.target).await;
        let step = next_step(&self.target.cluster, &observation, &outdated);
        if self.last_step.as_ref() != Some(&step) {
            tracing::info!(step = ?step, "rollout");
        }
        self.state.rollout = Some(format!("{step:?}"));
        match &step {
            RolloutStep::RestartReplica { member, .. }
            | RolloutStep::RestartPrimary { member, .. } => {
                let member = *member;
                if let Some(child) = self.nodes[member].take()
                    && let Some(pid) = child.id()
                {
                    stop(pid, "redis", STOP_GRACE).await;
                }
                self.state.nodes[member].pid = None;
                self.start_node(member, false).await?;
            }
            RolloutStep::Failover { endpoint, .. } => {
                if let Err(error) = failover(&self.target, endpoint).await {
                    tracing::warn!(%error, "rollout: failover not started; trying again at the next pass");
                }
            }
            RolloutStep::Wait { .. } | RolloutStep::Done => {}
        }
        self.last_step = Some(step);
        Ok(())
    }

    /// Rolls every member (replicas, then each primary after a failover), as for a
    /// configuration change. `local restart --dir` asks a running `up` for this.
    pub fn request_restart(&mut self) {
        tracing::info!("rolling restart of every member requested");
        self.applied.iter_mut().for_each(String::clear);
    }

    fn take_restart_request(&mut self) {
        if std::fs::remove_file(self.layout.restart_request_file()).is_ok() {
            self.request_restart();
        }
    }

    /// Re-reads the ABStore file; a changed, valid one becomes the model (members whose
    /// rendered configuration changed are rolled; users and passwords reloaded live). Changes
    /// local cluster mode cannot follow are logged and ignored.
    async fn reload_spec(&mut self) -> Result<()> {
        let Ok(text) = std::fs::read_to_string(&self.spec) else {
            return Ok(());
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
        let refused = if model.name != self.model.name {
            Some("renames the store")
        } else if model.spec.tls.enabled != self.model.spec.tls.enabled {
            Some("switches TLS")
        } else if model.cluster().map(|c| c.replicas_per_shard)
            != self.model.cluster().map(|c| c.replicas_per_shard)
        {
            Some("changes spec.cluster.replicasPerShard (not built yet; shards can change)")
        } else if model.cluster().is_none() {
            Some("leaves cluster mode")
        } else {
            None
        };
        if let Some(what) = refused {
            tracing::warn!(file = %self.spec.display(), "the ABStore file {what}; a running local cluster cannot follow, ignored");
            return Ok(());
        }
        if model == self.model {
            return Ok(());
        }
        tracing::info!(file = %self.spec.display(), "the ABStore file changed; rolling members whose configuration changed");
        let credentials = credentials(&model, &self.layout)?;
        write_acl_files(&model, &self.layout, &credentials)?;
        self.credentials = credentials;
        self.model = model;
        self.target = cluster_heal_target(&self.layout, &self.credentials, &self.state)?;
        for error in crate::cluster::heal::reload_acls(&self.target).await {
            tracing::warn!(%error, "ACL LOAD failed; the member reads the file at its restart");
        }
        rebuild_jobs(&mut self.jobs, &self.model, &self.layout, &self.state);
        Ok(())
    }

    /// How long a dead primary is left down for its replica to take over: the node timeout
    /// twice (detection and the election) plus 5 s; nothing to wait for without replicas.
    fn failover_grace(&self) -> Duration {
        let cluster = self.model.cluster().unwrap_or_default();
        if cluster.replicas_per_shard == 0 {
            return Duration::ZERO;
        }
        Duration::from_millis(
            u64::try_from(cluster.node_timeout_milliseconds)
                .unwrap_or(5000)
                .saturating_mul(2),
        ) + Duration::from_secs(5)
    }

    /// Starts member `index` and waits until it listens; a new member whose port another
    /// program took first gets other ports (nothing knows them yet).
    async fn start_node(&mut self, index: usize, new: bool) -> Result<()> {
        let dir = self.layout.node_dir(index);
        std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        let conf = dir.join(config::REDIS_CONF);
        let log = dir.join(NODE_LOG);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let node = self.state.nodes[index].clone();
            let text =
                cluster_node_config(&self.model, &self.layout, &self.credentials, index, &node);
            write_private(&conf, &text)?;
            let what = format!("redis-server {index} on port {}", node.port);
            match launch("redis-server", &conf, &log, node.port, &what).await {
                Ok(child) => {
                    self.state.nodes[index].pid = child.id();
                    self.nodes[index] = Some(child);
                    self.applied[index] = self.fingerprint(index);
                    return Ok(());
                }
                Err(Launch::PortTaken) if new && attempt < START_ATTEMPTS => {
                    let others: Vec<ProcessState> = self
                        .state
                        .nodes
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| *i != index)
                        .map(|(_, n)| n.clone())
                        .collect();
                    let moved = new_member(&others)?;
                    tracing::warn!(
                        node = index,
                        port = node.port,
                        new_port = moved.port,
                        "another program took the new member's port before it listened; it gets another"
                    );
                    self.state.nodes[index] = moved;
                    self.target =
                        cluster_heal_target(&self.layout, &self.credentials, &self.state)?;
                    self.save()?;
                }
                Err(Launch::PortTaken) => {
                    return Err(LocalError::PortTaken {
                        what,
                        port: node.port,
                    });
                }
                Err(Launch::Failed(error)) => return Err(error),
            }
        }
    }

    /// Heals every [`HEAL_INTERVAL`] until `shutdown`, then stops every process.
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

    /// Uses `binary` for the backup and prune jobs instead of the `abstore-jobs` found next to
    /// this program or on PATH.
    pub fn set_jobs_binary(&mut self, binary: &Path) {
        for job in &mut self.jobs {
            job.binary = binary.to_owned();
        }
    }

    /// Starts a scheduled job (`backup` or `prune`) now; its result is recorded in the state by
    /// the following heal passes. False when no such job is enabled or it is running.
    pub fn run_job_now(&mut self, name: &str) -> bool {
        match self.jobs.iter_mut().find(|job| job.name == name) {
            Some(job) if job.running.is_none() => {
                job.start();
                true
            }
            _ => false,
        }
    }

    /// Stops every process (SIGTERM, so Redis flushes its AOF) and clears the pids.
    pub async fn stop(mut self) -> Result<()> {
        self.api.stop(&mut self.state).await;
        for job in &mut self.jobs {
            if let Some(child) = job.running.take()
                && let Some(pid) = child.id()
            {
                stop(pid, "abstore-jobs", STOP_GRACE).await;
            }
        }
        for child in &mut self.nodes {
            if let Some(child) = child.take()
                && let Some(pid) = child.id()
            {
                stop(pid, "redis", STOP_GRACE).await;
            }
        }
        for proc in &mut self.state.nodes {
            proc.pid = None;
        }
        self.state.supervisor_pid = None;
        self.save()
    }

    fn save(&self) -> Result<()> {
        self.state.write(&self.layout.state_file())
    }
}

/// The `redis+cluster://` URL of a role's user on a cluster-mode local store: every member
/// as a seed, the password from its file.
pub fn cluster_role_url(layout: &Layout, state: &LocalState, role: Role) -> String {
    let hosts: Vec<String> = state
        .nodes
        .iter()
        .map(|n| format!("{LOOPBACK}:{}", n.port))
        .collect();
    let (scheme, ca) = if state.tls {
        (
            "rediss+cluster",
            format!("ca_file={}&", layout.tls_ca_file().display()),
        )
    } else {
        ("redis+cluster", String::new())
    };
    format!(
        "{scheme}://{user}@{}/?{ca}password_file={}",
        hosts.join(","),
        layout.credential_file(role.username()).display(),
        user = role.username(),
    )
}

/// `local status` of a cluster-mode store: every member's shard, role, slots and keys, as the
/// members answer now.
pub(super) async fn status(layout: &Layout, state: LocalState) -> Result<super::Status> {
    let model = load_model(Path::new(&state.spec_file))?;
    let credentials = credentials(&model, layout)?;
    if state.tls {
        abstore::crypto::install_default_provider();
    }
    let target = cluster_heal_target(layout, &credentials, &state)?;
    let observation = crate::cluster::heal::observe(&target).await;
    let mut covered = SlotSet::default();
    let nodes = state
        .nodes
        .iter()
        .zip(&observation)
        .map(|(p, o)| {
            let mut node = super::NodeStatus {
                address: o.member.endpoint.to_string(),
                pid: p.pid,
                running: p.pid.is_some_and(|pid| super::listens_on(pid, p.port)),
                role: None,
                offset: None,
                keys: None,
                error: None,
                shard: Some(o.member.shard),
                slots: None,
            };
            match &o.state {
                Ok(seen) => {
                    node.keys = Some(seen.keys);
                    match seen.nodes.myself() {
                        Some(me) if me.is_master() => {
                            node.role = Some("primary".to_owned());
                            node.slots = Some(me.slots.to_string());
                            covered.union(&me.slots);
                        }
                        Some(me) => {
                            let primary = me
                                .master
                                .as_deref()
                                .and_then(|id| seen.nodes.get(id))
                                .map_or_else(|| "?".to_owned(), |n| n.addr.clone());
                            node.role = Some(format!("replica of {primary}"));
                        }
                        None => node.error = Some("CLUSTER NODES names no myself".to_owned()),
                    }
                }
                Err(e) => node.error = Some(e.clone()),
            }
            node
        })
        .collect();
    Ok(super::Status {
        name: state.name.clone(),
        dir: layout.dir.display().to_string(),
        url: cluster_role_url(layout, &state, Role::App),
        credentials_dir: layout.credentials_dir().display().to_string(),
        supervisor_pid: state.supervisor_pid,
        primary: None,
        nodes,
        sentinels: Vec::new(),
        jobs: state.jobs.clone(),
        rollout: None,
        tls: state.tls.then(|| {
            let expires = super::tls::server_not_after(layout);
            super::TlsStatus {
                ca_file: layout.tls_ca_file().display().to_string(),
                server_certificate_expires: expires.as_ref().ok().map(|at| at.to_rfc3339()),
                error: expires.err().map(|e| e.to_string()),
            }
        }),
        slots_covered: Some(covered.len()),
        api: super::api::api_url(&state),
    })
}

//! `abstore-demo`: runs a local HA Redis (one primary, two replicas, three sentinels on loopback)
//! and records and reads an A/B experiment through the `abstore` library. The README's "run"
//! command until `abstore-operator local up` exists.

use std::time::{Duration, Instant};

use abstore::assignment::{WeightedVariation, assign, assignment_point};
use abstore::connection::Connection;
use abstore::counters::{Event, Outcome, Recorder, RecorderConfig};
use abstore::keys::Granularity;
use abstore::reads::{Metric, Reader};
use abstore_tests::{Topology, TopologyOptions, wait_for_failover};
use anyhow::{Context, bail};
use clap::Parser;

const FLAG: &str = "checkout-button";
const GOAL: &str = "purchase";
const DAY: i64 = 86_400;

#[derive(Debug, Parser)]
#[command(
    about = "Run a local ABStore (Redis primary, 2 replicas, 3 sentinels) and record an A/B experiment"
)]
struct Args {
    /// Evaluation events to record (spread over the last three days).
    #[arg(long, env = "ABSTORE_DEMO_EVENTS", default_value_t = 20_000)]
    events: u32,
    /// Also kill -9 the primary mid-way and show the client following Sentinel's failover.
    #[arg(long, env = "ABSTORE_DEMO_FAILOVER")]
    failover: bool,
    /// Exit when done instead of keeping the servers up until Ctrl-C.
    #[arg(long, env = "ABSTORE_DEMO_EXIT")]
    exit: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    abstore::crypto::install_default_provider();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let args = Args::parse();

    println!("starting redis-server x3 and redis-sentinel x3 on loopback …");
    let mut topology = Topology::start(TopologyOptions::default())
        .await
        .context("starting the local Redis + Sentinel topology")?;
    let url = topology.sentinel_url();
    let primary = topology.current_primary().await?;
    println!("primary {}:{}; connect with {url}", primary.0, primary.1);

    let conn = Connection::open(&url).await?;
    let recorder = Recorder::new(conn.clone(), RecorderConfig::default())?;
    let variations = vec![
        WeightedVariation {
            id: "control".into(),
            weight: 50,
        },
        WeightedVariation {
            id: "treatment".into(),
            weight: 50,
        },
    ];

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let first_day = now / DAY * DAY - 2 * DAY;
    let started = Instant::now();
    let mut counted = 0u64;
    let batch_size = 500u32;
    let mut failed_over = !args.failover;
    for batch_start in (0..args.events).step_by(batch_size as usize) {
        if !failed_over && batch_start >= args.events / 2 {
            failed_over = true;
            let old = topology.current_primary().await?;
            println!("kill -9 primary {}:{} …", old.0, old.1);
            let killed = Instant::now();
            if let Some(node) = topology.node_by_port(old.1) {
                node.kill9()?;
            }
            let new = wait_for_failover(
                &topology.sentinels[0],
                &topology.master_name,
                (&old.0, old.1),
                Duration::from_secs(30),
            )
            .await?;
            println!(
                "sentinel promoted {}:{} after {} ms; the client follows by itself",
                new.0,
                new.1,
                killed.elapsed().as_millis()
            );
        }
        let events: Vec<Event> = (batch_start..(batch_start + batch_size).min(args.events))
            .flat_map(|i| demo_events(i, first_day, &variations))
            .collect();
        let result = recorder.record_batch(&events).await?;
        for outcome in result.outcomes {
            if outcome? == Outcome::Counted {
                counted += 1;
            }
        }
    }
    println!(
        "recorded {counted} events in {} ms",
        started.elapsed().as_millis()
    );

    let reader = Reader::new(conn, None, Granularity::Hour);
    let ids = ["control", "treatment"];
    let series = reader
        .days(
            &Metric::Evaluations,
            FLAG,
            &ids,
            first_day,
            first_day + 2 * DAY,
        )
        .await?;
    println!("\n{FLAG}: evaluations per day (count / unique users)");
    println!("{:<12} {:>20} {:>20}", "day", "control", "treatment");
    for point in &series.points {
        let day = chrono_day(point.start);
        let c = point.variations.get("control").copied().unwrap_or_default();
        let t = point
            .variations
            .get("treatment")
            .copied()
            .unwrap_or_default();
        println!(
            "{day:<12} {:>20} {:>20}",
            format!("{} / {}", c.count, c.users),
            format!("{} / {}", t.count, t.users)
        );
    }
    let conversion = reader
        .conversion(FLAG, GOAL, &ids, first_day, first_day + 2 * DAY)
        .await?;
    println!("\nconversion to {GOAL:?} over the three days");
    for (variation, c) in &conversion {
        println!(
            "{variation:<10} {} of {} users converted ({:.1}%), {} purchases",
            c.goal_users,
            c.evaluation_users,
            c.rate.unwrap_or(0.0) * 100.0,
            c.goal_count
        );
    }
    if counted == 0 {
        bail!("no event was counted");
    }

    if args.exit {
        return Ok(());
    }
    println!(
        "\nservers stay up until Ctrl-C; try: redis-cli -p {} SENTINEL MASTERS",
        topology.sentinels[0].port()
    );
    tokio::signal::ctrl_c().await?;
    println!("stopping");
    Ok(())
}

/// Event `i` of the demo: a user evaluated once, and converting with a rate that depends on the
/// variation (treatment converts better). Deterministic, so every run shows the same numbers.
fn demo_events(i: u32, first_day: i64, variations: &[WeightedVariation]) -> Vec<Event> {
    let user = format!("user-{}", i % 5000);
    let variation = assign(FLAG, &user, variations)
        .map(|v| v.id.clone())
        .unwrap_or_else(|_| "control".into());
    let spread = assignment_point("time", &i.to_string()) % (3 * DAY as u64);
    let at = first_day + i64::try_from(spread).unwrap_or(0);
    let mut events =
        vec![Event::evaluation(FLAG, &variation, &user, at).with_event_id(format!("eval-{i}"))];
    let roll = assignment_point("convert", &format!("{i}")) % 100;
    let threshold = if variation == "treatment" { 12 } else { 8 };
    if roll < threshold {
        events.push(
            Event::goal(FLAG, GOAL, &variation, &user, at).with_event_id(format!("goal-{i}")),
        );
    }
    events
}

fn chrono_day(start: i64) -> String {
    chrono::DateTime::from_timestamp(start, 0)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| start.to_string())
}

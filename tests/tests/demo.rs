//! The README's run command ends in `abstore-demo`; this runs the real binary the same way
//! (with `--exit` so it stops) and checks what it shows a newcomer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

#[test]
fn the_demo_records_an_experiment_follows_a_failover_and_prints_conversion() {
    let out = Command::new(env!("CARGO_BIN_EXE_abstore-demo"))
        .args(["--events", "3000", "--failover", "--exit"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("kill -9 primary"), "{stdout}");
    assert!(stdout.contains("sentinel promoted"), "{stdout}");
    // Every evaluation has an id and is recorded once; goal events come on top.
    let recorded: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("recorded "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("a 'recorded N events' line");
    assert!(recorded > 3000, "{stdout}");
    for variation in ["control", "treatment"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(variation) && l.contains("users converted")),
            "no conversion line for {variation}:\n{stdout}"
        );
    }
}

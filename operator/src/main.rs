//! `abstore-operator`: the controller (`run`), the CRD (`crd`) and offline rendering (`render`).

use anyhow::Context;
use clap::{Parser, Subcommand};
use kube::CustomResourceExt;

use abstore_operator::crd::ABStore;

#[derive(Debug, Parser)]
#[command(name = "abstore-operator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the ABStore CustomResourceDefinition as YAML.
    Crd,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => {
            let yaml = serde_yaml::to_string(&ABStore::crd()).context("serialising the CRD")?;
            print!("{yaml}");
        }
    }
    Ok(())
}

//! `abstore-operator`: the controller (`run`), the CRD (`crd`), offline rendering (`render`) and
//! the local topology (`local up | status | down`).

use anyhow::Context;
use clap::{Parser, Subcommand};

mod local_cli;
mod run;

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
    /// Run the controller: reconcile ABStores until SIGTERM / Ctrl-C.
    Run(run::RunArgs),
    /// Print every object the controller would apply for the ABStores in a file, as
    /// multi-document YAML in apply order (Secrets without their values unless
    /// --show-secrets, which prints freshly generated passwords).
    Render(RenderArgs),
    /// Run the same topology as local processes on loopback, no cluster needed.
    #[command(subcommand)]
    Local(local_cli::LocalCommand),
}

#[derive(Debug, clap::Args)]
struct RenderArgs {
    /// File with one or more ABStore documents; `-` reads standard input.
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    file: std::path::PathBuf,
    /// Namespace of stores whose documents name none; must match those that do.
    #[arg(short = 'n', long, env = "ABSTORE_NAMESPACE", value_name = "NAMESPACE")]
    namespace: Option<String>,
    /// Print the Secrets' values (freshly generated passwords and the ACL files). Without it
    /// Secrets are printed without `data` (names and keys only): safe to review, and applying
    /// them never overwrites a password.
    #[arg(long, env = "ABSTORE_RENDER_SHOW_SECRETS")]
    show_secrets: bool,
    #[command(flatten)]
    platform: run::PlatformArgs,
}

fn render(args: &RenderArgs) -> anyhow::Result<()> {
    let input = if args.file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading ABStore YAML from stdin")?
    } else {
        std::fs::read_to_string(&args.file)
            .with_context(|| format!("reading {}", args.file.display()))?
    };
    let source = if args.file.as_os_str() == "-" {
        "stdin".to_owned()
    } else {
        args.file.display().to_string()
    };
    let secrets = if args.show_secrets {
        abstore_operator::render::SecretValues::Shown
    } else {
        abstore_operator::render::SecretValues::Redacted
    };
    let platform = args
        .platform
        .platform(None)
        .context("--cluster-domain / --operator-namespace")?;
    let yaml =
        abstore_operator::render::render_on(&input, args.namespace.as_deref(), secrets, &platform)
            .with_context(|| format!("rendering {source}"))?;
    print!("{yaml}");
    Ok(())
}

fn main() -> anyhow::Result<()> {
    // Two rustls backends are compiled in: without this the first TLS request panics.
    abstore::crypto::install_default_provider();
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => {
            let yaml = abstore_operator::yaml::to_yaml(&abstore_operator::rules::crd())
                .context("serialising the CRD")?;
            print!("{yaml}");
        }
        Command::Run(args) => run::run(args)?,
        Command::Render(args) => render(&args)?,
        Command::Local(command) => local_cli::run(command)?,
    }
    Ok(())
}

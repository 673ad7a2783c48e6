//! `dsr`: the one binary. Each subcommand lives in `commands/`; this file only parses the
//! command line, sets up logging, and turns errors into a message and an exit code.

mod commands;

/// mimalloc instead of glibc's malloc: under load `dsr up` allocates and frees small buffers
/// (records, keys, sealed values) on every stage, and glibc's allocator took a fifth of its CPU
/// (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};

/// dsr — the event-streaming dynamic social registry.
///
/// Source systems publish life events (births, deaths, moves, income changes, shocks); dsr keeps
/// every household's record and need score current and tells programs who entered, changed or
/// left their eligibility.
#[derive(Parser)]
#[command(name = "dsr", version, about, long_about)]
struct Cli {
    /// Log filter (tracing syntax), e.g. `info`, `dsr=debug`. Logs never contain personal data.
    #[arg(long, env = "DSR_LOG", default_value = "warn", global = true)]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole registry on this machine: embedded log, router, processor, serving store,
    /// HTTP API and schema registry, with data in one directory (no Kafka, no database).
    Up(commands::up::Up),
    /// `dsr up` with a generated country streaming life events into it, and live counts.
    Demo(commands::demo::DemoArgs),
    /// Check and document the Avro event contracts in `schemas/`.
    #[command(subcommand)]
    Schemas(commands::schemas::Schemas),
    /// Generate a synthetic population and a year of life events (deterministic from a seed).
    Generate(commands::generate::Generate),
    /// Score one household with the need-score model and explain the score.
    Score(commands::score::Score),
    /// Check program definition files (rules, benefit formulas, allowed fields).
    #[command(subcommand)]
    Programs(commands::programs::Programs),
    /// Create and check the Kafka topics declared in `topics/`.
    #[command(subcommand)]
    Topics(commands::topics::Topics),
    /// Run the household processor on a Kafka cluster.
    Process(commands::process::Process),
    /// Deliver eligibility changes and life events to the programs' webhooks from Kafka.
    #[command(subcommand)]
    Deliver(commands::deliver::Deliver),
    /// Run the router: source topics → validated events keyed by household.
    Route(commands::route::Route),
    /// Publish life events from a JSON-lines file to a topic, as Avro in wire format.
    Publish(commands::publish::Publish),
    /// Show a topic's records decoded to JSON lines (for debugging; shows personal data).
    Tail(commands::tail::Tail),
    /// Register clients and manage their API keys (through a running registry, as an admin).
    #[command(subcommand)]
    Keys(commands::keys::Keys),
    /// Check the audit log's hash chain and seals.
    #[command(subcommand)]
    Audit(commands::audit::Audit),
    /// Maintain a stopped registry's embedded log (compaction and retention, now).
    #[command(subcommand)]
    Log(commands::log::LogCommand),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&cli.log)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Up(c) => c.run(),
        Command::Demo(c) => c.run(),
        Command::Schemas(c) => c.run(),
        Command::Generate(c) => c.run(),
        Command::Score(c) => c.run(),
        Command::Programs(c) => c.run(),
        Command::Topics(c) => c.run(),
        Command::Process(c) => c.run(),
        Command::Deliver(c) => c.run(),
        Command::Publish(c) => c.run(),
        Command::Route(c) => c.run(),
        Command::Tail(c) => c.run(),
        Command::Keys(c) => c.run(),
        Command::Audit(c) => c.run(),
        Command::Log(c) => c.run(),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

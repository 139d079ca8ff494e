//! The commands of `rse`, their flags, and how each ends as an exit code.

/// Says what went wrong on stderr, as a plain line or a JSON log line (see `logging::fail`).
macro_rules! fail {
    ($($arg:tt)*) => { crate::cmd::logging::fail(&format!($($arg)*)) };
}

mod exit;
mod inspect;
mod logging;
mod operate;
mod progress;
mod run;
mod signals;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use rse_cli::config::ConfigFile;

pub use exit::Exit;
use logging::LogFormat;

const ABOUT: &str = "Runs the syncs a TOML file describes: reads each model, works out what changed since the \
                     destination last acknowledged it, and sends exactly that.";

/// The `rse` command line.
#[derive(Debug, Parser)]
#[command(name = "rse", version, about = ABOUT, after_help = exit::TABLE, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Flags every command takes.
#[derive(Debug, Args)]
struct Global {
    /// The configuration file.
    #[arg(long, short = 'c', global = true, env = "RSE_CONFIG", default_value = "rse.toml", value_name = "PATH")]
    config: PathBuf,
    /// Log line format on stderr: `auto` is text on a terminal and JSON otherwise.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Auto, value_name = "FORMAT")]
    log_format: LogFormat,
    /// Log level (`error`, `warn`, `info`, `debug`, `trace`) or directives such as
    /// `info,rse_core=debug`.
    #[arg(long, global = true, env = "RSE_LOG", value_name = "LEVEL")]
    log_level: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the named syncs (every sync of the file when none is named), one after another.
    ///
    /// SIGINT or SIGTERM stops the run gracefully: nothing more is read or sent, the writes in
    /// flight finish and what they acknowledged is committed, and the lease is released; a
    /// second signal exits at once. A second `rse run` of a sync that is running exits at
    /// once with code 6.
    #[command(after_help = exit::TABLE)]
    Run(run::RunArgs),
    /// Checks the connectivity and credentials of every part of the syncs (source,
    /// destination, state store) without writing anything; one OK or FAILED line per part.
    #[command(after_help = "Exit codes: 0 every part answered; 1 a part failed; 2 configuration error.")]
    Check(run::CheckArgs),
    /// Plans the syncs without sending or committing anything: the inserts, updates and
    /// deletes a run would send, and the deletes the delete guard would withhold.
    #[command(after_help = "Exit codes, as the run would give them: 0 planned; 1 the plan could not be made; \
                            2 configuration error; 3 rows would be refused; 5 unauthorized; 6 another run \
                            holds the sync; 7 schema drift; 8 the delete guard would withhold deletes.")]
    Plan(run::PlanArgs),
    /// The last run and the pause of every sync, from the state store.
    Status(inspect::StatusArgs),
    /// The latest runs of a sync (of every sync when none is named), newest first.
    History(inspect::HistoryArgs),
    /// The records a sync's destination or transforms refused, with reasons: keys appear
    /// hashed, values never.
    Rejections(inspect::RejectionsArgs),
    /// Pauses a sync: its runs return at once until it is resumed; a run in flight stops at
    /// its next batch boundary.
    Pause(operate::PauseArgs),
    /// Lifts a sync's pause.
    Resume(operate::ResumeArgs),
    /// Runs a sync once as a full resync: every record is sent again and the sync's snapshot
    /// rebuilt (nothing is deleted). A full resync that is interrupted is finished by the
    /// next `rse run`. Asks for confirmation (`--yes` on a non-interactive stdin).
    #[command(after_help = exit::TABLE)]
    Reset(operate::ResetArgs),
    /// Writes a commented example configuration (the quickstart's SQLite files).
    Init(operate::InitArgs),
}

/// Parses the command line, runs the command and returns its exit code.
pub fn main() -> std::process::ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { Exit::USAGE } else { Exit::SUCCESS };
            let _ = e.print();
            return code.into();
        }
    };
    if let Err(message) = logging::init(cli.global.log_format, cli.global.log_level.as_deref()) {
        fail!("{message}");
        return Exit::USAGE.into();
    }
    if let Command::Init(args) = &cli.command {
        return operate::init(args).into();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            fail!("could not start the async runtime: {e}");
            return Exit::FAILED.into();
        }
    };
    let exit = runtime.block_on(dispatch(cli));
    // A connection's background task must not hold the process after the command is done.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    exit.into()
}

async fn dispatch(cli: Cli) -> Exit {
    let config = match ConfigFile::load(&cli.global.config) {
        Ok(config) => config,
        Err(e) => {
            fail!("{e}");
            return Exit::USAGE;
        }
    };
    let json_logs = cli.global.log_format.is_json();
    match cli.command {
        Command::Run(args) => run::run(&config, &args, json_logs).await,
        Command::Check(args) => run::check(&config, &args).await,
        Command::Plan(args) => run::plan(&config, &args).await,
        Command::Status(args) => inspect::status(&config, &args).await,
        Command::History(args) => inspect::history(&config, &args).await,
        Command::Rejections(args) => inspect::rejections(&config, &args).await,
        Command::Pause(args) => operate::pause(&config, &args).await,
        Command::Resume(args) => operate::resume(&config, &args).await,
        Command::Reset(args) => operate::reset(&config, &args, json_logs).await,
        Command::Init(_) => Exit::USAGE,
    }
}

/// The syncs `names` picks from `config` (every one when empty), in the order given; an
/// unknown name is an error naming the syncs the file has.
fn select<'a>(config: &'a ConfigFile, names: &'a [String]) -> Result<Vec<&'a str>, Exit> {
    let known = config.sync_names();
    if names.is_empty() {
        if known.is_empty() {
            fail!("the configuration file describes no sync");
            return Err(Exit::USAGE);
        }
        return Ok(known);
    }
    for name in names {
        if config.sync(name).is_none() {
            fail!("no sync `{name}` in the configuration file; it has: {}", known.join(", "));
            return Err(Exit::USAGE);
        }
    }
    Ok(names.iter().map(String::as_str).collect())
}

/// `ms` since the Unix epoch as an RFC 3339 UTC timestamp to the second.
fn timestamp(ms: u64) -> String {
    let micros = i64::try_from(ms).unwrap_or(i64::MAX / 1000).saturating_mul(1000);
    let text = rse::time::format_timestamp(micros);
    match text.split_once('.') {
        Some((seconds, _)) => format!("{seconds}Z"),
        None => text,
    }
}

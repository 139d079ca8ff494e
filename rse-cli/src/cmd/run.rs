//! `rse run`, `rse plan` and `rse check`: the commands that build the syncs and talk to
//! their sources and destinations.

use std::io::IsTerminal;

use clap::Args;
use rse::partition::Partition;
use rse::{RunStatus, SyncOptions, SyncReport};
use rse_cli::config::ConfigFile;
use tracing::{error, info, warn};

use super::exit::Exit;
use super::signals::{self, Interrupt};
use super::{logging, progress, select};

/// `rse run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The syncs to run, in this order (every sync of the file when none is named).
    #[arg(value_name = "SYNC")]
    syncs: Vec<String>,
    /// No progress bar, even on a terminal (there is none off a terminal or with JSON logs).
    #[arg(long)]
    no_progress: bool,
    /// Print each run's report as one JSON object per line on stdout instead of the summary
    /// (always so with JSON logs, so that every line of the output is JSON).
    #[arg(long)]
    json: bool,
    /// Run partition I of N (counting from 0) of each sync, in this process: its own lease,
    /// state and history under `SYNC#pIofN`; the other partitions run elsewhere. Without the
    /// flag, a Kubernetes Indexed Job's pod runs partition `JOB_COMPLETION_INDEX` of
    /// `RSE_PARTITION_COUNT` when both are set.
    #[arg(long, value_name = "I/N")]
    partition: Option<Partition>,
}

/// `rse plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The syncs to plan (every sync of the file when none is named).
    #[arg(value_name = "SYNC")]
    syncs: Vec<String>,
    /// Print each plan as the dry run's report, one JSON object per line on stdout.
    #[arg(long)]
    json: bool,
}

/// `rse check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The syncs to check (every sync of the file when none is named).
    #[arg(value_name = "SYNC")]
    syncs: Vec<String>,
}

/// How one run is made and shown.
pub struct RunHow {
    /// Changes the sync's options for this run (a full resync, a dry run).
    pub options: fn(&mut SyncOptions),
    /// Draw a progress bar.
    pub progress: bool,
    /// Print the report as JSON.
    pub json: bool,
    /// The partition to run, if the sync is partitioned.
    pub partition: Option<Partition>,
}

/// Whether a progress bar may be drawn: text logs on an interactive terminal.
pub fn progress_wanted(json_logs: bool, disabled: bool) -> bool {
    !json_logs && !disabled && std::io::stderr().is_terminal()
}

pub async fn run(config: &ConfigFile, args: &RunArgs, json_logs: bool) -> Exit {
    let names = match select(config, &args.syncs) {
        Ok(names) => names,
        Err(exit) => return exit,
    };
    let interrupt = match signals::listen() {
        Ok(interrupt) => interrupt,
        Err(e) => {
            fail!("could not listen for signals: {e}");
            return Exit::FAILED;
        }
    };
    let partition = match args.partition {
        Some(partition) => Some(partition),
        None => match Partition::from_env() {
            Ok(partition) => partition,
            Err(e) => {
                fail!("{e}");
                return Exit::USAGE;
            }
        },
    };
    let how = RunHow {
        options: |_| {},
        progress: progress_wanted(json_logs, args.no_progress),
        json: args.json || json_logs,
        partition,
    };
    let mut exit = Exit::SUCCESS;
    for name in names {
        if let Some(code) = interrupt.exit() {
            info!(sync = name, "Not started: interrupted.");
            return exit.worst(code);
        }
        exit = exit.worst(run_one(config, name, &interrupt, &how).await);
    }
    exit
}

/// Builds and runs the sync `name` once; its exit code.
pub async fn run_one(config: &ConfigFile, name: &str, interrupt: &Interrupt, how: &RunHow) -> Exit {
    let Some(spec) = config.sync(name) else {
        fail!("no sync `{name}` in the configuration file");
        return Exit::USAGE;
    };
    let built = match spec.build_partition(how.partition, how.options).await {
        Ok(built) => built,
        Err(e) => {
            fail!("{e}");
            return Exit::USAGE;
        }
    };
    let bar = if how.progress {
        // The last run's record count is the bar's length: the model rarely changes size
        // much from one run to the next.
        let expected = built.state.runs(&built.id, 1).await.ok().and_then(|runs| runs.first().map(|r| r.counts.read));
        Some(progress::follow(&built.job, expected))
    } else {
        None
    };
    let result = built.job.run_with_cancel(interrupt.cancel.clone()).await;
    if let Some(bar) = bar {
        bar.finish().await;
    }
    match result {
        Ok(report) => {
            show(&report, how.json);
            let exit = match (&report.status, interrupt.exit()) {
                (RunStatus::Cancelled, Some(code)) => code,
                (status, _) => Exit::of_status(status),
            };
            let (sync, run, status) = (name, report.run_id, report.status.label());
            match exit {
                Exit::SUCCESS => info!(sync, run, status, exit_code = exit.0, "Run finished."),
                Exit::REJECTIONS | Exit::DELETES_WITHHELD | Exit::SIGINT | Exit::SIGTERM => {
                    warn!(sync, run, status, exit_code = exit.0, "Run finished.")
                }
                _ => error!(sync, run, status, exit_code = exit.0, "Run finished."),
            }
            exit
        }
        Err(e) => {
            let exit = Exit::of_error(&e);
            if logging::is_json() {
                error!(sync = name, error = %e, exit_code = exit.0, "Run failed.");
            } else {
                fail!("{e}");
            }
            exit
        }
    }
}

fn show(report: &SyncReport, json: bool) {
    if json {
        match serde_json::to_string(report) {
            Ok(line) => println!("{line}"),
            Err(e) => fail!("the report of sync `{}` could not be written as JSON: {e}", report.sync_id),
        }
    } else if let RunStatus::Paused { by, reason } = &report.status
        && report.run_id == 0
    {
        println!(
            "sync `{}` is paused by {by} ({reason}): skipped; `rse resume {}` lifts it",
            report.sync_id, report.sync_id
        );
    } else {
        println!("{report}");
    }
}

pub async fn plan(config: &ConfigFile, args: &PlanArgs) -> Exit {
    let names = match select(config, &args.syncs) {
        Ok(names) => names,
        Err(exit) => return exit,
    };
    let mut exit = Exit::SUCCESS;
    for name in names {
        exit = exit.worst(plan_one(config, name, args.json).await);
    }
    exit
}

async fn plan_one(config: &ConfigFile, name: &str, json: bool) -> Exit {
    let Some(spec) = config.sync(name) else {
        return Exit::USAGE;
    };
    let built = match spec.build_with(|o| o.dry_run = true).await {
        Ok(built) => built,
        Err(e) => {
            fail!("{e}");
            return Exit::USAGE;
        }
    };
    let report = match built.job.run().await {
        Ok(report) => report,
        Err(e) => {
            fail!("{e}");
            return Exit::of_error(&e);
        }
    };
    if json {
        show(&report, true);
    } else {
        let c = &report.counts;
        println!(
            "sync `{name}` ({}): would insert {}, update {}, delete {}, append {}; {} unchanged, {} refused",
            report.mode,
            c.planned.insert,
            c.planned.update,
            c.planned.delete,
            c.planned.append,
            c.unchanged,
            c.transform_rejected + c.invalid + c.source_rejected
        );
        if c.withheld > 0 {
            println!(
                "  the delete guard would withhold {} deletes: {}",
                c.withheld,
                report.withheld_reason.as_deref().unwrap_or("")
            );
        }
        if let Some(drift) = &report.schema_drift {
            println!("  schema drift: {drift}");
        }
    }
    // The code the run would exit with: a script can stop before a run whose deletes the
    // guard would withhold (8) or whose rows would be refused (3).
    Exit::of_status(&report.status)
}

pub async fn check(config: &ConfigFile, args: &CheckArgs) -> Exit {
    let names = match select(config, &args.syncs) {
        Ok(names) => names,
        Err(exit) => return exit,
    };
    let mut exit = Exit::SUCCESS;
    for name in names {
        let Some(spec) = config.sync(name) else {
            return Exit::USAGE;
        };
        let built = match spec.build().await {
            Ok(built) => built,
            Err(e) => {
                println!("{name}  configuration  FAILED  {e}");
                exit = exit.worst(Exit::USAGE);
                continue;
            }
        };
        for outcome in built.check().await {
            match &outcome.result {
                Ok(()) => println!("{name}  {} {}  OK", outcome.part, outcome.name),
                Err(e) => {
                    println!("{name}  {} {}  FAILED  {e}", outcome.part, outcome.name);
                    exit = exit.worst(Exit::FAILED);
                }
            }
        }
    }
    exit
}

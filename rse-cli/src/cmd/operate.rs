//! `rse pause`, `rse resume`, `rse reset` and `rse init`: the commands that change a sync's
//! standing or write a file.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use clap::Args;
use rse::Pause;
use rse_cli::config::ConfigFile;

use super::exit::Exit;
use super::inspect::store;
use super::run::{RunHow, progress_wanted, run_one};
use super::{signals, timestamp};

/// `rse pause`.
#[derive(Debug, Args)]
pub struct PauseArgs {
    /// The sync.
    #[arg(value_name = "SYNC")]
    sync: String,
    /// Why, for whoever finds the sync paused.
    #[arg(long)]
    reason: String,
    /// Who pauses (a person, a team, a system); `$USER@host` by default.
    #[arg(long)]
    by: Option<String>,
}

/// `rse resume`.
#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// The sync.
    #[arg(value_name = "SYNC")]
    sync: String,
}

/// `rse reset`.
#[derive(Debug, Args)]
pub struct ResetArgs {
    /// The sync.
    #[arg(value_name = "SYNC")]
    sync: String,
    /// Do not ask for confirmation (required when stdin is not a terminal).
    #[arg(long, short = 'y')]
    yes: bool,
    /// No progress bar, even on a terminal.
    #[arg(long)]
    no_progress: bool,
}

/// `rse init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Where to write the example.
    #[arg(value_name = "PATH", default_value = "rse.toml")]
    path: PathBuf,
    /// Overwrite the file if it exists.
    #[arg(long)]
    force: bool,
}

fn who() -> String {
    let user = std::env::var("USER").or_else(|_| std::env::var("USERNAME")).unwrap_or_else(|_| "rse".into());
    match std::env::var("HOSTNAME") {
        Ok(host) if !host.is_empty() => format!("{user}@{host}"),
        _ => user,
    }
}

pub async fn pause(config: &ConfigFile, args: &PauseArgs) -> Exit {
    let by = args.by.clone().unwrap_or_else(who);
    if by.trim().is_empty() {
        fail!("--by is blank; name who pauses the sync, so that whoever finds it paused knows whom to ask");
        return Exit::USAGE;
    }
    let name = args.sync.as_str();
    let (state, id) = match store(config, name).await {
        Ok(found) => found,
        Err(exit) => return exit,
    };
    match state.pause(&id, &Pause::new(by.trim(), &args.reason)).await {
        Ok(pause) => {
            if pause.by == by.trim() && pause.reason == args.reason {
                println!("sync `{name}` paused by {} since {}: {}", pause.by, timestamp(pause.at_ms), pause.reason);
            } else {
                println!(
                    "sync `{name}` was already paused by {} since {}: {} (that pause stays)",
                    pause.by,
                    timestamp(pause.at_ms),
                    pause.reason
                );
            }
            Exit::SUCCESS
        }
        Err(e) => {
            fail!("sync `{name}`: {e}");
            Exit::FAILED
        }
    }
}

pub async fn resume(config: &ConfigFile, args: &ResumeArgs) -> Exit {
    let name = args.sync.as_str();
    let (state, id) = match store(config, name).await {
        Ok(found) => found,
        Err(exit) => return exit,
    };
    match state.resume(&id).await {
        Ok(Some(pause)) => {
            println!(
                "sync `{name}` resumed (paused by {} since {}: {})",
                pause.by,
                timestamp(pause.at_ms),
                pause.reason
            );
            Exit::SUCCESS
        }
        Ok(None) => {
            println!("sync `{name}` was not paused");
            Exit::SUCCESS
        }
        Err(e) => {
            fail!("sync `{name}`: {e}");
            Exit::FAILED
        }
    }
}

pub async fn reset(config: &ConfigFile, args: &ResetArgs, json_logs: bool) -> Exit {
    let name = args.sync.as_str();
    if config.sync(name).is_none() {
        fail!("no sync `{name}` in the configuration file; it has: {}", config.sync_names().join(", "));
        return Exit::USAGE;
    }
    if !args.yes {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            fail!("`rse reset {name}` sends every record again; confirm with --yes (stdin is not a terminal)");
            return Exit::USAGE;
        }
        eprint!(
            "This runs sync `{name}` as a full resync: every record is sent to the destination again and the \
             sync's snapshot is rebuilt (nothing is deleted). Continue? [y/N] "
        );
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        if stdin.lock().read_line(&mut answer).is_err() || !matches!(answer.trim(), "y" | "Y" | "yes" | "YES") {
            fail!("not reset");
            return Exit::USAGE;
        }
    }
    let interrupt = match signals::listen() {
        Ok(interrupt) => interrupt,
        Err(e) => {
            fail!("could not listen for signals: {e}");
            return Exit::FAILED;
        }
    };
    let how = RunHow {
        options: |o| o.full_resync = true,
        progress: progress_wanted(json_logs, args.no_progress),
        json: json_logs,
        partition: None,
    };
    run_one(config, name, &interrupt, &how).await
}

pub fn init(args: &InitArgs) -> Exit {
    if args.path.exists() && !args.force {
        fail!("{} exists; pass --force to overwrite it", args.path.display());
        return Exit::USAGE;
    }
    match std::fs::write(&args.path, rse_cli::init::example()) {
        Ok(()) => {
            println!("wrote {}; `rse check --config {}` tries it", args.path.display(), args.path.display());
            Exit::SUCCESS
        }
        Err(e) => {
            fail!("could not write {}: {e}", args.path.display());
            Exit::FAILED
        }
    }
}

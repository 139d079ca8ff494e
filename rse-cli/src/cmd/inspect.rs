//! `rse status`, `rse history` and `rse rejections`: what the state store holds, read
//! without building sources or destinations.

use std::sync::Arc;

use clap::Args;
use rse::{Key, RejectedEntry, StateStore, SyncReport};
use rse_cli::config::ConfigFile;
use serde::Serialize;
use serde_json::json;

use super::exit::Exit;
use super::{select, timestamp};

/// `rse status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The syncs to show (every sync of the file when none is named).
    #[arg(value_name = "SYNC")]
    syncs: Vec<String>,
    /// Each of the N partitions of a sync run with `--partition I/N`, as its own line.
    #[arg(long, value_name = "N")]
    partitions: Option<u32>,
    /// One JSON object per sync, in an array, on stdout.
    #[arg(long)]
    json: bool,
}

/// `rse history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The sync (every sync of the file when none is named).
    #[arg(value_name = "SYNC")]
    sync: Option<String>,
    /// How many runs per sync, newest first.
    #[arg(long, default_value_t = 10, value_name = "N")]
    limit: usize,
    /// The runs of each of the N partitions of a sync run with `--partition I/N`.
    #[arg(long, value_name = "N")]
    partitions: Option<u32>,
    /// The runs' full reports as a JSON array on stdout.
    #[arg(long)]
    json: bool,
}

/// `rse rejections`.
#[derive(Debug, Args)]
pub struct RejectionsArgs {
    /// The sync.
    #[arg(value_name = "SYNC")]
    sync: String,
    /// The most rejections shown, in key order.
    #[arg(long, default_value_t = 100, value_name = "N")]
    limit: usize,
    /// A JSON array on stdout.
    #[arg(long)]
    json: bool,
}

/// The state store of the sync `name` and the id its state is kept under, or the exit code
/// after saying why not.
pub async fn store(config: &ConfigFile, name: &str) -> Result<(Arc<dyn StateStore>, String), Exit> {
    let spec = config.require_sync(name).map_err(|e| {
        fail!("{e}");
        Exit::USAGE
    })?;
    let state = spec.state_store().await.map_err(|e| {
        fail!("{e}");
        Exit::USAGE
    })?;
    Ok((state, spec.id().to_owned()))
}

/// The state store of the sync `name` and the ids its state is kept under, each with the
/// name shown for it: the sync's own, or with `partitions` its partitions' (`crm#p0of4` …);
/// or the exit code after saying why not.
async fn state_ids(
    config: &ConfigFile,
    name: &str,
    partitions: Option<u32>,
) -> Result<(Arc<dyn StateStore>, Vec<(String, String)>), Exit> {
    let (state, id) = store(config, name).await?;
    let Some(count) = partitions else { return Ok((state, vec![(id, name.to_owned())])) };
    let ids = (0..count.max(1))
        .map(|i| {
            let partition = rse::partition::Partition::new(i, count).map_err(|e| {
                fail!("--partitions {count}: {e}");
                Exit::USAGE
            })?;
            Ok((partition.sync_id(&id), partition.sync_id(name)))
        })
        .collect::<Result<_, Exit>>()?;
    Ok((state, ids))
}

fn state_failed(name: &str, e: &rse::StateError) -> Exit {
    fail!("sync `{name}`: {e}");
    Exit::FAILED
}

/// A line of `rse status`.
#[derive(Serialize)]
struct SyncStatus {
    sync: String,
    paused: Option<rse::Pause>,
    last_run: Option<SyncReport>,
}

pub async fn status(config: &ConfigFile, args: &StatusArgs) -> Exit {
    let names = match select(config, &args.syncs) {
        Ok(names) => names,
        Err(exit) => return exit,
    };
    let mut lines = Vec::new();
    for name in names {
        let (state, ids) = match state_ids(config, name, args.partitions).await {
            Ok(found) => found,
            Err(exit) => return exit,
        };
        for (id, shown) in ids {
            let paused = match state.paused(&id).await {
                Ok(paused) => paused,
                Err(e) => return state_failed(name, &e),
            };
            let last_run = match state.runs(&id, 1).await {
                Ok(mut runs) => runs.drain(..).next(),
                Err(e) => return state_failed(name, &e),
            };
            lines.push(SyncStatus { sync: shown, paused, last_run });
        }
    }
    if args.json {
        return print_json(&lines);
    }
    let mut table = vec![row(["SYNC", "STATE", "LAST RUN", "STARTED", "TOOK", "READ", "APPLIED", "REFUSED", "STATUS"])];
    for line in &lines {
        let state = match &line.paused {
            Some(p) => format!("paused since {} by {}: {}", timestamp(p.at_ms), p.by, p.reason),
            None => "active".to_owned(),
        };
        match &line.last_run {
            Some(r) => table.push(vec![
                line.sync.clone(),
                state,
                r.run_id.to_string(),
                timestamp(r.started_at_ms),
                format!("{:.1?}", r.stages.total),
                r.counts.read.to_string(),
                r.counts.applied.total().to_string(),
                refused(r).to_string(),
                r.status.to_string(),
            ]),
            None => table.push(vec![line.sync.clone(), state, "-".into(), "never run".into()]),
        }
    }
    print_table(&table);
    Exit::SUCCESS
}

pub async fn history(config: &ConfigFile, args: &HistoryArgs) -> Exit {
    let names: Vec<String> = match &args.sync {
        Some(name) => vec![name.clone()],
        None => config.sync_names().into_iter().map(str::to_owned).collect(),
    };
    let mut all = Vec::new();
    for name in &names {
        let (state, ids) = match state_ids(config, name, args.partitions).await {
            Ok(found) => found,
            Err(exit) => return exit,
        };
        for (id, _) in ids {
            match state.runs(&id, args.limit).await {
                Ok(runs) => all.extend(runs),
                Err(e) => return state_failed(name, &e),
            }
        }
    }
    if args.json {
        return print_json(&all);
    }
    let mut table = vec![row([
        "SYNC",
        "RUN",
        "STARTED",
        "TOOK",
        "READ",
        "INSERT",
        "UPDATE",
        "DELETE",
        "UNCHANGED",
        "REFUSED",
        "STATUS",
    ])];
    for r in &all {
        let applied = &r.counts.applied;
        table.push(vec![
            r.sync_id.clone(),
            format!("{}{}", r.run_id, if r.full_resync { " (full resync)" } else { "" }),
            timestamp(r.started_at_ms),
            format!("{:.1?}", r.stages.total),
            r.counts.read.to_string(),
            applied.insert.to_string(),
            applied.update.to_string(),
            applied.delete.to_string(),
            r.counts.unchanged.to_string(),
            refused(r).to_string(),
            r.status.to_string(),
        ]);
    }
    if all.is_empty() {
        println!("no runs recorded");
    } else {
        print_table(&table);
    }
    Exit::SUCCESS
}

pub async fn rejections(config: &ConfigFile, args: &RejectionsArgs) -> Exit {
    let name = args.sync.as_str();
    let (state, id) = match store(config, name).await {
        Ok(found) => found,
        Err(exit) => return exit,
    };
    let mut entries: Vec<RejectedEntry> = Vec::new();
    let mut after: Option<Key> = None;
    while entries.len() < args.limit {
        let page = match state.rejected(&id, after.as_ref(), (args.limit - entries.len()).min(1_000)).await {
            Ok(page) => page,
            Err(e) => return state_failed(name, &e),
        };
        let Some(last) = page.last() else { break };
        after = Some(last.key.clone());
        entries.extend(page);
    }
    // Keys as their hash, the refused record never: both may be personal data.
    let shown: Vec<_> = entries
        .iter()
        .map(|e| {
            json!({
                "key": e.key.redacted().to_string(),
                "stage": e.stage,
                "op": e.op,
                "attempts": e.attempts,
                "first_rejected_at": timestamp(e.first_rejected_at.saturating_mul(1000)),
                "last_rejected_at": timestamp(e.last_rejected_at.saturating_mul(1000)),
                "reason": e.reason,
            })
        })
        .collect();
    if args.json {
        return print_json(&shown);
    }
    if entries.is_empty() {
        println!("sync `{name}`: no refused records");
        return Exit::SUCCESS;
    }
    let mut table = vec![row(["KEY", "STAGE", "OP", "ATTEMPTS", "LAST REFUSED", "REASON"])];
    for e in &entries {
        table.push(vec![
            e.key.redacted().to_string(),
            format!("{:?}", e.stage).to_lowercase(),
            e.op.map_or_else(|| "-".to_owned(), |op| format!("{op:?}").to_lowercase()),
            e.attempts.to_string(),
            timestamp(e.last_rejected_at.saturating_mul(1000)),
            e.reason.clone(),
        ]);
    }
    print_table(&table);
    Exit::SUCCESS
}

/// Records refused in a run, at every stage.
fn refused(r: &SyncReport) -> u64 {
    let c = &r.counts;
    c.rejected.total() + c.transform_rejected + c.invalid + c.source_rejected
}

fn row<const N: usize>(cells: [&str; N]) -> Vec<String> {
    cells.iter().map(|c| (*c).to_owned()).collect()
}

/// Prints rows in aligned columns (the last one unpadded).
fn print_table(rows: &[Vec<String>]) {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| rows.iter().filter_map(|r| r.get(i)).map(|c| c.chars().count()).max().unwrap_or(0))
        .collect();
    for r in rows {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        println!("{}", line.trim_end());
    }
}

fn print_json<T: Serialize>(value: &T) -> Exit {
    match serde_json::to_string_pretty(value) {
        Ok(text) => {
            println!("{text}");
            Exit::SUCCESS
        }
        Err(e) => {
            fail!("could not write JSON: {e}");
            Exit::FAILED
        }
    }
}

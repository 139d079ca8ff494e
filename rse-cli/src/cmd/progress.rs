//! A progress bar on an interactive terminal, driven by the run's progress events: records
//! read per second and, when an earlier run tells how many records the model has, the ETA.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rse::{ProgressEvent, SyncJob};
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::logging;

/// A progress bar being drawn.
pub struct Bar {
    done: CancellationToken,
    task: JoinHandle<()>,
}

impl Bar {
    /// Clears the bar (the run returned).
    pub async fn finish(self) {
        self.done.cancel();
        let _ = self.task.await;
    }
}

/// Draws the progress of `job`'s next run until it finishes; `expected` is the record count
/// of its last run, the bar's length (a spinner without one).
pub fn follow(job: &SyncJob, expected: Option<u64>) -> Bar {
    let mut events = job.subscribe();
    let sync = job.id().to_owned();
    let done = CancellationToken::new();
    let stop = done.clone();
    let task = tokio::spawn(async move {
        let bar = match expected.filter(|n| *n > 0) {
            Some(total) => ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr_with_hz(4))
                .with_style(style("{prefix} [{bar:30}] {pos}/{len} records read, {per_sec}, ETA {eta} {msg}")),
            None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(4))
                .with_style(style("{spinner} {prefix} {pos} records read, {per_sec} {msg}")),
        };
        bar.set_prefix(sync);
        bar.enable_steady_tick(Duration::from_millis(250));
        logging::set_bar(Some(bar.clone()));
        let (mut applied, mut rejected) = (0u64, 0u64);
        loop {
            let event = tokio::select! {
                event = events.recv() => event,
                () = stop.cancelled() => break,
            };
            match event {
                Ok(ProgressEvent::Started { run_id }) => bar.set_message(format!("(run {run_id})")),
                Ok(ProgressEvent::Read { records }) => {
                    if bar.length().is_some_and(|len| records > len) {
                        bar.set_length(records);
                    }
                    bar.set_position(records);
                }
                Ok(ProgressEvent::BatchCommitted { applied: a, rejected: r }) => {
                    applied += a;
                    rejected += r;
                    bar.set_message(format!("{applied} applied, {rejected} refused"));
                }
                Ok(ProgressEvent::Finished { .. }) | Err(RecvError::Closed) => break,
                Ok(_) | Err(RecvError::Lagged(_)) => {}
            }
        }
        logging::set_bar(None);
        bar.finish_and_clear();
    });
    Bar { done, task }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()).progress_chars("=> ")
}

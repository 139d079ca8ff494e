//! Logs on stderr: text on a terminal, one JSON object per line otherwise (a log pipeline
//! reads them), at the level `--log-level` or `RSE_LOG` says.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;

use clap::ValueEnum;
use indicatif::ProgressBar;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::prelude::*;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Text when stderr is a terminal, JSON otherwise.
    Auto,
    /// Human-readable lines.
    Text,
    /// One JSON object per line, with the fields of the spans it was logged in
    /// (`spans[0].run` is the run id).
    Json,
}

impl LogFormat {
    /// Whether lines are JSON once `Auto` is decided.
    pub fn is_json(self) -> bool {
        match self {
            LogFormat::Auto => !std::io::stderr().is_terminal(),
            LogFormat::Text => false,
            LogFormat::Json => true,
        }
    }
}

/// The progress bar being drawn, if any: a log line is written with the bar cleared and
/// drawn again after it, so that the two never mix on the terminal.
static BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Makes `bar` the one log lines make way for (`None` once it is finished).
pub fn set_bar(bar: Option<ProgressBar>) {
    if let Ok(mut slot) = BAR.lock() {
        *slot = bar;
    }
}

/// Stderr, making way for the progress bar.
#[derive(Clone, Copy)]
struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let bar = BAR.lock().ok().and_then(|slot| slot.clone());
        match bar {
            Some(bar) => bar.suspend(|| std::io::stderr().write_all(buf)).map(|()| buf.len()),
            None => std::io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = Stderr;

    fn make_writer(&'a self) -> Self::Writer {
        *self
    }
}

/// Installs the log subscriber. `level` is a level (`debug`) or a list of directives
/// (`info,rse_core=debug`); the drivers' targets that log row values below INFO stay capped
/// at INFO whatever it says.
pub fn init(format: LogFormat, level: Option<&str>) -> Result<(), String> {
    let wanted = level.filter(|l| !l.trim().is_empty()).unwrap_or("info");
    let directives = format!("{wanted},{}", rse::connectors::log_filter::DRIVER_DIRECTIVES);
    let filter = EnvFilter::builder().parse(&directives).map_err(|e| {
        format!("--log-level (or RSE_LOG) `{wanted}` is not a level or a list of `target=level` directives: {e}")
    })?;
    let registry = tracing_subscriber::registry();
    let result = if format.is_json() {
        let layer = tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .with_writer(Stderr);
        registry.with(layer.with_filter(filter)).try_init()
    } else {
        let layer = tracing_subscriber::fmt::layer().with_ansi(std::io::stderr().is_terminal()).with_writer(Stderr);
        registry.with(layer.with_filter(filter)).try_init()
    };
    result.map_err(|e| format!("could not install the logger: {e}"))
}

//! What the end-to-end benches share: a source of generated rows made as they are read, in
//! key order (a million rows never sit in memory at once), and the process's own CPU time
//! and memory read from `/proc`.
#![allow(dead_code)]

use std::sync::Arc;

use futures::StreamExt;
use rse::{
    ReadRequest, Record, RowBatch, RowBatchStream, Schema, Source, SourceCapabilities, SourceError, async_trait,
};

/// `n` rows of `schema`, rows `0..n` made by `row`, in key order.
pub struct Generated {
    pub name: &'static str,
    pub n: i64,
    pub schema: Arc<Schema>,
    pub row: fn(i64) -> Record,
}

#[async_trait]
impl Source for Generated {
    fn name(&self) -> &str {
        self.name
    }

    fn capabilities(&self) -> SourceCapabilities {
        SourceCapabilities::default().with_ordered_by_key(true)
    }

    async fn schema(&self) -> Result<Arc<Schema>, SourceError> {
        Ok(self.schema.clone())
    }

    async fn read(&self, request: ReadRequest) -> Result<RowBatchStream<'_>, SourceError> {
        let size = request.batch_size.max(1) as i64;
        let (n, schema, row) = (self.n, self.schema.clone(), self.row);
        Ok(futures::stream::unfold(0i64, move |next| {
            let schema = schema.clone();
            async move {
                (next < n).then(|| {
                    let end = (next + size).min(n);
                    (Ok(RowBatch::new(schema, (next..end).map(row).collect())), end)
                })
            }
        })
        .boxed())
    }
}

/// A `/proc/self/status` field in kB (`VmHWM:` is the peak resident memory), 0 if unknown.
pub fn status_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The process's CPU time so far (user and system), in seconds.
pub fn cpu_seconds() -> f64 {
    // utime and stime, fields 14 and 15 of /proc/self/stat, in clock ticks (100 per second).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (ticks(11) + ticks(12)) as f64 / 100.0
}

/// The number in environment variable `var`, else `default`.
pub fn env_number(var: &str, default: u64) -> u64 {
    std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

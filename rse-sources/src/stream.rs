//! Batches produced on a blocking thread, handed to the async reader through a bounded channel.
#![cfg_attr(
    not(all(feature = "files", feature = "parquet", feature = "sqlite", feature = "postgres")),
    allow(dead_code)
)]

use futures::StreamExt;
use rse_core::{RowBatch, RowBatchStream, SourceError};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Batches waiting in the channel: the producer stays at most this far ahead of the reader,
/// which bounds memory to a few batches whatever the model's size.
pub(crate) const IN_FLIGHT: usize = 2;

/// The sending side given to a producer.
pub(crate) struct BatchSender(mpsc::Sender<Result<RowBatch, SourceError>>);

impl BatchSender {
    /// Sends a batch, waiting while the channel is full. `false` when the reader has gone
    /// away, so the producer should stop.
    pub(crate) fn send(&self, batch: RowBatch) -> bool {
        self.0.blocking_send(Ok(batch)).is_ok()
    }
}

/// Runs `produce` on the runtime's blocking pool and streams what it sends; an error it
/// returns becomes the stream's last item, and so does a panic (a stream that simply ended
/// would look like a complete read).
///
/// # Errors
/// [`SourceError::Other`] when called outside a Tokio runtime.
pub(crate) fn blocking_stream<F>(what: String, produce: F) -> Result<RowBatchStream<'static>, SourceError>
where
    F: FnOnce(&BatchSender) -> Result<(), SourceError> + Send + 'static,
{
    let runtime = tokio::runtime::Handle::try_current().map_err(|e| SourceError::Other {
        message: format!("{what}: reading needs a Tokio runtime"),
        source: Some(Box::new(e)),
    })?;
    let (tx, rx) = mpsc::channel(IN_FLIGHT);
    let handle = runtime.spawn_blocking(move || {
        let sender = BatchSender(tx);
        if let Err(e) = produce(&sender) {
            // The reader may have gone; nothing else to tell then.
            let _ = sender.0.blocking_send(Err(e));
        }
    });
    Ok(channel_stream(what, rx, handle))
}

/// The stream of a channel fed by `handle`'s task; reports the task's panic, if any.
pub(crate) fn channel_stream(
    what: String,
    rx: mpsc::Receiver<Result<RowBatch, SourceError>>,
    handle: JoinHandle<()>,
) -> RowBatchStream<'static> {
    futures::stream::unfold((rx, Some(handle), what), |(mut rx, handle, what)| async move {
        if let Some(item) = rx.recv().await {
            return Some((item, (rx, handle, what)));
        }
        let handle = handle?;
        match handle.await {
            Ok(()) => None,
            Err(e) => {
                let error = SourceError::Other {
                    message: format!("{what}: the reader stopped unexpectedly"),
                    source: Some(Box::new(e)),
                };
                Some((Err(error), (rx, None, what)))
            }
        }
    })
    .boxed()
}

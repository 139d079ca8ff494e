//! The `Source` trait: where modeled rows are read from.

use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;

use crate::error::SourceError;
use crate::record::RowBatch;
use crate::schema::Schema;
use crate::value::Value;

/// A stream of batches read from a source.
pub type RowBatchStream<'a> = BoxStream<'a, Result<RowBatch, SourceError>>;

/// What a source can do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SourceCapabilities {
    /// It can return records in ascending key order (the order of [`Key`](crate::Key)
    /// bytes), which lets the runner use the merge diff with memory independent of size.
    pub ordered_by_key: bool,
    /// The column whose value only grows when a row changes (e.g. `updated_at`), when the
    /// source can read only the rows at or after a cursor.
    pub cursor_field: Option<String>,
    /// It evaluates filters and projections itself rather than reading everything.
    pub pushdown: bool,
}

impl SourceCapabilities {
    /// Declares that the source can read in key order.
    pub fn with_ordered_by_key(mut self, ordered: bool) -> Self {
        self.ordered_by_key = ordered;
        self
    }

    /// Declares the cursor column for incremental reads.
    pub fn with_cursor_field(mut self, field: impl Into<String>) -> Self {
        self.cursor_field = Some(field.into());
        self
    }
}

/// What a run asks of a source.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ReadRequest {
    /// Read only rows whose cursor column is **at or after** this value (inclusive, so rows
    /// that tie with the last cursor are read again and the diff drops the unchanged ones).
    /// `None` reads everything.
    pub cursor: Option<Value>,
    /// Return records in ascending key order. Only set when the capabilities say so.
    pub order_by_key: bool,
    /// A hint for the number of records per batch.
    pub batch_size: usize,
}

impl ReadRequest {
    /// A full read in any order.
    pub fn full() -> Self {
        Self { cursor: None, order_by_key: false, batch_size: 1024 }
    }

    /// Asks for key order.
    pub fn with_order_by_key(mut self, ordered: bool) -> Self {
        self.order_by_key = ordered;
        self
    }

    /// Reads from this cursor on.
    pub fn with_cursor(mut self, cursor: Option<Value>) -> Self {
        self.cursor = cursor;
        self
    }

    /// Sets the batch size hint.
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size;
        self
    }
}

impl Default for ReadRequest {
    fn default() -> Self {
        Self::full()
    }
}

/// A model in an analytics store: a table, view, query or file, read as batches of records.
///
/// # Contract
/// - [`schema`](Source::schema) describes every batch that [`read`](Source::read) yields,
///   including its key columns when the model declares them.
/// - With [`ReadRequest::order_by_key`], batches come in ascending key order across the
///   whole stream.
/// - With [`ReadRequest::cursor`], every row whose cursor column is at or after the cursor
///   is returned; rows before it may be skipped.
/// - A native type the source cannot map fails with [`SourceError::UnsupportedType`]
///   naming the column; a missing model or column with [`SourceError::NotFound`].
/// - Errors never carry row values.
///
/// # Example
/// A source over rows it already holds (a real one streams pages from its store):
/// ```
/// # use std::sync::Arc;
/// # use async_trait::async_trait;
/// # use rse_core::*;
/// struct Fixed(Arc<Schema>, Vec<Record>);
///
/// #[async_trait]
/// impl Source for Fixed {
///     fn name(&self) -> &str { "fixed" }
///     fn capabilities(&self) -> SourceCapabilities { SourceCapabilities::default() }
///     async fn schema(&self) -> Result<Arc<Schema>, SourceError> { Ok(self.0.clone()) }
///     async fn read(&self, request: ReadRequest) -> Result<RowBatchStream<'_>, SourceError> {
///         let batches: Vec<_> = self.1.chunks(request.batch_size.max(1))
///             .map(|rows| Ok(RowBatch::new(self.0.clone(), rows.to_vec())))
///             .collect();
///         Ok(Box::pin(futures::stream::iter(batches)))
///     }
/// }
/// ```
#[async_trait]
pub trait Source: Send + Sync {
    /// A short name for reports and errors, e.g. `postgres:analytics.customers`.
    fn name(&self) -> &str;

    /// What the source can do.
    fn capabilities(&self) -> SourceCapabilities;

    /// The schema of the records [`read`](Source::read) returns.
    ///
    /// # Errors
    /// [`SourceError::NotFound`] when the model does not exist,
    /// [`SourceError::UnsupportedType`] for a column rse cannot map,
    /// [`SourceError::Unavailable`] when the store cannot be reached.
    async fn schema(&self) -> Result<Arc<Schema>, SourceError>;

    /// Reads the model as a stream of batches.
    ///
    /// # Errors
    /// As for [`schema`](Source::schema), either at once or as an item of the stream;
    /// [`SourceError::Unsupported`] when the request asks for key order the source cannot give.
    async fn read(&self, request: ReadRequest) -> Result<RowBatchStream<'_>, SourceError>;

    /// The pushdown interface, when this source can compare the model with what a sync
    /// delivered in its own store and hand out only what changed (see
    /// [`PushdownSource`](crate::PushdownSource)). `None` (the default) for a source that
    /// cannot; a wrapper source forwards it.
    fn pushdown(&self) -> Option<&dyn crate::pushdown::PushdownSource> {
        None
    }
}

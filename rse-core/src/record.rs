//! Records and batches: rows move through rse in batches that share one schema.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::KeyError;
use crate::key::Key;
use crate::schema::Schema;
use crate::value::Value;

/// The values of one row, in the order of its schema's fields.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Record {
    /// One value per field of the schema.
    pub values: Vec<Value>,
}

impl Record {
    /// A record of these values.
    pub fn new(values: Vec<Value>) -> Self {
        Self { values }
    }

    /// The value at field index `index`.
    pub fn get(&self, index: usize) -> Option<&Value> {
        self.values.get(index)
    }

    /// The value of the field named `name` under `schema`.
    pub fn get_by_name(&self, schema: &Schema, name: &str) -> Option<&Value> {
        schema.index_of(name).and_then(|i| self.values.get(i))
    }

    /// The key of this record under `schema`.
    ///
    /// # Errors
    /// [`KeyError::NullKey`] when a key column is null or missing, naming the column.
    pub fn key(&self, schema: &Schema) -> Result<Key, KeyError> {
        let mut buf = Vec::with_capacity(16);
        self.key_into(schema, &mut buf)?;
        Ok(Key::from_encoded_unchecked(buf))
    }

    /// Encodes the key of this record under `schema` into `buf` (cleared first).
    ///
    /// # Errors
    /// [`KeyError::NullKey`] when a key column is null or missing, naming the column.
    pub fn key_into(&self, schema: &Schema, buf: &mut Vec<u8>) -> Result<(), KeyError> {
        buf.clear();
        for &i in schema.key_indices() {
            match self.values.get(i) {
                None | Some(Value::Null) => {
                    let column = schema.field(i).map(|f| f.name.clone()).unwrap_or_default();
                    return Err(KeyError::NullKey { column });
                }
                Some(v) => crate::key::encode_value(v, buf),
            }
        }
        Ok(())
    }

    /// A rough size of this record once serialised, for batching by bytes.
    pub fn estimated_size(&self) -> usize {
        2 + self.values.iter().map(|v| v.estimated_size() + 8).sum::<usize>()
    }
}

impl From<Vec<Value>> for Record {
    fn from(values: Vec<Value>) -> Self {
        Self { values }
    }
}

/// Many records sharing one schema: the unit in which rows move. (Not `RecordBatch`, which
/// Arrow, beside which rse is often used, names its own columnar batch.)
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RowBatch {
    /// The schema of every record.
    pub schema: Arc<Schema>,
    /// The records.
    pub records: Vec<Record>,
    /// Rows the source read but could not turn into records (a malformed line of a file),
    /// left out of `records` at the host's choice and reported by the run.
    pub rejected: Vec<SourceRejection>,
}

/// A row a source left out because it could not be read as a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRejection {
    /// Where, e.g. "line 17 of `customers.csv`".
    pub location: String,
    /// Why, naming the column where one is at fault; never the row's values.
    pub reason: String,
    /// The row's key, when the source could read its key columns. A `Mirror` run never
    /// deletes a key whose row could not be read; when the key is unknown, it deletes
    /// nothing at all that run.
    pub key: Option<crate::key::Key>,
}

impl SourceRejection {
    /// A row at `location` left out for `reason` (naming the column, never the values).
    pub fn new(location: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { location: location.into(), reason: reason.into(), key: None }
    }

    /// The key of the row, when the source could read it.
    #[must_use]
    pub fn with_key(mut self, key: crate::key::Key) -> Self {
        self.key = Some(key);
        self
    }
}

impl RowBatch {
    /// A batch of `records` under `schema`.
    pub fn new(schema: Arc<Schema>, records: Vec<Record>) -> Self {
        Self { schema, records, rejected: Vec::new() }
    }

    /// An empty batch.
    pub fn empty(schema: Arc<Schema>) -> Self {
        Self::new(schema, Vec::new())
    }

    /// Attaches rows the source could not read as records.
    pub fn with_rejected(mut self, rejected: Vec<SourceRejection>) -> Self {
        self.rejected = rejected;
        self
    }

    /// The number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the batch holds no record.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

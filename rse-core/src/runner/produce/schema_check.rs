//! The reading side's schema check: the read's columns against those last delivered.

use std::sync::Arc;

use tracing::warn;

use super::Producer;
use crate::drift::{SchemaDrift, SchemaDriftPolicy, SchemaSummary, reordered_to};
use crate::record::{Record, RowBatch};
use crate::report::FailureKind;
use crate::schema::Schema;
use crate::value::Value;

impl Producer<'_> {
    /// Compares a batch's source schema with the columns the sync last delivered (on the
    /// read's first batch) or with the first batch's (later); says whether to go on. Runs
    /// before anything of the batch is transformed, committed or sent.
    pub(super) fn check_schema(&mut self, source_schema: &Arc<Schema>) -> bool {
        let inner = self.inner;
        if let Some(first) = &self.read_schema {
            if Arc::ptr_eq(first, source_schema) || first == source_schema {
                return true;
            }
            let drift = SchemaDrift::between(&SchemaSummary::of(first), &SchemaSummary::of(source_schema));
            self.fail(
                FailureKind::SchemaDrift,
                format!(
                    "the source's columns changed during the read ({}); what was read after the change was not \
                     sent: run again",
                    drift.map(|d| d.to_string()).unwrap_or_default()
                ),
            );
            return false;
        }
        self.read_schema = Some(source_schema.clone());
        let mut output = source_schema.clone();
        for t in &inner.transforms {
            output = match t.output_schema(&output) {
                Ok(schema) => schema,
                Err(e) => {
                    self.fail(FailureKind::Transform, e.to_string());
                    return false;
                }
            };
        }
        let now = SchemaSummary::of(&output);
        let Some(drift) = SchemaDrift::between(&self.expected, &now) else {
            self.run_schema.set(output);
            self.out.delivered = Some(now);
            return true;
        };
        warn!(drift = %drift, "The model's columns differ from those last delivered.");
        self.out.drift = Some(drift.clone());
        let options = &inner.options;
        if drift.key_changed.is_some() && !options.full_resync {
            self.fail(
                FailureKind::SchemaDrift,
                format!(
                    "schema drift: {drift}; the state's keys no longer name the destination's records, so nothing \
                     was sent: restore the key, or deliver under a new sync id (or once with full_resync)"
                ),
            );
            return false;
        }
        if options.schema_drift == SchemaDriftPolicy::Fail && !options.full_resync {
            self.fail(
                FailureKind::SchemaDrift,
                format!(
                    "schema drift since the columns last delivered: {drift}; nothing was sent. Restore the model's \
                     columns, or set the sync's schema drift policy to Proceed to deliver under the new ones"
                ),
            );
            return false;
        }
        if drift.is_reorder_only()
            && let Some((schema, from)) = reordered_to(&self.expected, &output)
        {
            // Values are matched by name: in the delivered order nothing changed.
            let schema = Arc::new(schema);
            self.run_schema.set(schema.clone());
            self.reorder = Some((schema, from));
            self.out.delivered = Some(self.expected.clone());
            return true;
        }
        self.run_schema.set(output);
        self.out.delivered = Some(now);
        true
    }

    /// Puts a transformed batch's values in the delivered column order, when the read only
    /// reordered the columns.
    pub(super) fn reorder(&self, batch: RowBatch) -> RowBatch {
        let Some((schema, from)) = &self.reorder else { return batch };
        let records = batch
            .records
            .into_iter()
            .map(|mut r| {
                let mut take =
                    |i: usize| r.values.get_mut(i).map_or(Value::Null, |v| std::mem::replace(v, Value::Null));
                Record::new(from.iter().map(|&i| take(i)).collect())
            })
            .collect();
        RowBatch::new(schema.clone(), records)
    }
}

//! Encoding a batch: the inserts into a binary COPY, the other changes into the bound
//! columns of the upsert and the delete; values that do not fit are rejected here.

use rse_core::{Change, ChangeBatch, Op, Schema, Value, WriteOutcomes};

use super::PostgresDestination;
use super::bind::Column;
use super::plan::Statements;
use crate::postgres::copy::{COPY_MIN_ROWS, CopyRows};

/// A batch as it is written: the inserts copied, the columns of the upsert and the delete.
pub(super) struct Encoded<'a> {
    pub(super) copied: Option<CopyRows>,
    pub(super) upsert: Vec<Column<'a>>,
    pub(super) delete: Vec<Column<'a>>,
}

impl PostgresDestination {
    /// Encodes the changes at `positions`: the inserts into a COPY when `copy` and there are
    /// enough of them, the rest into the upsert's and the delete's columns. Changes whose
    /// values do not fit their field's type are rejected here, before any SQL.
    pub(super) fn encode<'a>(
        &self,
        statements: &Statements,
        batch: &'a ChangeBatch,
        outcomes: &mut WriteOutcomes,
        positions: &[usize],
        copy: bool,
    ) -> Encoded<'a> {
        let is_insert = |i: &usize| batch.changes[*i].op == Op::Insert && batch.changes[*i].record.is_some();
        let plan = statements
            .copy
            .as_ref()
            .filter(|_| copy && positions.iter().filter(|i| is_insert(i)).count() >= COPY_MIN_ROWS);
        let mut rest = Vec::with_capacity(positions.len());
        let copied = plan.map(|plan| {
            let mut rows = CopyRows::with_capacity(positions.len() * 128);
            let guard = self.options.guard();
            for &i in positions {
                let change = &batch.changes[i];
                let version = guard.then(|| i64::try_from(change.version).unwrap_or(i64::MAX));
                let copied = match (&change.record, change.op) {
                    (Some(record), Op::Insert) => rows.push(&plan.types, record.values.iter(), version),
                    _ => false,
                };
                if !copied {
                    rest.push(i);
                }
            }
            rows
        });
        if copied.is_none() {
            rest.extend_from_slice(positions);
        }
        let changes: Vec<&Change> = rest.iter().map(|&i| &batch.changes[i]).collect();
        let (upsert, delete) = self.columns(statements, &batch.schema, &changes, outcomes, &rest);
        Encoded { copied, upsert, delete }
    }

    /// Builds the bound columns of the upserts and deletes; changes whose values do not fit
    /// their field's type are rejected here, before any SQL.
    fn columns<'a>(
        &self,
        statements: &Statements,
        schema: &Schema,
        changes: &[&'a Change],
        outcomes: &mut WriteOutcomes,
        positions: &[usize],
    ) -> (Vec<Column<'a>>, Vec<Column<'a>>) {
        let n = changes.len();
        let mut upsert: Vec<Column<'_>> = statements.binds.iter().map(|b| Column::new(*b, n)).collect();
        let mut upsert_versions = Vec::with_capacity(n);
        let mut delete: Vec<Column<'_>> = statements.key_binds.iter().map(|(_, b)| Column::new(*b, n)).collect();
        let mut delete_versions = Vec::with_capacity(n);
        let mut rows = 0usize;
        let mut dels = 0usize;
        for (change, &pos) in changes.iter().zip(positions) {
            let version = Some(i64::try_from(change.version).unwrap_or(i64::MAX));
            match (&change.record, change.op) {
                (_, Op::Delete) => {
                    let Ok(key) = change.key.decode() else {
                        outcomes.rejected(pos, "key could not be decoded");
                        continue;
                    };
                    let ok = delete.iter_mut().zip(&key).all(|(c, v)| c.push_owned(v)) && key.len() == delete.len();
                    if ok {
                        dels += 1;
                        delete_versions.push(version);
                    } else {
                        delete.iter_mut().for_each(|c| c.truncate(dels));
                        outcomes.rejected(pos, "key does not fit the table's key columns");
                    }
                }
                (Some(record), _) => {
                    let mut bad = None;
                    for (i, c) in upsert.iter_mut().enumerate() {
                        if !c.push(record.values.get(i).unwrap_or(&Value::Null)) {
                            bad = Some(i);
                            break;
                        }
                    }
                    match bad {
                        None => {
                            rows += 1;
                            upsert_versions.push(version);
                        }
                        Some(i) => {
                            upsert.iter_mut().for_each(|c| c.truncate(rows));
                            let field =
                                schema.field(i).map(|f| (f.name.as_str(), f.data_type.to_string())).unwrap_or_default();
                            let got = record.values.get(i).map_or("nothing", Value::type_name);
                            outcomes.rejected(
                                pos,
                                format!("field `{}` is {} but the record holds a {got}", field.0, field.1),
                            );
                        }
                    }
                }
                (None, op) => outcomes.rejected(pos, format!("{op} without a record")),
            }
        }
        if self.options.guard() {
            upsert.push(Column::Int(upsert_versions));
            delete.push(Column::Int(delete_versions));
        }
        (upsert, delete)
    }
}

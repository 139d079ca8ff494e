//! Schema drift: how the columns a run reads differ from those the sync last delivered.
//!
//! Each run records, in its report, the columns (after transforms) its changes were
//! fingerprinted and sent under. The next run compares what its read returns with them
//! before it sends anything: a column added, removed, renamed, reordered or retyped is
//! drift, reported by name, and handled as [`SchemaDriftPolicy`] says. Values are never
//! sent under names they were not read under.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::schema::{Field, Schema};
use crate::value::DataType;

/// What a run does when the columns it reads differ from those the sync last delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SchemaDriftPolicy {
    /// End the run before sending anything, naming the columns (the default): a model
    /// change should be a decision, not a surprise in the CRM.
    #[default]
    Fail,
    /// Deliver under the new columns: the keys whose mapped values changed (all of them
    /// when a column was added, removed or retyped) are sent again; a mere reordering
    /// sends nothing. A change of the key columns still fails: the snapshot's keys would
    /// no longer name the destination's records (use a new sync id, or `full_resync`).
    Proceed,
}

/// One column as a run delivered it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnSummary {
    /// Its name.
    pub name: String,
    /// Its type.
    pub data_type: DataType,
}

/// The columns (after transforms) a run's changes were fingerprinted and sent under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaSummary {
    /// The columns, in order.
    pub columns: Vec<ColumnSummary>,
    /// The key columns' names.
    pub key: Vec<String>,
}

impl SchemaSummary {
    /// The summary of `schema` (nullability is not part of it: sources report it unevenly).
    pub fn of(schema: &Schema) -> Self {
        Self {
            columns: schema
                .fields()
                .iter()
                .map(|f| ColumnSummary { name: f.name.clone(), data_type: f.data_type.clone() })
                .collect(),
            key: schema.key_names().map(str::to_owned).collect(),
        }
    }

    /// Whether `schema` has exactly these columns, in this order, with this key.
    pub fn matches(&self, schema: &Schema) -> bool {
        self.columns.len() == schema.len()
            && self.columns.iter().zip(schema.fields()).all(|(c, f)| c.name == f.name && c.data_type == f.data_type)
            && self.key.iter().map(String::as_str).eq(schema.key_names())
    }

    fn position(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }
}

/// A column whose type changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retyped {
    /// The column.
    pub column: String,
    /// The type it was delivered as.
    pub from: DataType,
    /// The type it is read as now.
    pub to: DataType,
}

/// How the columns a run read differ from those the sync last delivered, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SchemaDrift {
    /// Columns the read has that were not delivered before.
    pub added: Vec<String>,
    /// Columns delivered before that the read no longer has.
    pub removed: Vec<String>,
    /// Columns that appear renamed (`from`, `to`): one removed and one added at the same
    /// position with the same type.
    pub renamed: Vec<(String, String)>,
    /// Columns whose type changed.
    pub retyped: Vec<Retyped>,
    /// Whether the columns both have come in another order.
    pub reordered: bool,
    /// The key columns before and now, when they changed.
    pub key_changed: Option<(Vec<String>, Vec<String>)>,
}

impl SchemaDrift {
    /// The drift from `before` to `now`, or `None` when they are the same.
    pub fn between(before: &SchemaSummary, now: &SchemaSummary) -> Option<Self> {
        if before == now {
            return None;
        }
        let mut drift = SchemaDrift::default();
        let mut added: Vec<(usize, &ColumnSummary)> =
            now.columns.iter().enumerate().filter(|(_, c)| before.position(&c.name).is_none()).collect();
        for (i, old) in before.columns.iter().enumerate() {
            match now.position(&old.name) {
                Some(j) => {
                    let to = &now.columns[j].data_type;
                    if *to != old.data_type {
                        drift.retyped.push(Retyped {
                            column: old.name.clone(),
                            from: old.data_type.clone(),
                            to: to.clone(),
                        });
                    }
                }
                None => match added.iter().position(|(j, c)| *j == i && c.data_type == old.data_type) {
                    Some(a) => {
                        let (_, new) = added.remove(a);
                        drift.renamed.push((old.name.clone(), new.name.clone()));
                    }
                    None => drift.removed.push(old.name.clone()),
                },
            }
        }
        drift.added = added.into_iter().map(|(_, c)| c.name.clone()).collect();
        let kept_before = before.columns.iter().filter(|c| now.position(&c.name).is_some()).map(|c| &c.name);
        let kept_now = now.columns.iter().filter(|c| before.position(&c.name).is_some()).map(|c| &c.name);
        drift.reordered = !kept_before.eq(kept_now);
        if before.key != now.key {
            drift.key_changed = Some((before.key.clone(), now.key.clone()));
        }
        Some(drift)
    }

    /// Whether only the order of the columns changed (same names, types and key).
    pub fn is_reorder_only(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.renamed.is_empty()
            && self.retyped.is_empty()
            && self.key_changed.is_none()
    }
}

impl fmt::Display for SchemaDrift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let quoted = |names: &[String]| names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ");
        let mut parts = Vec::new();
        if !self.added.is_empty() {
            parts.push(format!("added {}", quoted(&self.added)));
        }
        if !self.removed.is_empty() {
            parts.push(format!("removed {}", quoted(&self.removed)));
        }
        for (from, to) in &self.renamed {
            parts.push(format!("renamed `{from}` to `{to}`"));
        }
        for r in &self.retyped {
            parts.push(format!("retyped `{}` from {} to {}", r.column, r.from, r.to));
        }
        if self.reordered {
            parts.push("reordered the columns".to_owned());
        }
        if let Some((before, now)) = &self.key_changed {
            parts.push(format!("changed the key from ({}) to ({})", quoted(before), quoted(now)));
        }
        f.write_str(&parts.join("; "))
    }
}

/// The schema with `read`'s fields in `summary`'s order, and where each comes from in
/// `read`: for a drift that only reordered the columns.
pub(crate) fn reordered_to(summary: &SchemaSummary, read: &Schema) -> Option<(Schema, Vec<usize>)> {
    let mut fields: Vec<Field> = Vec::with_capacity(summary.columns.len());
    let mut from = Vec::with_capacity(summary.columns.len());
    for column in &summary.columns {
        let i = read.index_of(&column.name)?;
        fields.push(read.field(i)?.clone());
        from.push(i);
    }
    let schema = Schema::new(fields, &summary.key).ok()?;
    Some((schema, from))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(cols: &[(&str, DataType)], key: &[&str]) -> SchemaSummary {
        SchemaSummary {
            columns: cols.iter().map(|(n, t)| ColumnSummary { name: (*n).into(), data_type: t.clone() }).collect(),
            key: key.iter().map(|k| (*k).into()).collect(),
        }
    }

    #[test]
    fn drift_names_every_column_by_what_happened_to_it() {
        let before = summary(
            &[("id", DataType::Int), ("mail", DataType::String), ("score", DataType::Float), ("a", DataType::Bool)],
            &["id"],
        );
        let now = summary(
            &[
                ("id", DataType::Int),
                ("email", DataType::String),
                ("tier", DataType::String),
                ("score", DataType::String),
            ],
            &["id"],
        );
        let drift = SchemaDrift::between(&before, &now).unwrap();
        assert_eq!(drift.renamed, vec![("mail".to_owned(), "email".to_owned())]);
        assert_eq!(drift.added, vec!["tier"]);
        assert_eq!(drift.removed, vec!["a"]);
        assert_eq!(drift.retyped.len(), 1);
        assert!(!drift.reordered);
        assert_eq!(
            drift.to_string(),
            "added `tier`; removed `a`; renamed `mail` to `email`; retyped `score` from float to string"
        );
        assert!(SchemaDrift::between(&before, &before).is_none());
    }

    #[test]
    fn a_reorder_alone_is_told_apart() {
        let before = summary(&[("id", DataType::Int), ("a", DataType::Int), ("b", DataType::Int)], &["id"]);
        let now = summary(&[("id", DataType::Int), ("b", DataType::Int), ("a", DataType::Int)], &["id"]);
        let drift = SchemaDrift::between(&before, &now).unwrap();
        assert!(drift.reordered && drift.is_reorder_only());
        assert_eq!(drift.to_string(), "reordered the columns");
    }
}

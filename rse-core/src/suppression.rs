//! Consent revocation: the keys and hashed identifiers whose consent was withdrawn, which a
//! sync removes from its destination and never sends again while they are listed.
//!
//! A host gives a sync one or more [`Suppressions`] inputs
//! ([`SyncBuilder::suppressions`](crate::SyncBuilder::suppressions)); every run loads them
//! afresh, before anything is read or sent. A list holds keys of the sync's model and/or
//! SHA-256 digests of an identifier column's normalised value (an e-mail trimmed and
//! lower-cased, as ad platforms and consent tools hash it). [`MemorySuppressions`] is a list
//! the host edits in memory; [`SourceSuppressions`] reads any [`Source`] — a SQL table of
//! revoked keys or hashed e-mails, kept by the consent system — so the table drives the sync.
//!
//! # What a run does with it
//! - A source record whose key is listed, or whose identifier's digest is, is **kept out**:
//!   not sent, in any mode, and not taken for a delete either.
//! - A listed key the destination may hold (the sync delivered it, or a change to it is in
//!   doubt) is **removed**: deleted at this run when the destination supports deletes,
//!   **even in `Upsert`, `Insert`, `Update` or `Append` mode**, and whatever the canary.
//!   Keys matched by a digest are found through the records the source still returns.
//! - Consent deletions are mandatory, so the delete guard (`max_deletes`, the empty-source
//!   and unknown-key checks) does **not** withhold them, and they do not count among the
//!   deletes it weighs: the guard protects against a broken model, and a withdrawal is an
//!   instruction from a separate input that must be carried out. The list is trusted as
//!   given: a table listing every customer removes every customer, so keep it writable only
//!   by the consent system.
//! - A destination that cannot delete keeps what it holds; the run reports how many listed
//!   keys may remain there ([`SuppressionReport::not_removable`] and its note) and logs
//!   their key hashes, so they can be removed by hand.
//! - A refused record kept in the state for a listed key is dropped with its values.
//! - Taking a key off the list lets it back: the next run sends it as new.
//!
//! Every suppression is counted in the report and in the `rse_suppressed_total` metric (by
//! outcome), logged at INFO with the key's hash (never the key), and sent to the run's
//! progress stream ([`SyncJob::subscribe`](crate::SyncJob::subscribe)) as
//! [`ProgressEvent::Suppressed`](crate::ProgressEvent::Suppressed). A list that cannot be
//! loaded or applied ends the run as `Failed` ([`FailureKind::Suppression`](crate::FailureKind::Suppression))
//! before anything is read or sent.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::SourceError;
use crate::key::Key;
use crate::record::Record;
use crate::schema::Schema;
use crate::source::{ReadRequest, Source};
use crate::value::{DataType, Value};

/// How an identifier's value is normalised before its SHA-256 is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Normalize {
    /// The text as it is.
    AsIs,
    /// Leading and trailing white space removed.
    Trim,
    /// Trimmed and lower-cased (Unicode lower case): an e-mail as ad platforms and
    /// [`HashPii::email`](crate::transform::HashPii::email) hash it.
    TrimLowercase,
    /// The column already holds the lower-case hex SHA-256 (as `HashPii` writes it): it is
    /// compared as it is, ignoring the case of its hex digits.
    Hashed,
}

/// An identifier column of the records a sync delivers (after transforms), and how its
/// values are normalised and hashed to be compared with a list's digests.
///
/// A value's digest is the SHA-256 of the UTF-8 bytes of its normalised text; an integer
/// column's text is its decimal digits. A null or blank value matches nothing.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IdentifierColumn {
    /// The column, as the destination receives it.
    pub column: String,
    /// How its values are normalised.
    pub normalize: Normalize,
}

impl IdentifierColumn {
    /// The column `column`, normalised as `normalize` says.
    pub fn new(column: impl Into<String>, normalize: Normalize) -> Self {
        Self { column: column.into(), normalize }
    }

    /// An e-mail column: trimmed and lower-cased.
    pub fn email(column: impl Into<String>) -> Self {
        Self::new(column, Normalize::TrimLowercase)
    }

    /// A column that already holds the hex SHA-256 of the identifier (the output of
    /// [`HashPii`](crate::transform::HashPii)).
    pub fn hashed(column: impl Into<String>) -> Self {
        Self::new(column, Normalize::Hashed)
    }

    /// The digest of `value` as a list holds it, or `None` for a null, blank or
    /// non-text value (or, for [`Normalize::Hashed`], text that is not a hex SHA-256).
    pub fn digest(&self, value: &Value) -> Option<[u8; 32]> {
        let text = match value {
            Value::String(s) => std::borrow::Cow::Borrowed(s.as_str()),
            Value::Int(i) => std::borrow::Cow::Owned(i.to_string()),
            _ => return None,
        };
        let normalised = match self.normalize {
            Normalize::Hashed => return parse_digest(text.trim()),
            Normalize::AsIs => text,
            Normalize::Trim => std::borrow::Cow::Borrowed(text.trim()),
            Normalize::TrimLowercase => std::borrow::Cow::Owned(text.trim().to_lowercase()),
        };
        if normalised.trim().is_empty() {
            return None;
        }
        Some(Sha256::digest(normalised.as_bytes()).into())
    }

    /// Checks that `schema` has the column, holding text or integers.
    fn check(&self, schema: &Schema, list: &str) -> Result<usize, SourceError> {
        let Some(i) = schema.index_of(&self.column) else {
            return Err(SourceError::NotFound {
                what: format!(
                    "suppression list `{list}`: identifier column `{}` in the sync's records (columns: {})",
                    self.column,
                    schema.field_names()
                ),
                hint: Some("name a column the destination receives (after transforms)".into()),
            });
        };
        match schema.field(i).map(|f| &f.data_type) {
            Some(DataType::String | DataType::Int) => Ok(i),
            other => Err(SourceError::UnsupportedType {
                column: self.column.clone(),
                native_type: other.map(ToString::to_string).unwrap_or_default(),
                hint: Some(format!("suppression list `{list}` compares identifiers as text; map it to a text column")),
            }),
        }
    }
}

/// Reads 64 hex digits (either case) as a SHA-256 digest.
fn parse_digest(hex: &str) -> Option<[u8; 32]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        out[i] = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

/// The suppressions in force for one run: keys, and digests per identifier column.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SuppressionList {
    keys: HashSet<Key>,
    digests: HashMap<IdentifierColumn, HashSet<[u8; 32]>>,
}

impl SuppressionList {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Lists `key` (a key of the sync's model, as the destination receives it).
    pub fn add_key(&mut self, key: Key) {
        self.keys.insert(key);
    }

    /// Takes `key` off the list; returns whether it was listed.
    pub fn remove_key(&mut self, key: &Key) -> bool {
        self.keys.remove(key)
    }

    /// Lists the identifier whose digest under `column` is `sha256_hex` (64 hex digits).
    ///
    /// # Errors
    /// [`SourceError::Malformed`] when `sha256_hex` is not 64 hex digits (the text is not
    /// repeated in the message).
    pub fn add_digest(&mut self, column: &IdentifierColumn, sha256_hex: &str) -> Result<(), SourceError> {
        let digest = parse_digest(sha256_hex.trim()).ok_or_else(|| SourceError::Malformed {
            location: format!("a digest for column `{}`", column.column),
            reason: format!(
                "{} characters, not a SHA-256 in hex (64 digits 0-9, a-f)",
                sha256_hex.trim().chars().count()
            ),
        })?;
        self.digests.entry(column.clone()).or_default().insert(digest);
        Ok(())
    }

    /// Lists the identifier `value` of `column`, hashed here as a run hashes the column's
    /// values (so a host holding the plain identifier need not hash it). Returns whether
    /// it had a digest (a null or blank value has none and is not listed).
    pub fn add_identifier(&mut self, column: &IdentifierColumn, value: &Value) -> bool {
        match column.digest(value) {
            Some(digest) => {
                self.digests.entry(column.clone()).or_default().insert(digest);
                true
            }
            None => false,
        }
    }

    /// Takes the identifier whose digest under `column` is `sha256_hex` off the list;
    /// returns whether it was listed.
    pub fn remove_digest(&mut self, column: &IdentifierColumn, sha256_hex: &str) -> bool {
        let Some(digest) = parse_digest(sha256_hex.trim()) else { return false };
        self.digests.get_mut(column).is_some_and(|d| d.remove(&digest))
    }

    /// Adds every key and digest of `other`.
    pub fn extend(&mut self, other: SuppressionList) {
        self.keys.extend(other.keys);
        for (column, digests) in other.digests {
            self.digests.entry(column).or_default().extend(digests);
        }
    }

    /// How many keys and digests are listed.
    pub fn len(&self) -> usize {
        self.keys.len() + self.digests.values().map(HashSet::len).sum::<usize>()
    }

    /// Whether nothing is listed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The listed keys.
    pub fn keys(&self) -> impl Iterator<Item = &Key> {
        self.keys.iter()
    }

    /// Whether `key` is listed.
    pub fn contains_key(&self, key: &Key) -> bool {
        self.keys.contains(key)
    }

    /// The identifier columns the list has digests for.
    pub fn identifier_columns(&self) -> impl Iterator<Item = &IdentifierColumn> {
        self.digests.keys()
    }

    /// Checks that every identifier column is in `schema` (the records the sync delivers),
    /// holding text or integers.
    ///
    /// # Errors
    /// [`SourceError::NotFound`] naming a column the records lack,
    /// [`SourceError::UnsupportedType`] naming one of another type.
    pub fn check(&self, schema: &Schema, list: &str) -> Result<(), SourceError> {
        for column in self.digests.keys() {
            column.check(schema, list)?;
        }
        Ok(())
    }

    /// Whether `record` (of `schema`) is listed by its key or by an identifier's digest.
    pub fn matches(&self, schema: &Schema, record: &Record) -> bool {
        if !self.keys.is_empty() && record.key(schema).is_ok_and(|k| self.keys.contains(&k)) {
            return true;
        }
        self.digests.iter().any(|(column, digests)| {
            schema
                .index_of(&column.column)
                .and_then(|i| record.get(i))
                .and_then(|v| column.digest(v))
                .is_some_and(|d| digests.contains(&d))
        })
    }
}

/// Where a sync's suppressions come from: loaded at the start of every run.
///
/// Implementations must return the list as it is now: a run never sends a record whose
/// key or identifier the loaded list holds, and removes the listed keys the destination
/// may hold.
#[async_trait]
pub trait Suppressions: Send + Sync {
    /// A short name for reports, logs and errors.
    fn name(&self) -> &str;

    /// The list in force, for a sync whose destination receives records of `schema` (after
    /// transforms): its identifier columns must be in it.
    ///
    /// # Errors
    /// A [`SourceError`] saying what could not be read, or naming a column `schema` lacks;
    /// the run then fails before anything is sent.
    async fn load(&self, schema: &Schema) -> Result<SuppressionList, SourceError>;
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl<T: Suppressions + ?Sized> Suppressions for Arc<T> {
    fn name(&self) -> &str {
        (**self).name()
    }
    async fn load(&self, schema: &Schema) -> Result<SuppressionList, SourceError> {
        (**self).load(schema).await
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl<T: Suppressions + ?Sized> Suppressions for Box<T> {
    fn name(&self) -> &str {
        (**self).name()
    }
    async fn load(&self, schema: &Schema) -> Result<SuppressionList, SourceError> {
        (**self).load(schema).await
    }
}

/// A suppression list in memory, edited by the host between runs. Clones share the list.
///
/// ```
/// # use rse_core::{Key, Value, suppression::{IdentifierColumn, MemorySuppressions}};
/// let revoked = MemorySuppressions::new();
/// revoked.suppress_key(Key::from_values(&[Value::Int(42)]));
/// revoked.suppress_identifier(&IdentifierColumn::email("email"), &Value::from(" Ada@Example.com "));
/// assert_eq!(revoked.list().len(), 2);
/// revoked.lift_key(&Key::from_values(&[Value::Int(42)]));
/// assert_eq!(revoked.list().len(), 1);
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemorySuppressions {
    list: Arc<Mutex<SuppressionList>>,
}

impl MemorySuppressions {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut SuppressionList) -> T) -> T {
        f(&mut self.list.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Lists `key`.
    pub fn suppress_key(&self, key: Key) {
        self.with(|l| l.add_key(key));
    }

    /// Takes `key` off the list; returns whether it was listed.
    pub fn lift_key(&self, key: &Key) -> bool {
        self.with(|l| l.remove_key(key))
    }

    /// Lists a digest (64 hex digits) of `column`'s normalised value.
    ///
    /// # Errors
    /// As [`SuppressionList::add_digest`].
    pub fn suppress_digest(&self, column: &IdentifierColumn, sha256_hex: &str) -> Result<(), SourceError> {
        self.with(|l| l.add_digest(column, sha256_hex))
    }

    /// Lists the plain identifier `value` of `column` (hashed here); returns whether it had
    /// a digest.
    pub fn suppress_identifier(&self, column: &IdentifierColumn, value: &Value) -> bool {
        self.with(|l| l.add_identifier(column, value))
    }

    /// Takes a digest off the list; returns whether it was listed.
    pub fn lift_digest(&self, column: &IdentifierColumn, sha256_hex: &str) -> bool {
        self.with(|l| l.remove_digest(column, sha256_hex))
    }

    /// Replaces the whole list.
    pub fn set(&self, list: SuppressionList) {
        self.with(|l| *l = list);
    }

    /// A copy of the list.
    pub fn list(&self) -> SuppressionList {
        self.with(|l| l.clone())
    }
}

#[async_trait]
impl Suppressions for MemorySuppressions {
    fn name(&self) -> &str {
        "memory"
    }

    async fn load(&self, schema: &Schema) -> Result<SuppressionList, SourceError> {
        let list = self.list();
        list.check(schema, self.name())?;
        Ok(list)
    }
}

/// What each row of a [`SourceSuppressions`] lists.
#[derive(Debug, Clone, PartialEq, Eq)]
enum RowHolds {
    /// The row's key (the source's key columns) is a key of the sync.
    Key,
    /// The row's `column` holds a hex digest of the sync's identifier column.
    Digest { column: String, identifies: IdentifierColumn },
}

/// A suppression list read from a [`Source`] at every run: a table (or view, query, file)
/// the consent system keeps, so that a SQL table drives the sync.
///
/// - [`keys`](Self::keys): each row's key columns (the source's declared key, in order) are
///   a key of the sync. Their types must be the sync's key types (an integer id listed as
///   text would never match; the load fails naming the column).
/// - [`digests`](Self::digests): each row's named column holds the hex SHA-256 of an
///   identifier the sync's records carry in another column, normalised as that
///   [`IdentifierColumn`] says.
///
/// A row whose key or digest is null is skipped and counted in a warning; a digest that is
/// not 64 hex digits fails the load, naming the row.
pub struct SourceSuppressions {
    name: String,
    source: Arc<dyn Source>,
    holds: RowHolds,
}

impl std::fmt::Debug for SourceSuppressions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceSuppressions").field("name", &self.name).finish_non_exhaustive()
    }
}

impl SourceSuppressions {
    /// Every row of `source` lists its key.
    pub fn keys(source: impl Source + 'static) -> Self {
        let name = format!("keys of {}", source.name());
        Self { name, source: Arc::new(source), holds: RowHolds::Key }
    }

    /// Every row of `source` lists, in `column`, the hex SHA-256 of an identifier that the
    /// sync's records carry as `identifies` says, e.g. `digests(table, "email_sha256",
    /// IdentifierColumn::email("email"))`.
    pub fn digests(source: impl Source + 'static, column: impl Into<String>, identifies: IdentifierColumn) -> Self {
        let column = column.into();
        let name = format!("{column} of {}", source.name());
        Self { name, source: Arc::new(source), holds: RowHolds::Digest { column, identifies } }
    }

    /// Checks the source's columns against the sync's `schema`: where each row's entry is.
    async fn locate(&self, schema: &Schema) -> Result<Vec<usize>, SourceError> {
        let listed = self.source.schema().await?;
        match &self.holds {
            RowHolds::Key => {
                let theirs = listed.key_indices();
                let ours = schema.key_indices();
                if theirs.len() != ours.len() {
                    return Err(SourceError::NotFound {
                        what: format!(
                            "suppression list `{}`: {} key columns matching the sync's key ({})",
                            self.name,
                            ours.len(),
                            schema.key_names().collect::<Vec<_>>().join(", ")
                        ),
                        hint: Some(format!(
                            "declare the list's key columns on its source (it has {}: {})",
                            theirs.len(),
                            theirs
                                .iter()
                                .filter_map(|&i| listed.field(i))
                                .map(|f| f.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )),
                    });
                }
                for (&t, &o) in theirs.iter().zip(ours) {
                    let (Some(t), Some(o)) = (listed.field(t), schema.field(o)) else { continue };
                    if t.data_type != o.data_type {
                        return Err(SourceError::UnsupportedType {
                            column: t.name.clone(),
                            native_type: t.data_type.to_string(),
                            hint: Some(format!(
                                "suppression list `{}` must list keys of the sync's key type: `{}` is {} in the sync; cast it in the list's query",
                                self.name, o.name, o.data_type
                            )),
                        });
                    }
                }
                Ok(theirs.to_vec())
            }
            RowHolds::Digest { column, identifies } => {
                identifies.check(schema, &self.name)?;
                let i = listed.index_of(column).ok_or_else(|| SourceError::NotFound {
                    what: format!(
                        "suppression list `{}`: digest column `{column}` (columns: {})",
                        self.name,
                        listed.field_names()
                    ),
                    hint: None,
                })?;
                Ok(vec![i])
            }
        }
    }
}

#[async_trait]
impl Suppressions for SourceSuppressions {
    fn name(&self) -> &str {
        &self.name
    }

    async fn load(&self, schema: &Schema) -> Result<SuppressionList, SourceError> {
        let columns = self.locate(schema).await?;
        let mut list = SuppressionList::new();
        let mut stream = self.source.read(ReadRequest::full()).await?;
        let (mut row, mut skipped) = (0u64, 0u64);
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            if !batch.rejected.is_empty() {
                return Err(SourceError::Malformed {
                    location: format!("suppression list `{}`", self.name),
                    reason: format!(
                        "{} rows could not be read; a list read in part could send to someone who withdrew consent",
                        batch.rejected.len()
                    ),
                });
            }
            for record in &batch.records {
                row += 1;
                let values: Vec<&Value> = columns.iter().filter_map(|&i| record.get(i)).collect();
                if values.len() != columns.len() || values.iter().any(|v| v.is_null()) {
                    skipped += 1;
                    continue;
                }
                match &self.holds {
                    RowHolds::Key => list.add_key(Key::from_values(values)),
                    RowHolds::Digest { identifies, .. } => {
                        let text = values[0].as_str().unwrap_or_default();
                        list.add_digest(identifies, text).map_err(|e| SourceError::Malformed {
                            location: format!("suppression list `{}`, row {row}", self.name),
                            reason: e.to_string(),
                        })?;
                    }
                }
            }
        }
        if skipped > 0 {
            tracing::warn!(list = %self.name, rows = skipped, "Suppression rows without a key or digest were skipped.");
        }
        Ok(list)
    }
}

/// How one suppression ended, in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SuppressionOutcome {
    /// The source returned the record; it was not sent.
    KeptOut,
    /// The destination deleted the key.
    Removed,
    /// The destination may hold the key and cannot delete records.
    NotRemovable,
}

impl SuppressionOutcome {
    /// `kept_out`, `removed` or `not_removable` (the metric's `outcome` label).
    pub fn as_str(self) -> &'static str {
        match self {
            SuppressionOutcome::KeptOut => "kept_out",
            SuppressionOutcome::Removed => "removed",
            SuppressionOutcome::NotRemovable => "not_removable",
        }
    }
}

/// What a run's suppression list did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuppressionReport {
    /// Keys and digests the list held.
    pub listed: u64,
    /// Records the source returned for listed keys or identifiers: not sent.
    pub kept_out: u64,
    /// Deletes of listed keys the destination may hold, planned this run.
    pub removals_planned: u64,
    /// Of those, the deletes the destination applied.
    pub removed: u64,
    /// Listed keys the destination may hold but cannot delete (it supports no delete).
    pub not_removable: u64,
    /// What the operator must do, when something is left: a destination that cannot
    /// delete names how many listed keys it may still hold.
    pub note: Option<String>,
}

impl std::fmt::Display for SuppressionReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} listed, {} kept out, {} removed of {} removals planned",
            self.listed, self.kept_out, self.removed, self.removals_planned
        )?;
        if self.not_removable > 0 {
            write!(f, ", {} not removable", self.not_removable)?;
        }
        if let Some(note) = &self.note {
            write!(f, " ({note})")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Field;

    #[test]
    fn identifiers_are_normalised_then_hashed() {
        let email = IdentifierColumn::email("email");
        let digest = email.digest(&Value::from("  Ada@Example.COM ")).unwrap();
        assert_eq!(digest, <[u8; 32]>::from(Sha256::digest(b"ada@example.com")));
        assert_eq!(email.digest(&Value::Null), None);
        assert_eq!(email.digest(&Value::from("   ")), None);
        let hashed = IdentifierColumn::hashed("email");
        let hex: String = digest.iter().map(|b| format!("{b:02X}")).collect();
        assert_eq!(hashed.digest(&Value::from(hex.as_str())), Some(digest));
        assert_eq!(hashed.digest(&Value::from("not a digest")), None);
        assert_eq!(
            IdentifierColumn::new("id", Normalize::AsIs).digest(&Value::Int(42)),
            Some(Sha256::digest(b"42").into())
        );
    }

    #[test]
    fn a_list_matches_by_key_or_digest_and_refuses_bad_digests() {
        let schema =
            Schema::new(vec![Field::required("id", DataType::Int), Field::new("email", DataType::String)], &["id"])
                .unwrap();
        let record = |id: i64, email: &str| Record::new(vec![Value::Int(id), Value::from(email)]);
        let mut list = SuppressionList::new();
        list.add_key(Key::from_values(&[Value::Int(1)]));
        let email = IdentifierColumn::email("email");
        let hex: String = Sha256::digest(b"bob@example.com").iter().map(|b| format!("{b:02x}")).collect();
        list.add_digest(&email, &hex).unwrap();
        assert!(list.matches(&schema, &record(1, "x@example.com")));
        assert!(list.matches(&schema, &record(2, " BOB@example.com")));
        assert!(!list.matches(&schema, &record(3, "carol@example.com")));
        let error = list.add_digest(&email, "bob@example.com").unwrap_err();
        assert!(!error.to_string().contains("bob"), "{error}");
        assert!(list.check(&schema, "t").is_ok());
        let mut other = SuppressionList::new();
        other.add_digest(&IdentifierColumn::email("mail"), &hex).unwrap();
        assert!(other.check(&schema, "t").unwrap_err().to_string().contains("`mail`"));
        assert!(list.remove_digest(&email, &hex.to_uppercase()));
        assert_eq!(list.len(), 1);
    }
}

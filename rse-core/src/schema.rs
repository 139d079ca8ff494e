//! Schemas: the ordered fields of a model and which of them form its key.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::SchemaError;
use crate::value::DataType;

/// One column of a model.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Field {
    /// The column name.
    pub name: String,
    /// Its logical type.
    pub data_type: DataType,
    /// Whether it may hold `Null`.
    pub nullable: bool,
}

impl Field {
    /// A field that may hold `Null`.
    pub fn new(name: impl Into<String>, data_type: DataType) -> Self {
        Self { name: name.into(), data_type, nullable: true }
    }

    /// A field that may not hold `Null`.
    pub fn required(name: impl Into<String>, data_type: DataType) -> Self {
        Self { name: name.into(), data_type, nullable: false }
    }
}

/// The ordered fields of a model plus the indices of its key columns.
///
/// Field names are unique. A schema without key columns is valid as a value (a source may
/// not know its key), but a sync refuses to build on one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "SchemaRepr", into = "SchemaRepr")]
pub struct Schema {
    fields: Vec<Field>,
    key: Vec<usize>,
    index: HashMap<String, usize>,
}

#[derive(Serialize, Deserialize)]
struct SchemaRepr {
    fields: Vec<Field>,
    key: Vec<String>,
}

impl TryFrom<SchemaRepr> for Schema {
    type Error = SchemaError;
    fn try_from(r: SchemaRepr) -> Result<Self, SchemaError> {
        Schema::new(r.fields, &r.key)
    }
}

impl From<Schema> for SchemaRepr {
    fn from(s: Schema) -> Self {
        let key = s.key_names().map(str::to_owned).collect();
        SchemaRepr { fields: s.fields, key }
    }
}

impl Schema {
    /// A schema of `fields` keyed by the named columns, in key order.
    ///
    /// # Errors
    /// [`SchemaError::DuplicateField`] when two fields share a name,
    /// [`SchemaError::UnknownKeyColumn`] when a key column is not a field.
    pub fn new<S: AsRef<str>>(fields: Vec<Field>, key: &[S]) -> Result<Self, SchemaError> {
        let mut index = HashMap::with_capacity(fields.len());
        for (i, f) in fields.iter().enumerate() {
            if index.insert(f.name.clone(), i).is_some() {
                return Err(SchemaError::DuplicateField { field: f.name.clone() });
            }
        }
        let mut schema = Schema { fields, key: Vec::new(), index };
        schema.key = schema.resolve_key(key)?;
        Ok(schema)
    }

    fn resolve_key<S: AsRef<str>>(&self, key: &[S]) -> Result<Vec<usize>, SchemaError> {
        let mut out = Vec::with_capacity(key.len());
        for k in key {
            let k = k.as_ref();
            let i = self
                .index_of(k)
                .ok_or_else(|| SchemaError::UnknownKeyColumn { column: k.to_owned(), available: self.field_names() })?;
            if out.contains(&i) {
                return Err(SchemaError::DuplicateField { field: k.to_owned() });
            }
            out.push(i);
        }
        Ok(out)
    }

    /// This schema with its key replaced by the named columns.
    ///
    /// # Errors
    /// [`SchemaError::UnknownKeyColumn`] when a key column is not a field.
    pub fn with_key<S: AsRef<str>>(mut self, key: &[S]) -> Result<Self, SchemaError> {
        self.key = self.resolve_key(key)?;
        Ok(self)
    }

    /// The fields in order.
    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    /// The number of fields.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether the schema has no fields.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The field at `index`.
    pub fn field(&self, index: usize) -> Option<&Field> {
        self.fields.get(index)
    }

    /// The index of the field named `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// The indices of the key columns, in key order.
    pub fn key_indices(&self) -> &[usize] {
        &self.key
    }

    /// Whether `name` is a key column.
    pub fn is_key(&self, name: &str) -> bool {
        self.index_of(name).is_some_and(|i| self.key_indices().contains(&i))
    }

    /// The names of the key columns, in key order.
    pub fn key_names(&self) -> impl Iterator<Item = &str> {
        self.key.iter().map(|&i| self.fields[i].name.as_str())
    }

    /// All field names joined with `, `, for error messages.
    pub fn field_names(&self) -> String {
        self.fields.iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join(", ")
    }

    /// The index of `name`, or an error naming the field and the fields there are.
    ///
    /// # Errors
    /// [`SchemaError::UnknownField`] naming `name`, `context` and the available fields.
    pub fn require(&self, name: &str, context: &str) -> Result<usize, SchemaError> {
        self.index_of(name).ok_or_else(|| SchemaError::UnknownField {
            field: name.to_owned(),
            context: context.to_owned(),
            available: self.field_names(),
        })
    }

    /// Wraps the schema in an `Arc`, as batches share it.
    pub fn into_arc(self) -> Arc<Schema> {
        Arc::new(self)
    }
}

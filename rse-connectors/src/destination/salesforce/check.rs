//! `check()`: the credentials work, and the sObject's describe shows the external id field
//! and every mapped field writable by the integration user.

use rse_core::DestinationError;
use serde::Deserialize;

use super::api::Api;
use super::limits::Usage;
use crate::saas::{FieldMap, SaasRequest};

/// "sObject Describe", the part read here.
#[derive(Debug, Deserialize)]
struct Describe {
    #[serde(default)]
    fields: Vec<FieldDescribe>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FieldDescribe {
    name: String,
    #[serde(default)]
    createable: bool,
    #[serde(default)]
    updateable: bool,
    #[serde(default)]
    external_id: bool,
}

/// Checks the org against the configuration; every problem is named at once.
pub(super) async fn check(
    api: &Api,
    object: &str,
    external_id_field: &str,
    fields: &FieldMap,
) -> Result<(), DestinationError> {
    let session = api.session().await?;
    let url = api.data_url(&session, &format!("sobjects/{object}/describe"))?;
    let describe: Describe =
        api.call(&SaasRequest::get(url), &mut Usage::default()).await?.json("the sObject describe")?;
    let find = |name: &str| describe.fields.iter().find(|f| f.name.eq_ignore_ascii_case(name));
    let mut problems = Vec::new();
    match find(external_id_field) {
        None => problems.push(format!("`{external_id_field}` (`external_id_field`) is not a field of {object}")),
        Some(f) if !f.external_id => problems.push(format!(
            "`{}` (`external_id_field`) is not marked External ID (set it on the field, with Unique)",
            f.name
        )),
        Some(f) if !f.createable => problems.push(format!("`{}` (`external_id_field`) is not createable", f.name)),
        Some(_) => {}
    }
    for mapping in fields.iter() {
        let property = mapping.property.as_str();
        match find(property) {
            None => problems.push(format!("`{property}` (from field `{}`) is not a field of {object}", mapping.field)),
            Some(f) => {
                let missing: Vec<&str> = [(f.createable, "createable"), (f.updateable, "updateable")]
                    .into_iter()
                    .filter(|(ok, _)| !ok)
                    .map(|(_, what)| what)
                    .collect();
                if !missing.is_empty() {
                    problems.push(format!("`{}` is not {}", f.name, missing.join(" nor ")));
                }
            }
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(DestinationError::fatal(format!(
        "{}: {object} cannot take this mapping: {}. Fix the mapping, or the fields' settings and the integration user's field-level security",
        api.name(),
        problems.join("; ")
    )))
}

//! `check()`: the token works for this object, and every mapped property (and the key
//! property, when one is configured) exists and takes writes, from the object's property
//! definitions.
//!
//! Follows HubSpot's "Properties API" reference (`GET /crm/properties/{version}/{objectType}`,
//! legacy `GET /crm/v3/properties/{objectType}`): each definition's `name`,
//! `hasUniqueValue`, `calculated` and `modificationMetadata.readOnlyValue`.

use std::collections::HashMap;

use rse_core::DestinationError;
use serde_json::Value as Json;

use super::HubSpotDestination;
use crate::saas::SaasRequest;

/// What a property definition says about writing it.
struct Definition {
    unique: bool,
    writable: bool,
}

impl HubSpotDestination {
    pub(super) async fn check_properties(&self) -> Result<(), DestinationError> {
        let answer = self.client.send(&SaasRequest::get(self.urls.properties.clone())).await?;
        if answer.status().as_u16() == 404 {
            return Err(DestinationError::fatal(format!(
                "{}: HubSpot knows no object type `{}` (HTTP 404 on its properties); write `contacts`, `companies` or a custom object's type id such as `2-123456`",
                self.name, self.config.object
            )));
        }
        let answer = answer.success_or(&self.classifier)?;
        let listing: Json = answer.json("the properties listing")?;
        let definitions: HashMap<&str, Definition> = listing
            .get("results")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| {
                let name = p.get("name")?.as_str()?;
                let flag = |v: Option<&Json>| v.and_then(Json::as_bool).unwrap_or(false);
                let read_only = flag(p.get("modificationMetadata").and_then(|m| m.get("readOnlyValue")));
                let definition = Definition {
                    unique: flag(p.get("hasUniqueValue")),
                    writable: !read_only && !flag(p.get("calculated")),
                };
                Some((name, definition))
            })
            .collect();

        let mut problems = Vec::new();
        match definitions.get(self.id_property.as_str()) {
            None => problems.push(format!(
                "the id property `{}` does not exist on `{}`",
                self.id_property, self.config.object
            )),
            Some(d) if !d.unique => problems.push(format!(
                "the id property `{}` does not hold unique values, and HubSpot upserts only by a property that does (create one with unique values, e.g. `external_id`)",
                self.id_property
            )),
            Some(_) => {}
        }
        if let Some(key_property) = &self.config.key_property {
            let create = "it must be a single-line text property with unique values that the destination writes (HubSpot: Settings → Properties → Create property, field type single-line text, \"Require unique values for this property\" on)";
            let problem = match definitions.get(key_property.as_str()) {
                None => Some(format!("does not exist on `{}`", self.config.object)),
                Some(d) if !d.unique => Some("does not hold unique values".to_owned()),
                Some(d) if !d.writable => Some("is read-only or calculated".to_owned()),
                Some(_) => None,
            };
            if let Some(problem) = problem {
                problems.push(format!("the key property `{key_property}` {problem}: {create}"));
            }
        }
        let (mut missing, mut read_only) = (Vec::new(), Vec::new());
        for mapping in self.config.fields.iter() {
            let named = format!("`{}` (from field `{}`)", mapping.property, mapping.field);
            match definitions.get(mapping.property.as_str()) {
                None if mapping.property != self.id_property => missing.push(named),
                Some(d) if !d.writable => read_only.push(named),
                _ => {}
            }
        }
        if !missing.is_empty() {
            problems.push(format!("no such properties: {}", missing.join(", ")));
        }
        if !read_only.is_empty() {
            problems.push(format!("read-only or calculated properties: {}", read_only.join(", ")));
        }
        if problems.is_empty() {
            return Ok(());
        }
        Err(DestinationError::fatal(format!(
            "{}: {}; fix the field map (HubSpot internal property names) or create the properties in HubSpot",
            self.name,
            problems.join("; ")
        )))
    }
}

//! Google Customer Match destinations.
//!
//! - [`ads`]: the Google Ads API's offline user data jobs, for accounts still on it.

pub mod ads;

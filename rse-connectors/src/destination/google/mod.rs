//! Google Customer Match: Google Ads audiences filled with hashed contact data.
//!
//! - [`ads`]: the Google Ads API's offline user data jobs, for accounts still on it.

pub mod ads;

pub use ads::{GoogleAdsConfig, GoogleAdsDestination};

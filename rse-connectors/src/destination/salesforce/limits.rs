//! The org's daily API allowance as every REST answer reports it, `Sforce-Limit-Info:
//! api-usage=<used>/<limit>`, turned into the quota feedback the runner paces to. Salesforce
//! counts a rolling 24 hours, so the window has no reset time (see the module docs of
//! `destination::salesforce`); the figure is approximate (the org recounts it asynchronously).

use rse_core::{QuotaFeedback, QuotaWindow};

use crate::saas::SaasResponse;

/// The header every REST answer carries.
pub(super) const LIMIT_HEADER: &str = "sforce-limit-info";

/// `(used, limit)` of the `api-usage` entry of a `Sforce-Limit-Info` value, e.g.
/// `api-usage=18/15000` or `api-usage=18/15000; per-app-api-usage=17/250(appName=app)`.
pub(super) fn api_usage(header: &str) -> Option<(u64, u64)> {
    header.split([';', ',']).find_map(|entry| {
        let (used, limit) = entry.trim().strip_prefix("api-usage=")?.split_once('/')?;
        let limit = limit.trim().split(|c: char| !c.is_ascii_digit()).next()?;
        Some((used.trim().parse().ok()?, limit.parse().ok()?))
    })
}

/// The highest usage the answers of one write reported.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Usage {
    seen: Option<(u64, u64)>,
}

impl Usage {
    /// Takes note of an answer's header (the org's count only grows; an older reading
    /// arriving late does not lower it).
    pub(super) fn observe(&mut self, response: &SaasResponse) {
        self.merge(Usage { seen: response.header(LIMIT_HEADER).and_then(api_usage) });
    }

    /// Takes note of what another reading saw.
    pub(super) fn merge(&mut self, other: Usage) {
        if let Some((used, limit)) = other.seen {
            self.seen = Some(match self.seen {
                Some((u, _)) if u > used => (u, limit),
                _ => (used, limit),
            });
        }
    }

    /// The daily allowance as the runner paces to it.
    pub(super) fn quota(&self) -> Option<QuotaFeedback> {
        let (used, limit) = self.seen?;
        Some(QuotaFeedback {
            window: None,
            daily: Some(QuotaWindow::new(limit.saturating_sub(used), Some(limit), None)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_usage_entry_is_read_among_others() {
        assert_eq!(api_usage("api-usage=18/15000"), Some((18, 15_000)));
        assert_eq!(api_usage("api-usage=25/5000; per-app-api-usage=17/250(appName=sample)"), Some((25, 5_000)));
        assert_eq!(api_usage("per-app-api-usage=17/250(appName=sample)"), None);
        assert_eq!(api_usage("api-usage=x/5000"), None);
    }
}

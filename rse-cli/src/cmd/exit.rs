//! Exit codes: what a scheduler reads of a run, derived from the typed status of its report.

use rse::{Error, FailureKind, RunStatus, StateError};

/// The exit codes, as `--help` and the README show them.
pub const TABLE: &str = "\
Exit codes:
  0    success (a paused sync is skipped and counts as success: the pause is deliberate)
  1    failed (source, destination, state store, circuit open, changes left undelivered)
  2    usage or configuration error (bad flag, bad TOML, missing secret, unknown sync)
  3    completed, with records refused (see `rse rejections SYNC`)
  4    rate limited, or the destination's quota is spent; unsent changes go next run
  5    unauthorized: the destination refused the credentials
  6    lease held: another run of the sync is running (or took it over)
  7    schema drift: the columns read differ from those last delivered
  8    completed, but the delete guard withheld the run's deletes
  130  interrupted by SIGINT (143 by SIGTERM): the writes in flight finished and were
       committed; the next run goes on from there";

/// A process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit(pub u8);

impl Exit {
    pub const SUCCESS: Exit = Exit(0);
    pub const FAILED: Exit = Exit(1);
    pub const USAGE: Exit = Exit(2);
    pub const REJECTIONS: Exit = Exit(3);
    pub const RATE_LIMITED: Exit = Exit(4);
    pub const UNAUTHORIZED: Exit = Exit(5);
    pub const LEASE_HELD: Exit = Exit(6);
    pub const SCHEMA_DRIFT: Exit = Exit(7);
    pub const DELETES_WITHHELD: Exit = Exit(8);
    pub const SIGINT: Exit = Exit(130);
    pub const SIGTERM: Exit = Exit(143);

    /// The code of a run that ended with `status`.
    pub fn of_status(status: &RunStatus) -> Exit {
        match status {
            RunStatus::Succeeded | RunStatus::Paused { .. } => Exit::SUCCESS,
            RunStatus::CompletedWithRejections => Exit::REJECTIONS,
            RunStatus::DeletesWithheld { .. } => Exit::DELETES_WITHHELD,
            RunStatus::RateLimited { .. } | RunStatus::QuotaExhausted { .. } => Exit::RATE_LIMITED,
            RunStatus::Failed { kind, .. } => match kind {
                FailureKind::Unauthorized => Exit::UNAUTHORIZED,
                FailureKind::LeaseLost => Exit::LEASE_HELD,
                FailureKind::SchemaDrift => Exit::SCHEMA_DRIFT,
                _ => Exit::FAILED,
            },
            // A cancellation the command did not ask for (it maps its own to 130/143).
            RunStatus::Cancelled | RunStatus::CircuitOpen { .. } | RunStatus::Running => Exit::FAILED,
            _ => Exit::FAILED,
        }
    }

    /// The code of a run that could not start or failed outright.
    pub fn of_error(error: &Error) -> Exit {
        match error {
            Error::Config(_) => Exit::USAGE,
            Error::State(StateError::LeaseHeld { .. } | StateError::Fenced { .. }) => Exit::LEASE_HELD,
            _ => Exit::FAILED,
        }
    }

    /// How much the code matters when several syncs ran: the command exits with the code of
    /// highest rank, so that an interruption or a usage error is never hidden behind a
    /// later sync's success, and a failure never behind rejections.
    fn rank(self) -> u8 {
        match self.0 {
            0 => 0,
            3 => 1,
            8 => 2,
            4 => 3,
            1 => 4,
            7 => 5,
            6 => 6,
            5 => 7,
            2 => 8,
            _ => 9,
        }
    }

    /// The code of two outcomes together.
    pub fn worst(self, other: Exit) -> Exit {
        if other.rank() > self.rank() { other } else { self }
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        std::process::ExitCode::from(exit.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_maps_to_its_documented_code() {
        let failed = |kind| RunStatus::Failed { reason: "x".into(), kind };
        assert_eq!(Exit::of_status(&RunStatus::Succeeded), Exit(0));
        assert_eq!(Exit::of_status(&RunStatus::Paused { by: "a".into(), reason: "b".into() }), Exit(0));
        assert_eq!(Exit::of_status(&RunStatus::CompletedWithRejections), Exit(3));
        assert_eq!(Exit::of_status(&RunStatus::DeletesWithheld { reason: "x".into() }), Exit(8));
        assert_eq!(
            Exit::of_status(&RunStatus::RateLimited { retry_after: std::time::Duration::from_secs(1), retry_at_ms: 0 }),
            Exit(4)
        );
        assert_eq!(Exit::of_status(&RunStatus::QuotaExhausted { reason: "x".into(), resets_at_ms: None }), Exit(4));
        assert_eq!(Exit::of_status(&failed(FailureKind::Unauthorized)), Exit(5));
        assert_eq!(Exit::of_status(&failed(FailureKind::LeaseLost)), Exit(6));
        assert_eq!(Exit::of_status(&failed(FailureKind::SchemaDrift)), Exit(7));
        assert_eq!(Exit::of_status(&failed(FailureKind::Destination)), Exit(1));
        assert_eq!(Exit::of_status(&RunStatus::CircuitOpen { reason: "x".into() }), Exit(1));
        for (code, _) in [(0, ""), (1, ""), (2, ""), (3, ""), (4, ""), (5, ""), (6, ""), (7, ""), (8, ""), (130, "")] {
            assert!(TABLE.contains(&format!("  {code} ")), "{code} is missing from the table");
        }
    }

    #[test]
    fn the_worst_code_wins_whatever_the_order() {
        assert_eq!(Exit::SUCCESS.worst(Exit::REJECTIONS), Exit::REJECTIONS);
        assert_eq!(Exit::FAILED.worst(Exit::REJECTIONS), Exit::FAILED);
        assert_eq!(Exit::REJECTIONS.worst(Exit::FAILED), Exit::FAILED);
        assert_eq!(Exit::UNAUTHORIZED.worst(Exit::SIGTERM), Exit::SIGTERM);
        assert_eq!(Exit::SIGTERM.worst(Exit::SUCCESS), Exit::SIGTERM);
    }
}

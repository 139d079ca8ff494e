//! One reading of PostgreSQL's errors, by SQLSTATE, for the destination and the state store.
//!
//! [`Kind::of`] says what a failure means (the server is gone, a conflict with another
//! session, refused data, a missing table, …); [`destination_error`] and [`state_error`] turn
//! that one reading into each caller's error type, with a message that says what to do.
//!
//! A server error can quote the row: its DETAIL (`Key (email)=(ada@example.com) already
//! exists`, `Failing row contains (…)`), its CONTEXT, and the primary message of a data
//! exception (`invalid input syntax for type integer: "…"`). Only the primary message and
//! the SQLSTATE are kept, with what a data exception quotes cut out; the driver's error,
//! whose `Display` and `Debug` show the DETAIL, is never kept as a cause.

use rse_core::{BoxError, DestinationError, StateError};
use tokio_postgres::error::SqlState;

use super::connect::Unconnected;

/// What a failure means, read from its SQLSTATE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// No server error: I/O, a closed connection, a protocol hiccup.
    Connection,
    /// The server is unreachable, shutting down or not yet accepting connections (class
    /// 08, 57P01–57P03).
    Unreachable,
    /// The statement lost to another session: serialization failure, deadlock, lock not
    /// available, cancelled (40001, 40P01, 55P03, 57014).
    Conflict,
    /// The server ran out of disk, memory or connections (53100, 53200, 53300).
    Resources,
    /// The rest of the classes of conditions that may pass (25, 40, 53, 55, 57, 58).
    MayPass,
    /// A read-only transaction or server: a standby (25006).
    ReadOnly,
    /// Authentication failed (class 28).
    Unauthorized,
    /// The role lacks a privilege (42501).
    PermissionDenied,
    /// A table is missing (42P01).
    UndefinedTable,
    /// A column or schema is missing (42703, 3F000).
    UndefinedObject,
    /// The server refused the data: a data exception or a constraint (classes 22, 23).
    Data,
    /// Anything else: a mistake in a statement, a setting, a bug.
    Other,
}

impl Kind {
    /// The kind of a failure with SQLSTATE `code`, or of one without a server error.
    pub(crate) fn of(code: Option<&SqlState>) -> Kind {
        let Some(code) = code else { return Kind::Connection };
        let class = code.code().get(..2).unwrap_or_default();
        let is = |codes: &[SqlState]| codes.contains(code);
        if class == "08" || is(&[SqlState::ADMIN_SHUTDOWN, SqlState::CRASH_SHUTDOWN, SqlState::CANNOT_CONNECT_NOW]) {
            Kind::Unreachable
        } else if is(&[
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::T_R_DEADLOCK_DETECTED,
            SqlState::LOCK_NOT_AVAILABLE,
            SqlState::QUERY_CANCELED,
        ]) {
            Kind::Conflict
        } else if is(&[SqlState::DISK_FULL, SqlState::OUT_OF_MEMORY, SqlState::TOO_MANY_CONNECTIONS]) {
            Kind::Resources
        } else if *code == SqlState::READ_ONLY_SQL_TRANSACTION {
            Kind::ReadOnly
        } else if matches!(class, "25" | "40" | "53" | "55" | "57" | "58") {
            Kind::MayPass
        } else if class == "28" {
            Kind::Unauthorized
        } else if *code == SqlState::INSUFFICIENT_PRIVILEGE {
            Kind::PermissionDenied
        } else if *code == SqlState::UNDEFINED_TABLE {
            Kind::UndefinedTable
        } else if is(&[SqlState::UNDEFINED_COLUMN, SqlState::INVALID_SCHEMA_NAME]) {
            Kind::UndefinedObject
        } else if matches!(class, "22" | "23") {
            Kind::Data
        } else {
            Kind::Other
        }
    }
}

/// A driver error reduced to what an error of ours shows: its kind, the SQLSTATE and the
/// server's primary message.
#[derive(Debug)]
pub(crate) struct Failure {
    kind: Kind,
    /// The SQLSTATE, when the server answered.
    code: Option<String>,
    /// The server's primary message, or the driver's for a failure without a server error.
    message: String,
    /// The error kept as the cause.
    source: BoxError,
}

impl Failure {
    /// Reads `e`.
    pub(crate) fn of(e: tokio_postgres::Error) -> Failure {
        match e.as_db_error() {
            None => Failure { kind: Kind::Connection, code: None, message: e.to_string(), source: Box::new(e) },
            Some(db) => {
                let server = ServerError { code: db.code().code().to_owned(), message: shown_message(db) };
                Failure {
                    kind: Kind::of(Some(db.code())),
                    code: Some(server.code.clone()),
                    message: server.message.clone(),
                    source: Box::new(server),
                }
            }
        }
    }

    /// The destination's error for this failure while `doing`: retried when it may pass,
    /// the batch bisected when the server refused its data, fatal otherwise.
    pub(crate) fn into_destination_error(self, name: &str, doing: &str) -> DestinationError {
        let Some(code) = self.code else {
            // I/O, a closed connection, a protocol hiccup: may pass.
            return DestinationError::Transient {
                message: format!("{name}: {doing} failed: connection error"),
                source: Some(self.source),
            };
        };
        let message = format!("{name}: {doing} failed: {} (SQLSTATE {code})", self.message);
        match self.kind {
            Kind::UndefinedTable => DestinationError::fatal(format!(
                "{message}; create the table, or enable `with_create_table(true)` on the destination"
            )),
            Kind::Connection
            | Kind::Unreachable
            | Kind::Conflict
            | Kind::Resources
            | Kind::MayPass
            | Kind::ReadOnly => DestinationError::transient(message),
            Kind::Unauthorized => DestinationError::Unauthorized { message },
            Kind::Data => DestinationError::InvalidBatch { message },
            Kind::PermissionDenied | Kind::UndefinedObject | Kind::Other => DestinationError::fatal(message),
        }
    }

    /// The state store's error for this failure while `doing`, for the store `store` in
    /// `schema`: unavailable (and retried) when it may pass, incompatible when the tables
    /// are missing or altered, otherwise an error saying what to change.
    pub(crate) fn into_state_error(self, store: &str, schema: &str, doing: &str) -> StateError {
        let detail = &self.message;
        let unavailable = |message: String, source: BoxError| StateError::Unavailable { message, source: Some(source) };
        let other = |message: String, source: BoxError| StateError::Other { message, source: Some(source) };
        match self.kind {
            Kind::Connection => unavailable(
                format!(
                    "lost the connection to {store} while {doing} ({detail}); check that the server is up and \
                     reachable: the call can be retried"
                ),
                self.source,
            ),
            Kind::Unreachable => unavailable(
                format!("{store} is unreachable or restarting while {doing} ({detail}); the call can be retried"),
                self.source,
            ),
            Kind::Conflict => unavailable(
                format!("{store}: {doing} conflicted with another session ({detail}); the call can be retried"),
                self.source,
            ),
            Kind::Resources => unavailable(
                format!("{store} is out of resources while {doing} ({detail}); the call can be retried"),
                self.source,
            ),
            Kind::PermissionDenied => other(
                format!(
                    "{store}: permission denied while {doing} ({detail}); grant the role USAGE and CREATE on schema \
                     {schema} (and CREATE on the database if the schema does not exist yet), or choose a schema the \
                     role owns"
                ),
                self.source,
            ),
            Kind::ReadOnly => other(
                format!("{store} is read-only while {doing} ({detail}); point the store at the primary server"),
                self.source,
            ),
            Kind::UndefinedTable | Kind::UndefinedObject => StateError::Incompatible {
                message: format!(
                    "{store}: the state tables in schema {schema} are missing or altered ({detail}); restore them, or \
                     point the store at a new schema"
                ),
            },
            Kind::MayPass | Kind::Unauthorized | Kind::Data | Kind::Other => {
                other(format!("{store}: {doing} failed: {detail}"), self.source)
            }
        }
    }
}

/// What the server said, as far as it may be shown: the SQLSTATE and the primary message,
/// without the DETAIL, HINT and CONTEXT that can quote the row.
#[derive(Debug)]
struct ServerError {
    code: String,
    message: String,
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (SQLSTATE {})", self.message, self.code)
    }
}

impl std::error::Error for ServerError {}

/// The server's primary message, without the input a data exception (class 22) quotes:
/// PostgreSQL puts it in double quotes (`value "…" is out of range`) or after a colon
/// (`invalid input syntax for type integer: "…"`). Other classes name objects, not values.
fn shown_message(db: &tokio_postgres::error::DbError) -> String {
    let message = db.message();
    if !db.code().code().starts_with("22") {
        return message.to_owned();
    }
    let before_input = message.split_once(": ").map_or(message, |(head, _)| head);
    let mut shown = String::with_capacity(before_input.len());
    for (i, part) in before_input.split('"').enumerate() {
        // Odd parts are inside quotes.
        if i % 2 == 1 {
            shown.push_str("\"…\"");
        } else {
            shown.push_str(part);
        }
    }
    shown
}

/// The destination `name`'s error for `e`, met while `doing`.
pub(crate) fn destination_error(name: &str, doing: &str, e: tokio_postgres::Error) -> DestinationError {
    Failure::of(e).into_destination_error(name, doing)
}

/// The error of the state store `store` (tables in `schema`) for `e`, met while `doing`.
pub(crate) fn state_error(store: &str, schema: &str, doing: &str, e: tokio_postgres::Error) -> StateError {
    Failure::of(e).into_state_error(store, schema, doing)
}

/// The destination `name`'s error when no connection could be had.
pub(crate) fn destination_unconnected(name: &str, why: Unconnected) -> DestinationError {
    match why {
        Unconnected::Backend(e) => destination_error(name, "connecting", e),
        // Retrying does not change a certificate or the server's TLS setting.
        Unconnected::Tls(message, e) => {
            DestinationError::Fatal { message: format!("{name}: {message}"), source: Some(Box::new(e)) }
        }
        Unconnected::Transient(message) => DestinationError::transient(format!("{name}: {message}")),
    }
}

/// The state store's error when no connection could be had.
pub(crate) fn state_unconnected(store: &str, schema: &str, why: Unconnected) -> StateError {
    match why {
        Unconnected::Backend(e) => state_error(store, schema, "connecting", e),
        // Retrying does not change a certificate or the server's TLS setting.
        Unconnected::Tls(message, e) => {
            StateError::Other { message: format!("{store}: {message}"), source: Some(Box::new(e)) }
        }
        Unconnected::Transient(message) => {
            StateError::Unavailable { message: format!("{store}: {message}; the call can be retried"), source: None }
        }
    }
}

/// Whether a COPY refused with `code` is worth writing again by the upsert: a key already
/// in the table (the upsert updates it), or a table or value the binary COPY cannot take
/// although the checks before it passed (the upsert's casts may).
pub(crate) fn upsert_would_do(code: &SqlState) -> bool {
    [SqlState::UNIQUE_VIOLATION, SqlState::FEATURE_NOT_SUPPORTED, SqlState::INVALID_BINARY_REPRESENTATION]
        .contains(code)
}

/// Whether `e` is a unique violation: a COPY met a key that already has a row.
pub(crate) fn is_unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(text: &str) -> SqlState {
        SqlState::from_code(text)
    }

    #[test]
    fn each_sqlstate_reads_as_one_kind() {
        let cases = [
            ("08006", Kind::Unreachable),
            ("57P01", Kind::Unreachable),
            ("57P03", Kind::Unreachable),
            ("40001", Kind::Conflict),
            ("40P01", Kind::Conflict),
            ("55P03", Kind::Conflict),
            ("57014", Kind::Conflict),
            ("53100", Kind::Resources),
            ("53300", Kind::Resources),
            ("53400", Kind::MayPass),
            ("40002", Kind::MayPass),
            ("58030", Kind::MayPass),
            ("25006", Kind::ReadOnly),
            ("25P02", Kind::MayPass),
            ("28P01", Kind::Unauthorized),
            ("42501", Kind::PermissionDenied),
            ("42P01", Kind::UndefinedTable),
            ("42703", Kind::UndefinedObject),
            ("3F000", Kind::UndefinedObject),
            ("23505", Kind::Data),
            ("22P02", Kind::Data),
            ("42601", Kind::Other),
            ("P0001", Kind::Other),
        ];
        for (text, kind) in cases {
            assert_eq!(Kind::of(Some(&code(text))), kind, "{text}");
        }
        assert_eq!(Kind::of(None), Kind::Connection);
    }

    fn failure(kind: Kind, code: &str) -> Failure {
        Failure { kind, code: Some(code.to_owned()), message: "the server's words".to_owned(), source: "cause".into() }
    }

    #[test]
    fn the_destination_retries_what_may_pass_and_bisects_refused_data() {
        let d = |kind, code| failure(kind, code).into_destination_error("postgres:public.t", "upserting rows");
        for kind in [Kind::Unreachable, Kind::Conflict, Kind::Resources, Kind::MayPass, Kind::ReadOnly] {
            assert!(matches!(d(kind, "40001"), DestinationError::Transient { .. }), "{kind:?}");
        }
        assert!(matches!(d(Kind::Unauthorized, "28P01"), DestinationError::Unauthorized { .. }));
        match d(Kind::Data, "23514") {
            DestinationError::InvalidBatch { message } => {
                assert_eq!(message, "postgres:public.t: upserting rows failed: the server's words (SQLSTATE 23514)")
            }
            other => panic!("{other:?}"),
        }
        match d(Kind::UndefinedTable, "42P01") {
            DestinationError::Fatal { message, .. } => assert!(message.contains("with_create_table"), "{message}"),
            other => panic!("{other:?}"),
        }
        for kind in [Kind::PermissionDenied, Kind::UndefinedObject, Kind::Other] {
            assert!(matches!(d(kind, "42601"), DestinationError::Fatal { .. }), "{kind:?}");
        }
        let lost =
            Failure { kind: Kind::Connection, code: None, message: "connection closed".into(), source: "x".into() };
        assert!(matches!(lost.into_destination_error("d", "committing"), DestinationError::Transient { .. }));
    }

    #[test]
    fn the_state_store_is_unavailable_for_what_may_pass_and_incompatible_without_its_tables() {
        let s = |kind, code| failure(kind, code).into_state_error("postgres:h/db/s", "rse_state", "committing state");
        for kind in [Kind::Connection, Kind::Unreachable, Kind::Conflict, Kind::Resources] {
            match s(kind, "40001") {
                StateError::Unavailable { message, .. } => assert!(message.contains("retried"), "{message}"),
                other => panic!("{kind:?}: {other:?}"),
            }
        }
        for kind in [Kind::UndefinedTable, Kind::UndefinedObject] {
            assert!(matches!(s(kind, "42P01"), StateError::Incompatible { .. }), "{kind:?}");
        }
        match s(Kind::PermissionDenied, "42501") {
            StateError::Other { message, .. } => {
                assert!(message.contains("grant the role USAGE and CREATE on schema rse_state"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        match s(Kind::ReadOnly, "25006") {
            StateError::Other { message, .. } => assert!(message.contains("primary"), "{message}"),
            other => panic!("{other:?}"),
        }
        for kind in [Kind::MayPass, Kind::Unauthorized, Kind::Data, Kind::Other] {
            assert!(matches!(s(kind, "23505"), StateError::Other { .. }), "{kind:?}");
        }
    }

    /// `e`'s `Display` and `Debug`, and its causes': everything a host may print.
    fn shown(e: &(dyn std::error::Error + 'static)) -> String {
        let mut text = format!("{e} {e:?}");
        let mut cause = e.source();
        while let Some(c) = cause {
            text.push_str(&format!(" {c} {c:?}"));
            cause = c.source();
        }
        text
    }

    /// Errors whose DETAIL or message quotes the row: a unique key, a check constraint's
    /// failing row, the text a cast refused.
    async fn refusals(client: &tokio_postgres::Client) -> Vec<(&'static str, tokio_postgres::Error)> {
        let mut errors = Vec::new();
        for (code, sql) in [
            ("23505", "INSERT INTO people VALUES ('ada@example.com', 1)"),
            ("23514", "INSERT INTO people VALUES ('bob@example.com', -1)"),
            ("22P02", "SELECT 'ada@example.com'::text::int"),
        ] {
            let e = client.batch_execute(sql).await.unwrap_err();
            let said = e.as_db_error().map(|d| format!("{d}")).unwrap_or_default();
            assert!(said.contains("@example.com"), "the server no longer quotes the row: {said}");
            errors.push((code, e));
        }
        errors
    }

    #[tokio::test]
    async fn errors_never_show_the_row_values_a_server_quotes() {
        let url = rse_core::testing::service_url("RSE_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test");
        let client = match tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
            Ok((client, connection)) => {
                tokio::spawn(connection);
                client
            }
            Err(e) => return rse_core::testing::unavailable("PostgreSQL", &url, e),
        };
        client
            .batch_execute(
                "CREATE TEMP TABLE people (email text UNIQUE, age int CHECK (age >= 0));
                 INSERT INTO people VALUES ('ada@example.com', 36)",
            )
            .await
            .unwrap();
        for (code, e) in refusals(&client).await {
            let error = state_error("postgres:h/db/s", "rse_state", "committing state", e);
            let text = shown(&error);
            assert!(!text.contains("example.com"), "{code}: the state store's error shows a row value: {text}");
            assert!(text.contains(code), "{code}: the state store's error does not name the SQLSTATE: {text}");
        }
        for (code, e) in refusals(&client).await {
            let error = destination_error("postgres:public.people", "upserting rows", e);
            let text = shown(&error);
            assert!(!text.contains("example.com"), "{code}: the destination's error shows a row value: {text}");
            assert!(matches!(error, DestinationError::InvalidBatch { .. }), "{code}: {error:?}");
        }
    }
}

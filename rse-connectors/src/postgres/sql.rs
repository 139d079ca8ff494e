//! SQL text shared by the PostgreSQL destination and state store: quoted identifiers and
//! the statements both run.

/// `"name"` with embedded quotes doubled. An identifier cannot be a bound parameter, so it
/// is always quoted, never pasted as given.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `"schema"."name"`, each part quoted.
pub(crate) fn qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", quote_ident(schema), quote_ident(name))
}

/// The database a connection is on: its name, the server's port and the time the server
/// started (the same for every connection to one database of one server, and practically
/// never for two). Exactly-once compares the destination's and the state store's.
pub(crate) const DATABASE_IDENTITY: &str = "SELECT current_database() || ':' || coalesce(inet_server_port(), 0)::text \
     || ':' || pg_postmaster_start_time()::text";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted_with_inner_quotes_doubled() {
        assert_eq!(quote_ident("users"), "\"users\"");
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(qualified("public", "a.b"), "\"public\".\"a.b\"");
    }
}

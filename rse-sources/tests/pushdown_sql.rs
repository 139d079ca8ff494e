//! The warehouse-side diff's SQL for every dialect, compared with the expected text kept in
//! `tests/snapshots/pushdown/` (`RSE_BLESS=1` rewrites those files from what is generated;
//! review the diff before committing it), plus the names it refuses.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use proptest::prelude::*;
use rse_core::SourceError;
use rse_sources::Model;
use rse_sources::pushdown::{Dialect, HashColumn, HashTable, KeyColumn, KeyRange, PushdownSql, Statement};

const DIALECTS: [(Dialect, &str); 4] = [
    (Dialect::Postgres, "postgres"),
    (Dialect::Snowflake, "snowflake"),
    (Dialect::BigQuery, "bigquery"),
    (Dialect::Redshift, "redshift"),
];

/// Every statement of `sql`, one block each: its name, what it binds, the SQL (or the error).
fn render(sql: &PushdownSql) -> String {
    let mut out = String::new();
    let mut block = |name: &str, result: Result<Vec<Statement>, SourceError>| {
        out.push_str(&format!("-- {name}\n"));
        match result {
            Ok(statements) if statements.is_empty() => out.push_str("-- (no statement)\n"),
            Ok(statements) => {
                for s in statements {
                    if !s.params.is_empty() {
                        out.push_str(&format!("-- binds: {}\n", s.params.join("; ")));
                    }
                    out.push_str(&s.sql);
                    out.push_str(";\n");
                }
            }
            Err(e) => out.push_str(&format!("-- error: {e}\n")),
        }
        out.push('\n');
    };
    block("create_syncs_table", sql.create_syncs_table().map(|s| vec![s]));
    block("register_sync", sql.register_sync().map(|s| vec![s]));
    block("create_hash_table", sql.create_hash_table());
    block("read_epoch", sql.read_epoch().map(|s| vec![s]));
    block("write_epoch", sql.write_epoch().map(|s| vec![s]));
    block("forget_hashes", sql.forget_hashes().map(|s| vec![s]));
    block("changed_rows", sql.changed_rows().map(|s| vec![s]));
    block("vanished_keys", sql.vanished_keys().map(|s| vec![s]));
    block("diff_rows", sql.diff_rows().map(|s| vec![s]));
    block("all_rows", sql.all_rows().map(|s| vec![s]));
    block("record_intents (2 rows)", sql.record_intents(2).map(|s| vec![s]));
    block("record_delivered (2 upserts, 1 delete)", sql.record_delivered(2, 1));
    out
}

/// Compares `actual` with the snapshot `name`, or writes it when `RSE_BLESS` is set.
fn assert_snapshot(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots/pushdown").join(name);
    if std::env::var_os("RSE_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("snapshot {} is missing ({e}); run with RSE_BLESS=1 to write it", path.display()));
    if expected != actual {
        let first = expected.lines().zip(actual.lines()).position(|(a, b)| a != b);
        panic!(
            "snapshot {} differs (first differing line: {:?}); run with RSE_BLESS=1 to accept it\n--- expected\n{expected}\n--- actual\n{actual}",
            path.display(),
            first.map(|i| i + 1)
        );
    }
}

/// A table model keyed by one integer column, with a `json` column and every key type known.
fn table_model(dialect: Dialect) -> PushdownSql {
    let key_type = match dialect {
        Dialect::Postgres => "bigint",
        Dialect::Snowflake => "NUMBER(38, 0)",
        Dialect::BigQuery => "INT64",
        Dialect::Redshift => "BIGINT",
    };
    PushdownSql::new(dialect, Model::qualified("marts", "customers"), HashTable::for_sync("rse_state", "crm-contacts"))
        .with_columns([HashColumn::new("id"), HashColumn::new("email"), HashColumn::as_text("profile")])
        .with_key([KeyColumn::new("id").with_type(key_type)])
}

/// A query model with a composite key whose names need quoting; no key types.
fn query_model(dialect: Dialect) -> PushdownSql {
    PushdownSql::new(
        dialect,
        Model::query("SELECT region AS \"Region\", id AS \"we\"\"ird id\", name FROM src"),
        HashTable::new("Rse State", "hashes"),
    )
    .with_columns([HashColumn::new("Region"), HashColumn::new("we\"ird id"), HashColumn::new("name")])
    .with_key([KeyColumn::new("Region").with_text(true), KeyColumn::new("we\"ird id")])
}

/// The composite key again, typed, so that every write statement is written.
fn query_model_typed(dialect: Dialect) -> PushdownSql {
    let (text, int) = match dialect {
        Dialect::Postgres => ("text", "integer"),
        Dialect::Snowflake => ("VARCHAR", "NUMBER(38, 0)"),
        Dialect::BigQuery => ("STRING", "INT64"),
        Dialect::Redshift => ("VARCHAR(256)", "INTEGER"),
    };
    query_model(dialect).with_key([
        KeyColumn::new("Region").with_type(text).with_text(true),
        KeyColumn::new("we\"ird id").with_type(int),
    ])
}

#[test]
fn table_model_statements_match_their_snapshots() {
    for (dialect, name) in DIALECTS {
        assert_snapshot(&format!("table_model.{name}.sql"), &render(&table_model(dialect)));
    }
}

#[test]
fn query_model_with_a_composite_quoted_key_matches_its_snapshots() {
    for (dialect, name) in DIALECTS {
        assert_snapshot(&format!("query_model_untyped.{name}.sql"), &render(&query_model(dialect)));
        assert_snapshot(&format!("query_model_typed.{name}.sql"), &render(&query_model_typed(dialect)));
    }
}

#[test]
fn reads_without_key_order_are_the_ordered_reads_without_their_order_by() {
    for (dialect, name) in DIALECTS {
        let ordered = table_model(dialect);
        let unordered = table_model(dialect).with_key_order(false);
        let reads = |sql: &PushdownSql| {
            [sql.diff_rows(), sql.all_rows(), sql.changed_rows(), sql.vanished_keys()].map(|s| s.unwrap().sql)
        };
        for (with, without) in reads(&ordered).into_iter().zip(reads(&unordered)) {
            let at = with.rfind(" ORDER BY ").unwrap_or_else(|| panic!("{name}: no ORDER BY in {with}"));
            assert_eq!(without, with[..at], "{name}");
        }
        // The writes do not depend on it.
        assert_eq!(ordered.record_intents(2).unwrap().sql, unordered.record_intents(2).unwrap().sql, "{name}");
    }
}

const RANGES: [KeyRange; 4] = [KeyRange::Below, KeyRange::Between, KeyRange::From, KeyRange::Null];

/// The reads of each slice of the keys, unordered, as a parallel diff reads them.
fn render_ranges(sql: &PushdownSql) -> String {
    let mut out = String::new();
    for range in RANGES {
        let sql = sql.clone().with_key_order(false).with_key_range(range);
        let reads = [
            ("diff_rows", sql.diff_rows()),
            ("changed_rows", sql.changed_rows()),
            ("vanished_keys", sql.vanished_keys()),
            ("all_rows", sql.all_rows()),
        ];
        for (name, read) in reads {
            out.push_str(&format!("-- {name}, {range:?}\n"));
            let s = read.unwrap();
            if !s.params.is_empty() {
                out.push_str(&format!("-- binds: {}\n", s.params.join("; ")));
            }
            out.push_str(&format!("{};\n\n", s.sql));
        }
    }
    out
}

/// How many values `sql` binds: distinct `$n`, each `?`, distinct `@name` (BigQuery).
fn placeholders(dialect: Dialect, sql: &str) -> usize {
    match dialect {
        Dialect::Snowflake => sql.matches('?').count(),
        Dialect::BigQuery => {
            let mut names: Vec<&str> = sql
                .match_indices('@')
                .map(|(at, _)| {
                    let rest = &sql[at + 1..];
                    &rest[..rest.find(|c: char| !c.is_ascii_alphanumeric() && c != '_').unwrap_or(rest.len())]
                })
                .collect();
            names.sort_unstable();
            names.dedup();
            names.len()
        }
        _ => (1..10).filter(|n| sql.contains(&format!("${n}"))).count(),
    }
}

#[test]
fn key_range_reads_match_their_snapshots_and_bind_what_they_say() {
    for (dialect, name) in DIALECTS {
        let (table, query) = (table_model(dialect), query_model_typed(dialect));
        assert_snapshot(
            &format!("key_ranges.{name}.sql"),
            &format!("{}{}", render_ranges(&table), render_ranges(&query)),
        );
        for range in RANGES {
            for sql in [&table, &query] {
                let sql = sql.clone().with_key_range(range);
                for read in [sql.diff_rows(), sql.changed_rows(), sql.vanished_keys(), sql.all_rows()] {
                    let read = read.unwrap();
                    assert_eq!(placeholders(dialect, &read.sql), read.params.len(), "{name} {range:?}: {}", read.sql);
                }
            }
        }
    }
}

#[test]
fn a_slice_of_the_keys_without_the_key_type_says_which_column_needs_one() {
    for (dialect, _) in DIALECTS {
        let sql = query_model(dialect).with_key_range(KeyRange::Between);
        let err = sql.diff_rows().unwrap_err();
        assert!(err.to_string().contains("key column `Region`"), "{}: {err}", dialect.name());
        // Every key, or the `NULL` keys, need no bound and so no type.
        assert!(query_model(dialect).with_key_range(KeyRange::Null).diff_rows().is_ok());
        assert!(query_model(dialect).diff_rows().is_ok());
    }
}

#[test]
fn redshift_needs_the_key_types_to_create_the_hash_table() {
    let err = query_model(Dialect::Redshift).create_hash_table().unwrap_err();
    assert!(matches!(err, SourceError::Unsupported(_)), "{err}");
    assert!(err.to_string().contains("`Region`") && err.to_string().contains("with_type"), "{err}");
}

#[test]
fn writes_without_key_types_say_which_column_needs_one() {
    // BigQuery's array of structs carries its types itself.
    assert!(query_model(Dialect::BigQuery).record_intents(1).is_ok());
    for dialect in [Dialect::Postgres, Dialect::Snowflake, Dialect::Redshift] {
        let err = query_model(dialect).record_intents(1).unwrap_err();
        assert!(err.to_string().contains("key column `Region`"), "{}: {err}", dialect.name());
    }
}

#[test]
fn redshift_writes_need_rows() {
    assert!(query_model_typed(Dialect::Redshift).record_intents(0).is_err());
    assert!(query_model_typed(Dialect::Redshift).record_delivered(0, 0).unwrap().is_empty());
    assert_eq!(query_model_typed(Dialect::Redshift).record_delivered(3, 0).unwrap().len(), 1);
}

fn check_error(sql: PushdownSql, expected: &str) {
    let err = sql.changed_rows().unwrap_err();
    assert!(err.to_string().contains(expected), "expected `{expected}` in: {err}");
}

#[test]
fn invalid_names_are_refused_with_what_to_change() {
    let base = |dialect| table_model(dialect);
    check_error(base(Dialect::Postgres).with_key([KeyColumn::new("")]), "name is empty");
    check_error(base(Dialect::Postgres).with_key([KeyColumn::new("id\n")]), "control character");
    check_error(
        base(Dialect::Postgres).with_key([KeyColumn::new("mail")]),
        "not a column of the model (columns: id, email, profile)",
    );
    check_error(
        base(Dialect::Postgres).with_columns([HashColumn::new("rse_hash")]).with_key([KeyColumn::new("rse_hash")]),
        "rename it",
    );
    check_error(
        base(Dialect::Postgres).with_key([KeyColumn::new("id").with_type("bigint); DROP TABLE x; --")]),
        "not a plain type name",
    );
    check_error(base(Dialect::Postgres).with_key([KeyColumn::new("id").with_type("text'")]), "not a plain type name");
    check_error(base(Dialect::Postgres).with_key([]), "with_key");
    check_error(base(Dialect::Postgres).with_columns([]), "columns");
    let long = "x".repeat(64);
    check_error(
        PushdownSql::new(Dialect::Postgres, Model::table("m"), HashTable::new("s", &long))
            .with_columns([HashColumn::new("id")])
            .with_key([KeyColumn::new("id")]),
        "longer than PostgreSQL allows",
    );
    // 64 bytes fit Redshift's 127.
    assert!(
        PushdownSql::new(Dialect::Redshift, Model::table("m"), HashTable::new("s", &long))
            .with_columns([HashColumn::new("id")])
            .with_key([KeyColumn::new("id")])
            .changed_rows()
            .is_ok()
    );
    check_error(
        PushdownSql::new(Dialect::BigQuery, Model::qualified("ds", "t`x"), HashTable::new("p.ds", "h"))
            .with_columns([HashColumn::new("id")])
            .with_key([KeyColumn::new("id")]),
        "backtick",
    );
}

#[test]
fn the_one_pass_diff_refuses_model_columns_with_its_own_names() {
    for name in ["rse_hash", "rse_present"] {
        let sql = table_model(Dialect::Postgres).with_columns([HashColumn::new("id"), HashColumn::new(name)]);
        assert!(sql.changed_rows().is_ok());
        let err = sql.diff_rows().unwrap_err().to_string();
        assert!(err.contains(&format!("`{name}`")) && err.contains("rename it"), "{err}");
    }
}

#[test]
fn bigquery_and_snowflake_schemas_may_name_their_project_or_database() {
    let sql = PushdownSql::new(
        Dialect::BigQuery,
        Model::qualified("my-project.marts", "t"),
        HashTable::new("my-project.rse", "h"),
    )
    .with_columns([HashColumn::new("id")])
    .with_key([KeyColumn::new("id")]);
    assert!(sql.vanished_keys().unwrap().sql.starts_with("SELECT h.`id` FROM `my-project`.`rse`.`h` AS h"));
    let sql = PushdownSql::new(Dialect::Snowflake, Model::qualified("DB.MARTS", "T"), HashTable::new("DB.RSE", "H"))
        .with_columns([HashColumn::new("ID")])
        .with_key([KeyColumn::new("ID")]);
    assert!(sql.vanished_keys().unwrap().sql.contains("FROM \"DB\".\"MARTS\".\"T\" AS m"));
}

#[test]
fn hash_table_names_per_sync_are_stable_and_distinct() {
    let a = HashTable::for_sync("s", "crm-contacts");
    // FNV-1a (32 bits) of "crm-contacts".
    assert_eq!(a.name, "rse_hashes_crm_contacts_6d588617");
    assert_ne!(HashTable::for_sync("s", "crm_contacts").name, a.name);
    let long = HashTable::for_sync("s", &"é".repeat(200));
    assert!(long.name.len() <= 63, "{}", long.name);
}

proptest! {
    /// Whatever a column is called (short of control characters), the generated SQL quotes
    /// it so that the dialect reads back exactly that name, and nothing else escapes.
    #[test]
    fn any_name_is_quoted_back_to_itself(name in "[^\\p{Cc}]{1,20}") {
        let sql = PushdownSql::new(Dialect::Postgres, Model::table("t"), HashTable::new("s", "h"))
            .with_columns([HashColumn::new(name.clone())])
            .with_key([KeyColumn::new(name.clone()).with_type("text")]);
        prop_assume!(name != "rse_hash" && name.len() <= 63);
        let text = sql.vanished_keys().unwrap().sql;
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        let prefix = format!("SELECT h.{quoted} FROM \"s\".\"h\" AS h");
        prop_assert!(text.starts_with(&prefix));
        // Outside quoted identifiers, the statement is the fixed template.
        let mut outside = String::new();
        let mut inside = false;
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '"' {
                if inside && chars.peek() == Some(&'"') { chars.next(); continue; }
                inside = !inside;
                continue;
            }
            if !inside { outside.push(c); }
        }
        prop_assert!(!inside);
        prop_assert_eq!(outside, "SELECT h. FROM . AS h WHERE NOT EXISTS (SELECT 1 FROM  AS m WHERE m. = h.) ORDER BY h. ASC NULLS FIRST");
    }
}

//! The README's metrics table is the catalog's: a metric added, renamed or documented anew in
//! `rse_core::metrics` must reach the README too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

const START: &str = "<!-- metrics-table:start -->\n";
const END: &str = "<!-- metrics-table:end -->";

#[test]
fn the_readme_metrics_table_is_the_catalog() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let expected = rse::metrics::markdown_table();
    let Some((_, after)) = readme.split_once(START) else {
        panic!("README.md has no `{}` line; put the table below it:\n\n{expected}", START.trim_end())
    };
    let Some((table, _)) = after.split_once(END) else { panic!("README.md has no `{END}` line after the table") };
    if table != expected {
        panic!(
            "the metrics table in README.md (between `{}` and `{END}`) is not the catalog's; replace it \
             with:\n\n{expected}",
            START.trim_end()
        );
    }
}

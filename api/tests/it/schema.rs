//! Every SQL statement the workspace holds (`testkit::schema`: each store's
//! `statements()`) is prepared against a freshly migrated database, so a
//! statement that no longer fits the schema fails here, not when a test
//! happens to run it.

use std::collections::HashSet;
use testkit::schema::{statements, unprepared};

#[tokio::test]
async fn every_statement_prepares_against_the_migrated_schema() {
    let (_, pool) = testkit::database().await;
    let statements = statements();
    let names: HashSet<&str> = statements.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names.len(), statements.len(), "statement names are unique");
    for crate_prefix in [
        "phone_validations.",
        "receipts.",
        "outbox.",
        "projects.",
        "create.",
        "judge.",
        "dispatcher.",
        "webhooks.",
    ] {
        assert!(
            names.iter().any(|name| name.starts_with(crate_prefix)),
            "{crate_prefix}* statements are listed"
        );
    }
    let refused = unprepared(&pool, &statements).await;
    assert!(refused.is_empty(), "statements the schema refuses: {refused:#?}");
}

#[tokio::test]
async fn a_renamed_column_fails_the_statements_that_use_it() {
    let (_, pool) = testkit::database().await;
    sqlx::query("ALTER TABLE phone_validations RENAME COLUMN failed_reason TO failure_reason")
        .execute(&pool)
        .await
        .expect("rename a column");
    let refused = unprepared(&pool, &statements()).await;
    let refused: HashSet<&str> = refused.iter().map(|(name, _)| name.as_str()).collect();
    for name in [
        "phone_validations.fail",
        "phone_validations.fetch",
        "validations.page",
        "webhooks.validations",
        "dispatcher.load_many",
    ] {
        assert!(refused.contains(name), "{name} uses the renamed column: {refused:?}");
    }
    assert!(
        !refused.contains("projects.insert"),
        "statements that do not use it still prepare"
    );
}

/// The `.rs` files under `dir`, recursively.
fn sources(dir: &std::path::Path, found: &mut Vec<std::path::PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            sources(&path, found)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
    Ok(())
}

#[test]
fn no_statement_is_written_inline_where_the_lists_cannot_see_it() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for krate in ["api", "shared", "dispatcher", "webhook-worker"] {
        sources(&root.join(krate).join("src"), &mut files).expect("read the sources");
    }
    assert!(files.len() > 50, "the sources are found: {}", files.len());
    let mut inline = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read a source file");
        for call in [
            "sqlx::query(",
            "sqlx::query_as(",
            "sqlx::query_scalar(",
            "sqlx::query_scalar::<",
        ] {
            for (at, _) in text.match_indices(call) {
                let argument = text[at + call.len()..].trim_start();
                let argument = argument.split_once('(').map_or(argument, |(turbofish, rest)| {
                    if call.ends_with('<') && turbofish.ends_with('>') {
                        rest.trim_start()
                    } else {
                        argument
                    }
                });
                if argument.starts_with('"') || argument.starts_with("r#") || argument.starts_with("&format!") {
                    inline.push(format!("{}: {}", file.display(), &text[at..(at + 60).min(text.len())]));
                }
            }
        }
    }
    assert!(
        inline.is_empty(),
        "statements outside a store's const or static (so outside its statements()): {inline:#?}"
    );
}

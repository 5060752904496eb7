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

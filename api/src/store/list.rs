//! Reading a client's own rows: one by id, or a page of a filtered list,
//! newest first. Every statement is scoped to the client, so another
//! tenant's rows are simply not there. The feature stores name the table,
//! the columns and the filters; the statements are built here, and
//! `statements` builds them with every filter a store uses, for the schema
//! check.

use crate::envelope::Page;
use crate::error::ApiResult;
use crate::listing::{Paging, MAX_COUNTED};
use shared::db::Statements;
use shared::ObjectId;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::{Arguments, FromRow, PgPool};
use std::future::Future;

/// A table as its lists read it.
pub struct Listed {
    pub table: &'static str,
    pub columns: &'static str,
    /// Every column a list of this table may filter on (`client_id` first).
    pub filters: &'static [&'static str],
}

/// The `WHERE` clause of a client's query, built one condition at a time.
pub struct Filter {
    conditions: String,
    args: PgArguments,
    count: usize,
}

impl Filter {
    /// The client's own rows.
    pub fn client(client: &ObjectId) -> ApiResult<Self> {
        let filter = Self {
            conditions: String::new(),
            args: PgArguments::default(),
            count: 0,
        };
        filter.eq("client_id", Some(client))
    }

    /// `AND <column> = <value>` when `value` is given.
    pub fn eq<'q, T>(mut self, column: &str, value: Option<T>) -> ApiResult<Self>
    where
        T: sqlx::Encode<'q, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + 'q,
    {
        let Some(value) = value else {
            return Ok(self);
        };
        self.args.add(value).map_err(|e| anyhow::anyhow!(e))?;
        self.count += 1;
        add_condition(&mut self.conditions, column, self.count);
        Ok(self)
    }
}

fn add_condition(conditions: &mut String, column: &str, number: usize) {
    if !conditions.is_empty() {
        conditions.push_str(" AND ");
    }
    conditions.push_str(&format!("{column} = ${number}"));
}

fn one_sql(table: &str, columns: &str) -> String {
    format!("SELECT {columns} FROM {table} WHERE id = $1 AND client_id = $2")
}

fn page_sql(table: &str, columns: &str, conditions: &str, count: usize) -> String {
    format!(
        "SELECT {columns} FROM {table} WHERE {conditions} ORDER BY id DESC LIMIT ${} OFFSET ${}",
        count + 1,
        count + 2
    )
}

fn count_sql(table: &str, conditions: &str) -> String {
    format!("SELECT count(*) FROM (SELECT 1 FROM {table} WHERE {conditions} LIMIT {MAX_COUNTED}) AS matching")
}

/// The row `id` of the table if it belongs to `client`.
pub async fn one<T>(pool: &PgPool, listed: &Listed, id: &ObjectId, client: &ObjectId) -> ApiResult<Option<T>>
where
    T: for<'r> FromRow<'r, PgRow> + Send + Unpin,
{
    Ok(sqlx::query_as(&one_sql(listed.table, listed.columns))
        .bind(id)
        .bind(client)
        .fetch_optional(pool)
        .await?)
}

/// One page of the table's rows matching `filter`, newest first, with the
/// (bounded) number of matching rows.
pub async fn page<T>(pool: &PgPool, listed: &Listed, filter: Filter, paging: Paging) -> ApiResult<Page<T>>
where
    T: for<'r> FromRow<'r, PgRow> + Send + Unpin,
{
    let Filter {
        conditions,
        args,
        count,
    } = filter;
    let page_args = paged(&args, paging).map_err(|e| anyhow::anyhow!(e))?;
    let page_sql = page_sql(listed.table, listed.columns, &conditions, count);
    let count_sql = count_sql(listed.table, &conditions);
    let rows = sqlx::query_as_with(&page_sql, page_args).fetch_all(pool);
    let total = sqlx::query_scalar_with(&count_sql, args).fetch_one(pool);
    Ok(bounded(paging, rows, total).await?)
}

/// The arguments of a page's statement: the filter's `args`, then its
/// `LIMIT` and `OFFSET`.
pub fn paged(args: &PgArguments, paging: Paging) -> Result<PgArguments, BoxDynError> {
    let mut paged = args.clone();
    paged.add(paging.limit)?;
    paged.add(paging.offset())?;
    Ok(paged)
}

/// A page of a list: its `rows`, read only when the page starts within the
/// rows a list reaches (`MAX_COUNTED`, so a deeper `OFFSET` scans nothing),
/// and the bounded count of the matching rows, `total`.
pub async fn bounded<T, E>(
    paging: Paging,
    rows: impl Future<Output = Result<Vec<T>, E>>,
    total: impl Future<Output = Result<i64, E>>,
) -> Result<Page<T>, E> {
    let data = if paging.offset() >= MAX_COUNTED {
        Vec::new()
    } else {
        rows.await?
    };
    Ok(Page {
        data,
        page: paging.page,
        limit: paging.limit,
        total: total.await?,
    })
}

/// The statements `one` and `page` send for `listed`, every filter applied.
pub fn statements(name: &str, listed: &Listed) -> Statements {
    let mut conditions = String::new();
    for (number, column) in listed.filters.iter().enumerate() {
        add_condition(&mut conditions, column, number + 1);
    }
    let count = listed.filters.len();
    vec![
        (format!("{name}.one"), one_sql(listed.table, listed.columns)),
        (
            format!("{name}.page"),
            page_sql(listed.table, listed.columns, &conditions, count),
        ),
        (format!("{name}.count"), count_sql(listed.table, &conditions)),
    ]
}

//! Reading a client's own resources: one by id, or a page of a filtered
//! list, newest first. Every query is scoped to the client, so another
//! tenant's rows are simply not there.
//!
//! Lists are bounded: `total` counts at most `MAX_COUNTED` rows (a count of
//! millions would cost more than the page itself), and a page reaches only
//! those: one that starts past them is empty (without scanning the rows an
//! `OFFSET` that deep would skip); narrower filters reach the rest.

use crate::envelope::Page;
use crate::error::ApiResult;
use crate::extract::Paging;
use shared::ObjectId;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::{Arguments, FromRow, PgPool};

/// The most rows a list counts, and how deep a page may start.
pub const MAX_COUNTED: i64 = 10_000;

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
        if !self.conditions.is_empty() {
            self.conditions.push_str(" AND ");
        }
        self.conditions.push_str(&format!("{column} = ${}", self.count));
        Ok(self)
    }
}

/// The row `id` of `table` if it belongs to `client`.
pub async fn one<T>(pool: &PgPool, table: &str, columns: &str, id: &ObjectId, client: &ObjectId) -> ApiResult<Option<T>>
where
    T: for<'r> FromRow<'r, PgRow> + Send + Unpin,
{
    Ok(sqlx::query_as(&format!(
        "SELECT {columns} FROM {table} WHERE id = $1 AND client_id = $2"
    ))
    .bind(id)
    .bind(client)
    .fetch_optional(pool)
    .await?)
}

/// One page of `table`'s rows matching `filter`, newest first, with the
/// (bounded) number of matching rows.
pub async fn page<T>(pool: &PgPool, table: &str, columns: &str, filter: Filter, paging: Paging) -> ApiResult<Page<T>>
where
    T: for<'r> FromRow<'r, PgRow> + Send + Unpin,
{
    let Filter {
        conditions,
        args,
        count,
    } = filter;
    let data: Vec<T> = if paging.offset() >= MAX_COUNTED {
        Vec::new()
    } else {
        let mut page_args = args.clone();
        page_args.add(paging.limit).map_err(|e| anyhow::anyhow!(e))?;
        page_args.add(paging.offset()).map_err(|e| anyhow::anyhow!(e))?;
        sqlx::query_as_with(
            &format!(
                "SELECT {columns} FROM {table} WHERE {conditions} ORDER BY id DESC LIMIT ${} OFFSET ${}",
                count + 1,
                count + 2
            ),
            page_args,
        )
        .fetch_all(pool)
        .await?
    };
    let total: i64 = sqlx::query_scalar_with(
        &format!("SELECT count(*) FROM (SELECT 1 FROM {table} WHERE {conditions} LIMIT {MAX_COUNTED}) AS matching"),
        args,
    )
    .fetch_one(pool)
    .await?;
    Ok(Page {
        data,
        page: paging.page,
        limit: paging.limit,
        total,
    })
}

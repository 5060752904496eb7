//! Conversion stats over many validations (docs/contract.md §10: within 1 s over
//! 1,000,000 in range). Generates a client's validations in a fresh
//! database (through the real trigger, in statements of 50,000 like a long
//! day of bursts), moves a share of them to sent, delivered, validated and
//! failed, folds the counts as the API's upkeep does, then times
//! `api::stats::query` for every `groupBy`, over the rollup alone and with
//! a backlog of unfolded deltas.
//!
//! `cargo run --release -p bench --bin stats -- --validations 1000000`
//!
//! With `--prefixes N`, instead: a client with N prefixes, each with rollup
//! rows in 3 hours and 3 buckets of time to validate, asked
//! `groupBy=prefix` through the real API while `/health` is timed beside it
//! (the answer must not pin the API's threads).
//!
//! `cargo run --release -p bench --bin stats -- --prefixes 50000`

use anyhow::Context;
use api::stats::{self, GroupBy, StatsQuery};
use clap::Parser;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// Validations to generate.
    #[arg(long, default_value_t = 1_000_000)]
    validations: u64,
    /// Timed runs of each query.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Time `groupBy=prefix` over this many prefixes through the API instead.
    #[arg(long)]
    prefixes: Option<u64>,
}

/// `--prefixes`: N prefixes × 3 hours in the rollup, 3 buckets each, then
/// `groupBy=prefix` through the API with `/health` polled meanwhile.
async fn many_prefixes(prefixes: u64, runs: usize) -> anyhow::Result<()> {
    let app = testkit::TestApp::spawn().await;
    let n = i64::try_from(prefixes).context("prefixes")?;
    let key = "$1, date_trunc('hour', now()) - make_interval(hours => h), 'p', 'f', 'PA',
               '+' || (1000000 + g)::text, 'sms', 'twilio'";
    sqlx::query(&format!(
        "INSERT INTO validation_stats (client_id, hour, project_id, project_flow_id, region, prefix, channel,
                provider, created, sent, delivered, validated, failed)
         SELECT {key}, 10, 10, 9, 7, 1 FROM generate_series(1, $2::bigint) AS g, generate_series(0, 2) AS h"
    ))
    .bind(&app.client)
    .bind(n)
    .execute(&app.pool)
    .await?;
    sqlx::query(&format!(
        "INSERT INTO validation_stats_ttv (client_id, hour, project_id, project_flow_id, region, prefix, channel,
                provider, bucket, validated)
         SELECT {key}, b, 2 + b FROM generate_series(1, $2::bigint) AS g, generate_series(0, 2) AS h,
                generate_series(1, 3) AS b"
    ))
    .bind(&app.client)
    .bind(n)
    .execute(&app.pool)
    .await?;
    println!("{prefixes} prefixes × 3 hours in the rollup, 3 buckets each");
    let http = reqwest::Client::new();
    for run in 0..runs {
        let stop = tokio_util::sync::CancellationToken::new();
        let health = {
            let (http, url, stop) = (http.clone(), format!("{}/health", app.base), stop.clone());
            tokio::spawn(async move {
                let mut worst = Duration::ZERO;
                let mut polls = 0;
                while !stop.is_cancelled() {
                    let started = Instant::now();
                    let _ = http.get(&url).send().await;
                    worst = worst.max(started.elapsed());
                    polls += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                (polls, worst)
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = Instant::now();
        let answer = app.get("/v2/phone-validations/stats?groupBy=prefix").await;
        let took = started.elapsed();
        stop.cancel();
        let (polls, worst) = health.await?;
        let rows = answer.data().as_array().map_or(0, Vec::len);
        println!(
            "run {run}: groupBy=prefix {} with {rows} rows in {took:.1?}; /health worst {worst:.1?} over {polls} polls",
            answer.status
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(prefixes) = args.prefixes {
        return many_prefixes(prefixes, args.runs).await;
    }
    let (url, pool) = testkit::infra::database().await;
    println!("database {url}");
    let client = testkit::api::create_client(&pool, "Stats").await;
    let (project, flow) = bench::rows::project_and_flow(&pool, &client, serde_json::json!({})).await?;

    // Spread over the last 20 hours, 40 prefixes of 4 countries, two
    // channels and two providers.
    let started = Instant::now();
    let chunk = 50_000u64;
    let mut made = 0;
    while made < args.validations {
        let n = chunk.min(args.validations - made);
        sqlx::query(
            "INSERT INTO phone_validations (id, client_id, project_id, project_flow_id, country_code, phone,
                 phone_gateway, validation_method, type, otp_length, expires_at, max_attempts, region, created_at)
             SELECT lpad(to_hex($4 + g), 24, '0'), $1, $2, $3,
                    (ARRAY['+507', '+57', '+1', '+44'])[1 + g % 4],
                    (600 + g % 40)::text || lpad((g % 100000)::text, 5, '0'),
                    (ARRAY['sms', 'whatsapp'])[1 + g % 2], 'verificationCode', 'login', 6,
                    now() + interval '1 day', 3,
                    (ARRAY['PA', 'CO', 'US', 'GB'])[1 + g % 4],
                    now() - make_interval(secs => (g % 72000)::float8)
               FROM generate_series(1, $5::bigint) AS g",
        )
        .bind(&client)
        .bind(&project)
        .bind(&flow)
        .bind(i64::try_from(made).context("count")?)
        .bind(i64::try_from(n).context("count")?)
        .execute(&pool)
        .await?;
        made += n;
    }
    println!("{made} validations inserted in {:.1?}", started.elapsed());
    let started = Instant::now();
    for statement in [
        "UPDATE phone_validations SET status = 'sent',
                provider_confirmation = jsonb_build_object('provider', CASE WHEN phone_gateway = 'sms' THEN 'twilio' ELSE 'meta' END)
          WHERE right(id, 1) <> 'f'",
        "UPDATE phone_validations SET provider_confirmation = provider_confirmation || '{\"deliveryStatus\": \"delivered\"}'
          WHERE status = 'sent' AND right(id, 1) NOT IN ('e', 'd')",
        "UPDATE phone_validations SET status = 'validated', validated_at = created_at + make_interval(secs => (5 + length(id) % 7 + ascii(right(id, 1)) % 40)::float8)
          WHERE status = 'sent' AND right(id, 1) IN ('0', '1', '2', '3', '4', '5', '6', '7', '8', 'a', 'b')",
        "UPDATE phone_validations SET status = 'failed', failed_reason = 'expired' WHERE status = 'sent' AND right(id, 1) = 'c'",
    ] {
        sqlx::query(statement).execute(&pool).await?;
    }
    println!("statuses moved in {:.1?}", started.elapsed());
    let deltas: i64 = sqlx::query_scalar("SELECT count(*) FROM validation_stats_deltas")
        .fetch_one(&pool)
        .await?;

    let queries = |label: &'static str| {
        let pool = pool.clone();
        let client = client.clone();
        async move {
            for group_by in GroupBy::ALL {
                let query = StatsQuery {
                    client: client.clone(),
                    from: chrono::Utc::now() - chrono::Duration::hours(24),
                    to: chrono::Utc::now(),
                    group_by,
                    project: None,
                    flow: None,
                };
                let mut times = Vec::new();
                let mut rows = Vec::new();
                for _ in 0..args.runs {
                    let started = Instant::now();
                    rows = stats::query(&pool, &query).await?;
                    times.push(started.elapsed());
                }
                times.sort();
                let created: i64 = rows.iter().map(|r| r.created).sum();
                println!(
                    "{label:>9} groupBy={group_by:<8?} {:>3} rows, created {created}: median {:>7.1?}, max {:>7.1?}",
                    rows.len(),
                    times[times.len() / 2],
                    times.last().copied().unwrap_or(Duration::ZERO),
                );
            }
            anyhow::Ok(())
        }
    };
    println!("{deltas} delta rows unfolded");
    queries("unfolded").await?;
    let started = Instant::now();
    loop {
        let mut tx = pool.begin().await?;
        let folded = stats::fold(&mut tx, Duration::from_secs(3600)).await?;
        tx.commit().await?;
        if folded == 0 {
            break;
        }
    }
    // As the API's upkeep does after each fold (here once, after the backlog).
    stats::vacuum(&pool).await?;
    let rollup: i64 = sqlx::query_scalar("SELECT count(*) FROM validation_stats")
        .fetch_one(&pool)
        .await?;
    println!("folded in {:.1?} into {rollup} rollup rows", started.elapsed());
    queries("folded").await?;
    Ok(())
}

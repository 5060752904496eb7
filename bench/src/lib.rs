//! Shared pieces of the benchmarks: latency summaries.

pub mod rows;
pub mod webhook_endpoints;
pub mod webhook_receiver;

/// p50 / p99 / max of a set of durations in milliseconds.
pub fn percentiles(mut millis: Vec<f64>) -> (f64, f64, f64) {
    if millis.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    millis.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| millis[((millis.len() as f64 - 1.0) * q).round() as usize];
    (at(0.50), at(0.99), at(1.0))
}

/// CPU seconds (user + system) used so far by every process on the machine,
/// summed per command name (`postgres`, `beam.smp`, `dispatcher`, ...).
/// Two snapshots around a run show where the machine's CPU went.
pub fn cpu_by_command() -> std::collections::BTreeMap<String, f64> {
    let mut totals = std::collections::BTreeMap::new();
    // /proc/<pid>/stat counts in USER_HZ clock ticks, 100 per second on Linux.
    let ticks_per_second = 100.0;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return totals;
    };
    for entry in entries.flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ... utime(14) stime(15)
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = stat[open + 1..close].to_owned();
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
        // Fields after "(comm) ": state is index 0, utime 11, stime 12.
        *totals.entry(comm).or_insert(0.0) += (ticks(11) + ticks(12)) / ticks_per_second;
    }
    totals
}

/// The CPU each command used between two snapshots, largest first (dead
/// processes drop out of the second snapshot, so only live ones count).
pub fn cpu_used(
    before: &std::collections::BTreeMap<String, f64>,
    after: &std::collections::BTreeMap<String, f64>,
) -> Vec<(String, f64)> {
    let mut used: Vec<(String, f64)> = after
        .iter()
        .map(|(comm, t)| (comm.clone(), t - before.get(comm).copied().unwrap_or(0.0)))
        // A kernel worker's name follows its current work queue, so its
        // snapshots do not pair up: left out.
        .filter(|(comm, t)| *t >= 0.05 && !comm.starts_with("kworker"))
        .collect();
    used.sort_by(|a, b| b.1.total_cmp(&a.1));
    used
}

/// Mean seconds per stage of a histogram with a `stage` label (e.g.
/// `webhook_stage_seconds`), from this process's Prometheus recorder.
pub fn stage_means(metric: &str) -> Vec<(String, f64, u64)> {
    let text = shared::ops::prometheus().render();
    let mut sums = std::collections::BTreeMap::<String, (f64, u64)>::new();
    for line in text.lines() {
        let (kind, rest) = if let Some(rest) = line.strip_prefix(&format!("{metric}_sum{{")) {
            ("sum", rest)
        } else if let Some(rest) = line.strip_prefix(&format!("{metric}_count{{")) {
            ("count", rest)
        } else {
            continue;
        };
        let Some((labels, value)) = rest.split_once("} ") else {
            continue;
        };
        let stage = labels
            .split(',')
            .find_map(|l| l.strip_prefix("stage=\""))
            .map(|s| s.trim_end_matches('"').to_owned())
            .unwrap_or_default();
        let entry = sums.entry(stage).or_default();
        match kind {
            "sum" => entry.0 = value.trim().parse().unwrap_or(0.0),
            _ => entry.1 = value.trim().parse::<f64>().unwrap_or(0.0) as u64,
        }
    }
    sums.into_iter()
        .map(|(stage, (sum, count))| (stage, if count > 0 { sum / count as f64 } else { 0.0 }, count))
        .collect()
}

/// Prints the CPU each command used between two snapshots, one line.
pub fn print_cpu(
    label: &str,
    before: &std::collections::BTreeMap<String, f64>,
    after: &std::collections::BTreeMap<String, f64>,
) {
    let used = cpu_used(before, after);
    let total: f64 = used.iter().map(|(_, t)| t).sum();
    let parts: Vec<String> = used.iter().take(10).map(|(c, t)| format!("{c} {t:.2}")).collect();
    println!("{label}: CPU-s {total:.2} in all: {}", parts.join(", "));
}

/// A counter of this process's Prometheus registry by the value of one
/// label (`""` for a series without it).
pub fn counter_by(metric: &str, label: &str) -> std::collections::BTreeMap<String, f64> {
    let text = shared::ops::prometheus().render();
    let mut values = std::collections::BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(metric) else {
            continue;
        };
        let (labels, value) = match rest.strip_prefix('{') {
            Some(rest) => match rest.split_once("} ") {
                Some(split) => split,
                None => continue,
            },
            None => match rest.strip_prefix(' ') {
                Some(value) => ("", value),
                None => continue,
            },
        };
        let key = labels
            .split(',')
            .find_map(|l| l.strip_prefix(&format!("{label}=\"")))
            .map(|v| v.trim_end_matches('"').to_owned())
            .unwrap_or_default();
        *values.entry(key).or_insert(0.0) += value.trim().parse::<f64>().unwrap_or(0.0);
    }
    values
}

/// The machine's busy share (0..1) over `window`, from `/proc/stat`.
async fn busy_share(window: std::time::Duration) -> Option<f64> {
    fn sample() -> Option<(u64, u64)> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let fields: Vec<u64> = stat
            .lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .filter_map(|f| f.parse().ok())
            .collect();
        let total = fields.iter().sum();
        // idle + iowait
        let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
        Some((total, idle))
    }
    let (total_before, idle_before) = sample()?;
    tokio::time::sleep(window).await;
    let (total, idle) = sample()?;
    let total = total.saturating_sub(total_before).max(1) as f64;
    Some(1.0 - idle.saturating_sub(idle_before) as f64 / total)
}

/// Lets the machine settle before a timed run: a PostgreSQL checkpoint (so
/// the last run's dirty pages are not written during this one), then waits
/// (at most 15 s) until the CPUs are under 20 % busy for a quarter second.
/// Without it, a run pays for the writes and vacuums of the one before.
pub async fn settle(pool: &sqlx::PgPool) {
    let _ = sqlx::query("CHECKPOINT").execute(pool).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while std::time::Instant::now() < deadline {
        match busy_share(std::time::Duration::from_millis(250)).await {
            Some(busy) if busy >= 0.2 => continue,
            _ => return,
        }
    }
}

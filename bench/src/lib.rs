//! Shared pieces of the benchmarks: latency summaries.

/// p50 / p99 / max of a set of durations in milliseconds.
pub fn percentiles(mut millis: Vec<f64>) -> (f64, f64, f64) {
    if millis.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    millis.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| millis[((millis.len() as f64 - 1.0) * q).round() as usize];
    (at(0.50), at(0.99), at(1.0))
}

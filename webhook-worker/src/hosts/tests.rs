use super::*;

/// A limiter with `slots` per host, waits up to `wait`, and a host judged
/// stalled after `stall` without finishing a request.
fn stalls_after(slots: usize, wait: Duration, stall: Duration) -> HostLimiter {
    let mut limiter = HostLimiter::new(slots, wait);
    limiter.min_stall = stall;
    limiter
}

/// A host whose usual request time has settled at `took`.
fn with_usual(limiter: &HostLimiter, key: &str, took: Duration) -> Arc<Host> {
    let host = limiter.host(key);
    for _ in 0..40 {
        host.observe(took);
    }
    host
}

/// Waits (at most 5 s) until `n` deliveries wait for `key`.
async fn until_waiting(limiter: &HostLimiter, key: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while limiter.host(key).waiting.load(Ordering::Relaxed) < n {
        assert!(Instant::now() < deadline, "{n} waiters for {key} after 5 s");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A request to another host that finishes now: the worker makes progress.
async fn progress_elsewhere(limiter: &HostLimiter) {
    drop(limiter.acquire("alive:80").await.unwrap());
}

#[tokio::test]
async fn a_host_that_finishes_nothing_is_not_waited_for() {
    let limiter = stalls_after(1, Duration::from_secs(5), Duration::from_millis(50));
    let _held = limiter.acquire("dead:80").await.unwrap();
    tokio::time::sleep(Duration::from_millis(60)).await;
    progress_elsewhere(&limiter).await;
    let started = std::time::Instant::now();
    assert!(limiter.acquire("dead:80").await.is_err());
    assert!(started.elapsed() < Duration::from_secs(1), "deferred without waiting");
}

#[tokio::test]
async fn a_burst_after_a_quiet_spell_is_waited_for_not_deferred() {
    let limiter = stalls_after(1, Duration::from_millis(500), Duration::from_millis(50));
    drop(limiter.acquire("quiet:80").await.unwrap());
    tokio::time::sleep(Duration::from_millis(60)).await;
    let limiter = Arc::new(limiter);
    let held = limiter.acquire("quiet:80").await.unwrap();
    let waiter = {
        let limiter = limiter.clone();
        tokio::spawn(async move { limiter.acquire("quiet:80").await.is_ok() })
    };
    until_waiting(&limiter, "quiet:80", 1).await;
    drop(held);
    assert!(waiter.await.unwrap(), "the burst's second request got the slot");
}

#[tokio::test]
async fn a_saturated_host_does_not_limit_another() {
    let limiter = stalls_after(2, Duration::from_millis(50), Duration::from_millis(50));
    let _a = limiter.acquire("slow:443").await.unwrap();
    let _b = limiter.acquire("slow:443").await.unwrap();
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert!(limiter.acquire("fast:443").await.is_ok());
    assert!(limiter.acquire("slow:443").await.is_err());
}

#[tokio::test]
async fn a_host_is_silent_only_while_others_answer() {
    let limiter = stalls_after(1, Duration::from_secs(1), Duration::from_millis(50));
    let _held = limiter.acquire("lone:80").await.unwrap();
    tokio::time::sleep(Duration::from_millis(80)).await;
    // A starved worker finished nothing anywhere: no evidence against the host.
    assert_ne!(limiter.busy("lone:80"), Some(Busy::Stalled));
    assert!(limiter.busy("lone:80").is_none());
    progress_elsewhere(&limiter).await;
    assert_eq!(limiter.busy("lone:80"), Some(Busy::Stalled));
    assert!(limiter.busy("lone:80").is_some());
}

#[tokio::test]
async fn a_busy_host_that_answers_is_waited_for_briefly() {
    let limiter = Arc::new(HostLimiter::new(1, Duration::from_millis(500)));
    let held = limiter.acquire("busy:80").await.unwrap();
    let waiter = {
        let limiter = limiter.clone();
        tokio::spawn(async move { limiter.acquire("busy:80").await.is_ok() })
    };
    until_waiting(&limiter, "busy:80", 1).await;
    drop(held);
    assert!(waiter.await.unwrap());
}

#[tokio::test]
async fn a_dead_host_is_stalled_sooner_than_a_slow_one() {
    let limiter = HostLimiter::new(1, Duration::from_secs(5));
    let fast = with_usual(&limiter, "fast:80", Duration::from_millis(2));
    let slow = with_usual(&limiter, "slow:80", Duration::from_millis(400));
    assert_eq!(fast.stall_after(MIN_STALL), MIN_STALL);
    assert_eq!(slow.stall_after(MIN_STALL), MAX_STALL);
    assert_eq!(limiter.host("new:80").stall_after(MIN_STALL), MIN_STALL);
    let after = with_usual(&limiter, "mid:80", Duration::from_millis(100)).stall_after(MIN_STALL);
    assert!(
        after > Duration::from_millis(790) && after <= Duration::from_millis(800),
        "{after:?}"
    );
}

#[tokio::test]
async fn a_wait_for_a_slot_ends_when_the_host_counts_as_stalled() {
    let limiter = stalls_after(1, Duration::from_secs(5), Duration::from_millis(100));
    let limiter = Arc::new(limiter);
    let _held = limiter.acquire("dead:80").await.unwrap();
    let ticker = {
        let limiter = limiter.clone();
        tokio::spawn(async move {
            loop {
                progress_elsewhere(&limiter).await;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let started = std::time::Instant::now();
    assert!(limiter.acquire("dead:80").await.is_err());
    ticker.abort();
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(80), "waited {waited:?}");
    assert!(waited < Duration::from_secs(1), "waited {waited:?}, not the full 5 s");
    assert_eq!(limiter.busy("dead:80"), Some(Busy::Stalled));
}

#[tokio::test]
async fn a_fast_hosts_queue_is_waited_for_and_a_slow_hosts_is_not() {
    let limiter = HostLimiter::new(1, Duration::from_millis(500));
    let fast = with_usual(&limiter, "fast:80", Duration::from_millis(2));
    let slow = with_usual(&limiter, "slow:80", Duration::from_millis(400));
    let _fast = limiter.acquire("fast:80").await.unwrap();
    let _slow = limiter.acquire("slow:80").await.unwrap();
    // Ten ahead at 2 ms each: 22 ms to wait.
    fast.waiting.store(10, Ordering::Relaxed);
    assert!(limiter.busy("fast:80").is_none());
    // One ahead at 400 ms: 800 ms.
    slow.waiting.store(1, Ordering::Relaxed);
    assert!(limiter.busy("slow:80").is_some());
    let started = std::time::Instant::now();
    assert!(limiter.acquire("slow:80").await.is_err());
    assert!(started.elapsed() < Duration::from_millis(400), "not waited for");
}

#[tokio::test]
async fn a_silent_host_takes_fewer_waiters_the_longer_it_is_silent() {
    let limiter = stalls_after(1, Duration::from_millis(400), Duration::from_secs(5));
    let _held = limiter.acquire("quiet:80").await.unwrap();
    let host = limiter.host("quiet:80");
    host.waiting.store(3, Ordering::Relaxed);
    assert!(limiter.busy("quiet:80").is_none(), "just saturated: a short wait");
    tokio::time::sleep(Duration::from_millis(150)).await;
    progress_elsewhere(&limiter).await;
    assert!(
        limiter.busy("quiet:80").is_some(),
        "four behind a host silent for 150 ms"
    );
    host.waiting.store(0, Ordering::Relaxed);
    assert!(limiter.busy("quiet:80").is_none(), "the first behind it may still wait");
}

#[tokio::test]
async fn a_waiter_behind_others_keeps_waiting_while_the_host_answers() {
    let limiter = stalls_after(1, Duration::from_secs(1), Duration::from_millis(150));
    let limiter = Arc::new(limiter);
    let held = limiter.acquire("busy:80").await.unwrap();
    let mut waiters = Vec::new();
    for n in 1..=3 {
        let waiter = limiter.clone();
        waiters.push(tokio::spawn(async move {
            let limiter = waiter;
            let permit = limiter.acquire("busy:80").await.ok()?;
            tokio::time::sleep(Duration::from_millis(80)).await;
            drop(permit);
            Some(())
        }));
        until_waiting(&limiter, "busy:80", n).await;
    }
    tokio::time::sleep(Duration::from_millis(80)).await;
    drop(held);
    // The last one waits about 240 ms, longer than the stall floor, but
    // the host finished a request every 80 ms meanwhile.
    for waiter in waiters {
        assert!(
            waiter.await.unwrap().is_some(),
            "a waiter gave up on a host that answers"
        );
    }
}

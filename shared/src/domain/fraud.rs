//! The fraud guard's verdict (docs/contract.md §9), a pure function of counts.
//!
//! SMS pumping shows as a prefix whose codes are sent and never typed. A
//! prefix is judged only on sends older than the grace period (a code needs
//! a moment to be typed), only once it has enough of them, and against the
//! client's *own* conversion elsewhere (a client whose users convert at 60 %
//! is not judged like one at 95 %). It is blocked when even the optimistic
//! end of its conversion (the Wilson upper bound at 95 %) is a small
//! fraction of that baseline: a handful of unlucky legitimate users cannot
//! trip it, a run of never-typed codes trips it within a few dozen sends.
//! The same test on a whole calling code catches an attack spread thin over
//! many prefixes of one country.

/// `fraudGuard` of a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum GuardMode {
    Off,
    #[default]
    Standard,
    Max,
}

/// Sends judged (older than the grace period) and how many were validated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub sent: u64,
    pub validated: u64,
}

impl Counts {
    pub fn minus(self, other: Counts) -> Counts {
        Counts {
            sent: self.sent.saturating_sub(other.sent),
            validated: self.validated.saturating_sub(other.validated),
        }
    }
}

/// How eager a mode is.
#[derive(Clone, Copy, Debug)]
pub struct Thresholds {
    /// Judged sends a prefix needs before it can be blocked.
    pub min_prefix_sends: u64,
    /// Judged sends a calling code needs before it can be blocked as a whole.
    pub min_country_sends: u64,
    /// Block when the prefix's optimistic conversion is below this share of
    /// the client's baseline.
    pub share_of_baseline: f64,
}

/// What a new client is assumed to convert at, and how many sends that
/// assumption weighs, until its own traffic says otherwise.
pub const PRIOR_CONVERSION: f64 = 0.8;
pub const PRIOR_WEIGHT: f64 = 20.0;
/// 95 % two-sided.
const Z: f64 = 1.96;

impl GuardMode {
    pub fn thresholds(self) -> Option<Thresholds> {
        match self {
            GuardMode::Off => None,
            GuardMode::Standard => Some(Thresholds {
                min_prefix_sends: 30,
                min_country_sends: 60,
                share_of_baseline: 0.35,
            }),
            GuardMode::Max => Some(Thresholds {
                min_prefix_sends: 15,
                min_country_sends: 30,
                share_of_baseline: 0.5,
            }),
        }
    }
}

/// Why a prefix is blocked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// The prefix converts far below the client's baseline.
    Block {
        reason: &'static str,
    },
}

/// The client's baseline conversion from its traffic outside what is judged.
pub fn baseline(elsewhere: Counts) -> f64 {
    (elsewhere.validated as f64 + PRIOR_CONVERSION * PRIOR_WEIGHT) / (elsewhere.sent as f64 + PRIOR_WEIGHT)
}

/// The upper end of the 95 % Wilson interval of `validated / sent`.
pub fn wilson_upper(counts: Counts) -> f64 {
    if counts.sent == 0 {
        return 1.0;
    }
    let n = counts.sent as f64;
    let p = (counts.validated as f64 / n).min(1.0);
    let z2 = Z * Z;
    let centre = p + z2 / (2.0 * n);
    let margin = Z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    ((centre + margin) / (1.0 + z2 / n)).min(1.0)
}

/// The verdict on `judged` (a prefix's or a calling code's judged counts),
/// given the client's judged counts `client` over all its prefixes and the
/// minimum number of sends for this kind of key.
pub fn judge(mode: GuardMode, judged: Counts, client: Counts, min_sends: impl Fn(&Thresholds) -> u64) -> Verdict {
    let Some(thresholds) = mode.thresholds() else {
        return Verdict::Allow;
    };
    if judged.sent < min_sends(&thresholds) {
        return Verdict::Allow;
    }
    let reference = baseline(client.minus(judged));
    if wilson_upper(judged) < reference * thresholds.share_of_baseline {
        Verdict::Block {
            reason: "low_conversion",
        }
    } else {
        Verdict::Allow
    }
}

/// The verdict on one prefix (`+507626`).
pub fn judge_prefix(mode: GuardMode, prefix: Counts, client: Counts) -> Verdict {
    judge(mode, prefix, client, |t| t.min_prefix_sends)
}

/// The verdict on a whole calling code (`+507`): an attack spread thin.
pub fn judge_country(mode: GuardMode, country: Counts, client: Counts) -> Verdict {
    match judge(mode, country, client, |t| t.min_country_sends) {
        Verdict::Block { .. } => Verdict::Block {
            reason: "low_conversion_country",
        },
        allow => allow,
    }
}

/// The guard's prefix of a number: calling code and the first 3 national
/// digits (`+507` + `626…` → `+507626`).
pub fn prefix_of(country_code: &str, national: &str) -> String {
    let digits: String = national.chars().take(3).collect();
    format!("{country_code}{digits}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_is_the_calling_code_and_three_digits() {
        assert_eq!(prefix_of("+507", "62612345"), "+507626");
        assert_eq!(prefix_of("+1", "4155550100"), "+1415");
        assert_eq!(prefix_of("+44", "79"), "+4479");
    }

    fn counts(sent: u64, validated: u64) -> Counts {
        Counts { sent, validated }
    }

    /// (case, mode, judged prefix, whole client, expected block?)
    #[test]
    fn the_verdicts_of_the_cases_the_guard_is_built_for() {
        let cases = [
            (
                "cold start: nothing judged yet",
                GuardMode::Standard,
                counts(0, 0),
                counts(0, 0),
                false,
            ),
            (
                "cold start: a new client's first judged sends, typed",
                GuardMode::Standard,
                counts(40, 34),
                counts(40, 34),
                false,
            ),
            (
                "a new client pumped from its first send",
                GuardMode::Standard,
                counts(40, 0),
                counts(40, 0),
                true,
            ),
            (
                "slow-converting client, its usual prefix",
                GuardMode::Standard,
                counts(200, 110),
                counts(2000, 1200),
                false,
            ),
            (
                "slow-converting client, a bad day on one prefix",
                GuardMode::Standard,
                counts(40, 15),
                counts(2000, 1200),
                false,
            ),
            (
                "attack beside normal traffic",
                GuardMode::Standard,
                counts(60, 1),
                counts(560, 451),
                true,
            ),
            (
                "attack too small to judge yet",
                GuardMode::Standard,
                counts(20, 0),
                counts(520, 450),
                false,
            ),
            (
                "max judges sooner",
                GuardMode::Max,
                counts(20, 0),
                counts(520, 450),
                true,
            ),
            (
                "off never blocks",
                GuardMode::Off,
                counts(500, 0),
                counts(1000, 450),
                false,
            ),
            (
                "a legitimate dip on a 95 % client",
                GuardMode::Standard,
                counts(35, 24),
                counts(1035, 974),
                false,
            ),
        ];
        for (case, mode, prefix, client, blocked) in cases {
            let verdict = judge_prefix(mode, prefix, client);
            assert_eq!(matches!(verdict, Verdict::Block { .. }), blocked, "{case}: {verdict:?}");
        }
    }

    #[test]
    fn an_attack_spread_over_many_prefixes_is_caught_by_its_country() {
        // 25 prefixes of one country, 8 judged sends each, 1 typed in all.
        let client = counts(500 + 200, 450 + 1);
        let prefix = counts(8, 0);
        assert_eq!(
            judge_prefix(GuardMode::Standard, prefix, client),
            Verdict::Allow,
            "each too small"
        );
        let country = counts(200, 1);
        assert_eq!(
            judge_country(GuardMode::Standard, country, client),
            Verdict::Block {
                reason: "low_conversion_country"
            }
        );
        // A country the client simply sends a lot to, converting normally, is not.
        assert_eq!(
            judge_country(GuardMode::Standard, counts(400, 350), counts(900, 800)),
            Verdict::Allow
        );
    }

    /// The thresholds from data: legitimate prefixes are binomial draws at
    /// their client's conversion; the guard must (almost) never block them,
    /// and must block a pumping prefix (≤ 5 % typed) before 60 judged sends.
    #[test]
    fn simulated_traffic_blocks_pumping_and_spares_legitimate_prefixes() {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut uniform = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        for mode in [GuardMode::Standard, GuardMode::Max] {
            let mut false_blocks = 0;
            let trials = 2_000;
            for trial in 0..trials {
                let conversion = [0.55, 0.6, 0.75, 0.9, 0.97][trial % 5];
                let client_sends = 1_000u64;
                let client = counts(client_sends, (client_sends as f64 * conversion) as u64);
                let sends = 15 + (trial as u64 % 200);
                let typed = (0..sends).filter(|_| uniform() < conversion).count() as u64;
                let prefix = counts(sends, typed);
                let whole = counts(client.sent + prefix.sent, client.validated + prefix.validated);
                if judge_prefix(mode, prefix, whole) != Verdict::Allow {
                    false_blocks += 1;
                }
            }
            println!("{mode:?}: {false_blocks} of {trials} legitimate prefixes blocked");
            let allowed = if mode == GuardMode::Max { 10 } else { 2 };
            assert!(
                false_blocks <= allowed,
                "{mode:?}: {false_blocks} of {trials} legitimate prefixes blocked"
            );

            for leak in [0.0, 0.02, 0.05] {
                let client = counts(1_000, 850);
                let blocked_at = (1..=200u64).find(|sends| {
                    let prefix = counts(*sends, (*sends as f64 * leak) as u64);
                    let whole = counts(client.sent + sends, client.validated + prefix.validated);
                    judge_prefix(mode, prefix, whole) != Verdict::Allow
                });
                println!("{mode:?}: a prefix with {leak} typed is blocked at {blocked_at:?} judged sends");
                assert!(
                    blocked_at.is_some_and(|n| n <= 60),
                    "{mode:?}, {leak}: blocked at {blocked_at:?}"
                );
            }
        }
    }
}

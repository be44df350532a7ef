//! How strong a "no leak" is: the confidence statement of checks whose detection is
//! probabilistic.
//!
//! A residue check repeats a writer/listener attempt: whether one attempt shows a leak can
//! depend on scheduling (which worker thread runs the listener) or on allocator history.
//! After `n` attempts with `k` hits, the one-sided Clopper-Pearson upper bound on the
//! per-attempt leak probability at confidence `c` is the `c` quantile of
//! Beta(`k` + 1, `n` − `k`) (and 1 when every attempt hit). With no hit it is
//! 1 − (1 − `c`)^(1/`n`), about 3/`n` at 95 %. Profiles state the largest leak probability
//! a pass may leave open ([`LeakTarget::max_leak_probability`]) and the confidence
//! ([`LeakTarget::confidence`]); [`LeakTarget::attempts_needed`] is how many clean attempts
//! that takes. The beta quantile is `statrs`'s.

use serde::{Deserialize, Serialize};
use statrs::distribution::{Beta, ContinuousCDF};

/// The most attempts a profile may ask for: beyond it a check would run for hours.
pub const MAX_ATTEMPTS: u32 = 10_000;

/// What a pass of a probabilistic check must establish: the per-attempt leak probability
/// is below `max_leak_probability` with confidence `confidence`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LeakTarget {
    /// The largest per-attempt leak probability a pass may leave open, above 0 and below 1.
    pub max_leak_probability: f64,
    /// The confidence of the statement, above 0 and below 1 (0.95 for 95 %).
    pub confidence: f64,
}

impl Default for LeakTarget {
    /// Below 5 % at 95 % confidence: 59 clean attempts.
    fn default() -> Self {
        LeakTarget {
            max_leak_probability: 0.05,
            confidence: 0.95,
        }
    }
}

impl LeakTarget {
    /// Rejects values outside (0, 1), and targets that need more than [`MAX_ATTEMPTS`].
    pub fn validate(&self) -> Result<(), String> {
        check_open_unit("max_leak_probability", self.max_leak_probability)?;
        check_open_unit("confidence", self.confidence)?;
        let needed = self.attempts_needed_unbounded();
        if needed > f64::from(MAX_ATTEMPTS) {
            return Err(format!(
                "a leak probability below {} at {} % confidence needs {} clean attempts per check, more than \
                 the {MAX_ATTEMPTS} hilt runs",
                as_written(self.max_leak_probability),
                self.confidence * 100.0,
                if needed < 1e15 {
                    format!("{needed:.0}")
                } else {
                    format!("{needed:.2e}")
                }
            ));
        }
        Ok(())
    }

    /// The fewest attempts without a hit whose bound is at most `max_leak_probability`:
    /// the smallest `n` with 1 − (1 − confidence)^(1/n) ≤ max_leak_probability. At least 1,
    /// at most [`MAX_ATTEMPTS`].
    pub fn attempts_needed(&self) -> u32 {
        let mut n = self.attempts_needed_unbounded().clamp(1.0, f64::from(MAX_ATTEMPTS)) as u32;
        // The closed form in floating point may be one off either way; the bound decides.
        while n < MAX_ATTEMPTS && leak_probability_bound(n, 0, self.confidence) > self.max_leak_probability {
            n += 1;
        }
        while n > 1 && leak_probability_bound(n - 1, 0, self.confidence) <= self.max_leak_probability {
            n -= 1;
        }
        n
    }

    /// The bound after `attempts` attempts with `hits` hits, at this target's confidence.
    pub fn bound(&self, attempts: u32, hits: u32) -> f64 {
        leak_probability_bound(attempts, hits, self.confidence)
    }

    /// How a bound reads in a verdict: "leak probability below 0.0495 at 95 % confidence".
    pub fn describe(&self, bound: f64) -> String {
        format!(
            "leak probability per attempt below {} at {} % confidence",
            significant(bound),
            significant(self.confidence * 100.0)
        )
    }

    /// ln(1 − x) is taken as `ln_1p(−x)`: for a probability below about 1e-16, 1 − x is 1
    /// in double precision, and its logarithm 0 would make the count infinite with the
    /// wrong sign.
    fn attempts_needed_unbounded(&self) -> f64 {
        ((-self.confidence).ln_1p() / (-self.max_leak_probability).ln_1p()).ceil()
    }
}

/// The one-sided Clopper-Pearson upper bound on the per-attempt leak probability after
/// `hits` hits in `attempts` attempts, at `confidence` (in (0, 1)): the `confidence`
/// quantile of Beta(hits + 1, attempts − hits). 1 when there were no attempts or every
/// attempt hit, or when the arguments make no sense (nothing is claimed then).
pub fn leak_probability_bound(attempts: u32, hits: u32, confidence: f64) -> f64 {
    if attempts == 0 || hits >= attempts || !(confidence > 0.0 && confidence < 1.0) {
        return 1.0;
    }
    match Beta::new(f64::from(hits) + 1.0, f64::from(attempts - hits)) {
        Ok(beta) => beta.inverse_cdf(confidence).clamp(0.0, 1.0),
        Err(_) => 1.0,
    }
}

fn check_open_unit(name: &str, value: f64) -> Result<(), String> {
    if value > 0.0 && value < 1.0 {
        Ok(())
    } else {
        Err(format!(
            "`{name}` must be above 0 and below 1, not {}",
            as_written(value)
        ))
    }
}

/// A probability in an error message: plain, or with an exponent where plain would run
/// to hundreds of digits (1e-300 written in a profile).
fn as_written(v: f64) -> String {
    if v != 0.0 && v.is_finite() && v.abs() < 1e-6 {
        format!("{v:e}")
    } else {
        v.to_string()
    }
}

/// A probability as people read it: three significant digits, no exponent above 1e-4.
fn significant(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return v.to_string();
    }
    let digits = (2 - v.abs().log10().floor() as i32).max(0) as usize;
    let text = format!("{v:.digits$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference values from the binomial CDF inverted by bisection (exact sums in double
    /// precision, 200 halvings), independent of the beta quantile.
    const KNOWN: &[(u32, u32, f64, f64)] = &[
        (10, 1, 0.95, 0.394_163_302_436_504_66),
        (20, 2, 0.95, 0.282_618_524_885_860_87),
        (59, 0, 0.95, 0.049_507_609_888_226_94),
        (16, 6, 0.95, 0.608_988_416_979_258_5),
        (100, 5, 0.95, 0.102_253_377_643_274_51),
        (3, 0, 0.95, 0.631_596_850_135_961_1),
        (30, 15, 0.99, 0.716_095_061_324_437_2),
        (14, 0, 0.95, 0.192_636_175_650_135_27),
        (1, 0, 0.9, 0.9),
    ];

    #[test]
    fn the_bound_matches_known_values() {
        for &(n, k, c, want) in KNOWN {
            let got = leak_probability_bound(n, k, c);
            assert!((got - want).abs() < 1e-9, "n={n} k={k} c={c}: {got} != {want}");
        }
    }

    #[test]
    fn no_hits_follow_the_closed_form() {
        for n in [1u32, 2, 7, 59, 300, 10_000] {
            for c in [0.5f64, 0.9, 0.95, 0.99] {
                let closed = 1.0 - (1.0 - c).powf(1.0 / f64::from(n));
                let got = leak_probability_bound(n, 0, c);
                assert!((got - closed).abs() < 1e-9, "n={n} c={c}: {got} != {closed}");
            }
        }
        // About 3/n at 95 %.
        assert!((leak_probability_bound(300, 0, 0.95) * 300.0 - 3.0).abs() < 0.05);
    }

    #[test]
    fn every_hit_or_no_attempt_claims_nothing() {
        assert_eq!(leak_probability_bound(0, 0, 0.95), 1.0);
        assert_eq!(leak_probability_bound(5, 5, 0.95), 1.0);
        assert_eq!(leak_probability_bound(5, 0, 1.0), 1.0);
        assert_eq!(leak_probability_bound(5, 0, f64::NAN), 1.0);
    }

    #[test]
    fn attempts_needed_is_the_smallest_that_meets_the_target() {
        let cases = [
            ((0.05, 0.95), 59),
            ((0.2, 0.95), 14),
            ((0.5, 0.9), 4),
            ((0.01, 0.99), 459),
        ];
        for ((p, c), want) in cases {
            let t = LeakTarget {
                max_leak_probability: p,
                confidence: c,
            };
            let n = t.attempts_needed();
            assert_eq!(n, want, "p={p} c={c}");
            assert!(t.bound(n, 0) <= p);
            assert!(t.bound(n - 1, 0) > p);
        }
    }

    #[test]
    fn targets_outside_the_unit_interval_or_too_costly_are_refused() {
        let t = |p, c| LeakTarget {
            max_leak_probability: p,
            confidence: c,
        };
        assert!(t(0.05, 0.95).validate().is_ok());
        assert!(
            t(0.0, 0.95)
                .validate()
                .expect_err("refused")
                .contains("max_leak_probability")
        );
        assert!(t(0.05, 1.0).validate().expect_err("refused").contains("confidence"));
        assert!(
            t(1e-6, 0.99)
                .validate()
                .expect_err("refused")
                .contains("clean attempts")
        );
        // So small that 1 - p is 1 in double precision: still millions of attempts.
        for p in [1e-300, 1e-17, 1e-16, 5e-15] {
            let e = t(p, 0.95).validate().expect_err("refused");
            assert!(e.contains("clean attempts") && e.len() < 200, "p={p}: {e}");
        }
        assert!(
            t(-1e-300, 0.95)
                .validate()
                .expect_err("refused")
                .ends_with("not -1e-300")
        );
    }

    #[test]
    fn a_bound_reads_as_a_sentence() {
        let t = LeakTarget::default();
        assert_eq!(
            t.describe(t.bound(59, 0)),
            "leak probability per attempt below 0.0495 at 95 % confidence"
        );
        assert_eq!(significant(0.192_636), "0.193");
        assert_eq!(significant(1.0), "1");
    }
}

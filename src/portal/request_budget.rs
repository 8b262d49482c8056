//! Per-token request rate for the portal: a token bucket for each Authorization header (kept by
//! its SHA-256), refilled at a steady rate up to a burst. An empty bucket answers 429 with how
//! long until the next request may come.

use crate::limits::PORTAL_REQUEST_BUDGETS_MAX;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What one token has left: requests (fractional while refilling) as of `updated`.
#[derive(Clone, Copy, Debug)]
struct Budget {
    requests: f64,
    updated: Instant,
}

pub struct RequestBudgets {
    per_second: f64,
    burst: f64,
    budgets: Mutex<HashMap<[u8; 32], Budget>>,
}

impl RequestBudgets {
    pub fn new(per_second: u32, burst: u32) -> RequestBudgets {
        RequestBudgets {
            per_second: f64::from(per_second.max(1)),
            burst: f64::from(burst.max(1)),
            budgets: Mutex::new(HashMap::new()),
        }
    }

    /// Spends one request of `key`'s budget at `now`, or says how long to wait for one.
    pub fn spend(&self, key: [u8; 32], now: Instant) -> Result<(), Duration> {
        let mut budgets = self.budgets.lock().expect("request budgets lock");
        if budgets.len() >= PORTAL_REQUEST_BUDGETS_MAX && !budgets.contains_key(&key) {
            budgets.retain(|_, budget| self.refilled(*budget, now) < self.burst);
            // Still nearly full (a flood of distinct headers): start afresh rather than scan
            // the table again for every new key. Tokens lose their spent budget, nothing more.
            if budgets.len() >= PORTAL_REQUEST_BUDGETS_MAX / 10 * 9 {
                budgets.clear();
            }
        }
        let budget = budgets.entry(key).or_insert(Budget {
            requests: self.burst,
            updated: now,
        });
        let requests = self.refilled(*budget, now);
        if requests >= 1.0 {
            *budget = Budget {
                requests: requests - 1.0,
                updated: now,
            };
            Ok(())
        } else {
            *budget = Budget {
                requests,
                updated: now,
            };
            Err(Duration::from_secs_f64((1.0 - requests) / self.per_second))
        }
    }

    fn refilled(&self, budget: Budget, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(budget.updated).as_secs_f64();
        (budget.requests + elapsed * self.per_second).min(self.burst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_gets_its_burst_then_the_steady_rate_and_others_are_unaffected() {
        let budgets = RequestBudgets::new(10, 3);
        let start = Instant::now();
        let alice = [1; 32];
        let bob = [2; 32];
        // (key, milliseconds after start, allowed, wait when refused)
        let cases = [
            (alice, 0, true, 0),
            (alice, 0, true, 0),
            (alice, 0, true, 0),
            (alice, 0, false, 100),
            (bob, 0, true, 0),
            (alice, 50, false, 50),
            (alice, 100, true, 0),
            (alice, 100, false, 100),
            (alice, 10_000, true, 0),
            (alice, 10_000, true, 0),
            (alice, 10_000, true, 0),
            (alice, 10_000, false, 100),
        ];
        for (step, (key, after, allowed, wait)) in cases.into_iter().enumerate() {
            let answer = budgets.spend(key, start + Duration::from_millis(after));
            assert_eq!(answer.is_ok(), allowed, "step {step}");
            if let Err(waited) = answer {
                assert!(
                    waited.as_millis().abs_diff(wait) <= 1,
                    "step {step}: wait {waited:?}, expected {wait} ms"
                );
            }
        }
    }
}

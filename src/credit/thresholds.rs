//! Balance thresholds: a posting that takes a balance from at or above a threshold to below it
//! crosses it (one alert), however many thresholds one posting crosses and however negative the
//! balance already is. A threshold re-arms by itself when the balance returns to or above it, since
//! only a downward crossing fires; nothing else needs remembering.

/// The thresholds (ledger units) crossed downwards by a move from `balance_before` to
/// `balance_after`, highest first.
pub fn thresholds_crossed(balance_before: i64, balance_after: i64, thresholds: &[i64]) -> Vec<i64> {
    let mut crossed: Vec<i64> = thresholds
        .iter()
        .copied()
        .filter(|threshold| balance_before >= *threshold && balance_after < *threshold)
        .collect();
    crossed.sort_unstable_by(|a, b| b.cmp(a));
    crossed.dedup();
    crossed
}

#[cfg(test)]
mod tests {
    use super::thresholds_crossed;

    #[test]
    fn one_alert_per_threshold_crossed_downwards() {
        let thresholds = [1000, 500, 0];
        // (before, after, crossed)
        let cases: [(i64, i64, &[i64]); 8] = [
            (1200, 900, &[1000]),
            (1200, 400, &[1000, 500]),
            (1000, 999, &[1000]),
            (999, 100, &[500]),
            (400, 300, &[]),
            (100, -50, &[0]),
            (-50, -80, &[]),
            (-80, 1100, &[]),
        ];
        for (before, after, expected) in cases {
            assert_eq!(
                thresholds_crossed(before, after, &thresholds),
                expected,
                "{before} -> {after}"
            );
        }
    }
}

//! When the daily auto-recharge of an account is due: once its local date's scheduled local time
//! has come, in the account's own time zone. Comparing wall-clock times makes the awkward days
//! behave: on a spring-forward day a time inside the gap (02:30 in New York) is due from the first
//! instant after it; on a fall-back day the repeated hour finds the day already done (the store
//! keeps one run per account and local date); a daemon that was down at the scheduled time finds
//! today's run still due when it starts, and runs it once.

use crate::store::ledger_store::{LedgerStore, RechargeRun};
use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use chrono_tz::Tz;

/// The account's local date at `now` when that date's recharge time has come, else `None`.
pub fn recharge_date_due(now: DateTime<Utc>, zone: Tz, local_time: NaiveTime) -> Option<NaiveDate> {
    let local = now.with_timezone(&zone).naive_local();
    (local.time() >= local_time).then(|| local.date())
}

/// One account's run, for reports.
#[derive(Clone, Debug)]
pub struct AccountRecharge {
    pub account: String,
    pub local_date: NaiveDate,
    pub run: RechargeRun,
}

/// Runs every auto-recharge that is due at `now` (or, with `date`, every account's recharge for
/// that local date regardless of the hour, as `tollgate recharge run --date` does). Safe to call
/// as often as wanted, from any number of instances: the store runs each account and date once.
pub fn run_due_recharges(
    store: &mut dyn LedgerStore,
    now: DateTime<Utc>,
    date: Option<NaiveDate>,
) -> anyhow::Result<Vec<AccountRecharge>> {
    let mut done = Vec::new();
    for account in store.accounts()? {
        let Some(recharge) = &account.auto_recharge else {
            continue;
        };
        let zone: Tz = account.time_zone.parse().unwrap_or(chrono_tz::UTC);
        let Some(local_date) = date.or_else(|| recharge_date_due(now, zone, recharge.local_time))
        else {
            continue;
        };
        let run = store.run_auto_recharge(&account.id, local_date)?;
        if run.credited_units > 0 {
            tracing::info!(
                account = %account.id,
                %local_date,
                credited_units = run.credited_units,
                "auto-recharge credited"
            );
        }
        done.push(AccountRecharge {
            account: account.id.clone(),
            local_date,
            run,
        });
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn due_by_local_wall_clock_across_zones_and_dst() {
        let new_york: Tz = "America/New_York".parse().unwrap();
        let tokyo: Tz = "Asia/Tokyo".parse().unwrap();
        let half_past_two = NaiveTime::from_hms_opt(2, 30, 0).unwrap();
        let five_past_midnight = NaiveTime::from_hms_opt(0, 5, 0).unwrap();
        let date = |text: &str| Some(text.parse::<NaiveDate>().unwrap());
        // (now, zone, local time, due date)
        let cases = [
            // Spring forward in New York: 01:59 EST, then 03:00 EDT; 02:30 never happens.
            ("2026-03-08T06:59:00Z", new_york, half_past_two, None),
            (
                "2026-03-08T07:00:00Z",
                new_york,
                half_past_two,
                date("2026-03-08"),
            ),
            // Fall back: 01:30 happens twice; both say the same date (run once by the store).
            (
                "2026-11-01T05:30:00Z",
                new_york,
                NaiveTime::from_hms_opt(1, 30, 0).unwrap(),
                date("2026-11-01"),
            ),
            (
                "2026-11-01T06:30:00Z",
                new_york,
                NaiveTime::from_hms_opt(1, 30, 0).unwrap(),
                date("2026-11-01"),
            ),
            // One instant, two zones, two local dates.
            (
                "2026-11-21T16:00:00Z",
                tokyo,
                five_past_midnight,
                date("2026-11-22"),
            ),
            (
                "2026-11-21T16:00:00Z",
                new_york,
                five_past_midnight,
                date("2026-11-21"),
            ),
            // Before the time: not yet; a daemon starting at 09:00 catches up today's run.
            ("2026-11-21T05:04:00Z", new_york, five_past_midnight, None),
            (
                "2026-11-21T14:00:00Z",
                new_york,
                five_past_midnight,
                date("2026-11-21"),
            ),
            (
                "2026-11-21T05:04:00Z",
                tokyo,
                NaiveTime::from_hms_opt(14, 5, 0).unwrap(),
                None,
            ),
        ];
        for (now, zone, local_time, expected) in cases {
            assert_eq!(
                recharge_date_due(at(now), zone, local_time),
                expected,
                "{now} in {zone}"
            );
        }
    }
}

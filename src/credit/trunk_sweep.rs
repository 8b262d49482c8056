//! The trunk sweep: the billing class of calls that were never authorized, decided by assigning
//! trunks in call-start order over the calls of every account with limits, by the same rules as
//! authorization. The sweep's state (calls still on a trunk, and how far it has got) carries
//! over: in the daemon (where it is stored) from one batch, file, run and day to the next; in the
//! batch job across every file of the run. Either way a call up across midnight keeps its trunk.

use super::accounts::{Account, AccountBook, AccountStatus};
use super::trunks::{TrunkEligibility, TrunkKind, has_trunks, pool_with_room};
use crate::cdr::Direction;
use crate::limits::{SWEEP_CONFLICT_RETRIES_MAX, SWEEP_PAGE_CALLS};
use crate::store::ledger_store::LedgerStore;
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a call is billed as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BillingClass {
    /// Charged at its rated cost.
    PerMinute,
    /// On a flat-rate trunk: its list price is recorded, nothing is charged.
    Trunk,
    /// Should have been refused (every trunk busy and per-minute not allowed, or the account not
    /// active): charged at its rated cost, flagged and alerted.
    LimitExceeded,
}

impl BillingClass {
    pub fn as_str(self) -> &'static str {
        match self {
            BillingClass::PerMinute => "per_minute",
            BillingClass::Trunk => "trunk",
            BillingClass::LimitExceeded => "limit_exceeded",
        }
    }

    /// True when the call's cost is charged.
    pub fn is_charged(self) -> bool {
        self != BillingClass::Trunk
    }
}

/// How stores mark a posted call whose class waits for the sweep (stored, not yet charged).
pub const HELD_FOR_SWEEP: &str = "held";

/// What the sweep needs of a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SweepCall {
    pub direction: Direction,
    /// Its other party may use a trunk (see `trunks::TrunkEligibility`).
    pub trunk_eligible: bool,
    /// When the call starts (answer time, else start time) and ends (end time, else start plus
    /// billsec).
    pub start_micros: i64,
    pub end_micros: i64,
    pub billsec: u32,
}

/// A call on one pool of one account, from start to end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrunkUse {
    pub start_micros: i64,
    pub end_micros: i64,
    pub kind: TrunkKind,
}

/// The sweep's carried state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrunkSweep {
    /// Start of the latest call classified: a call starting earlier arrived late.
    pub watermark_micros: i64,
    /// Per account, the calls on its trunks that may still be up.
    pub up: BTreeMap<String, Vec<TrunkUse>>,
}

impl Default for TrunkSweep {
    fn default() -> Self {
        TrunkSweep {
            watermark_micros: i64::MIN,
            up: BTreeMap::new(),
        }
    }
}

/// One call's class, and whether it came after the sweep had passed its start (then it was
/// decided against the trunk calls still known up at its start, which may be fewer than were).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Classified {
    pub class: BillingClass,
    pub late: bool,
}

/// True when the class of a call of this chain (the account first, then its ancestors) is not
/// simply per-minute, so it must go through the sweep.
pub fn chain_needs_sweep(chain: &[&Account]) -> bool {
    chain
        .iter()
        .any(|account| super::trunks::account_limits_calls(account))
}

impl TrunkSweep {
    /// Classifies one call of `chain`. Calls given in start order are classified exactly.
    pub fn classify(&mut self, call: &SweepCall, chain: &[&Account]) -> Classified {
        let late = call.start_micros < self.watermark_micros;
        if !late {
            self.watermark_micros = call.start_micros;
        }
        let class = self.class_of(call, chain, late);
        Classified { class, late }
    }

    fn class_of(&mut self, call: &SweepCall, chain: &[&Account], late: bool) -> BillingClass {
        if chain
            .iter()
            .any(|account| account.status != AccountStatus::Active)
        {
            return BillingClass::LimitExceeded;
        }
        if call.billsec == 0 {
            // Nothing was used and nothing is charged.
            return BillingClass::PerMinute;
        }
        let trunk_levels: Vec<&Account> = chain
            .iter()
            .copied()
            .filter(|account| has_trunks(account))
            .collect();
        if call.trunk_eligible && !trunk_levels.is_empty() {
            let start = call.start_micros;
            let pools: Option<Vec<TrunkKind>> = trunk_levels
                .iter()
                .map(|account| {
                    let uses = self.uses_of(&account.id);
                    if !late {
                        // In start order nothing that ended by now can matter again.
                        uses.retain(|up| up.end_micros > start);
                    }
                    pool_with_room(account, call.direction, |kind| {
                        uses.iter()
                            .filter(|up| {
                                up.kind == kind && up.start_micros <= start && start < up.end_micros
                            })
                            .count() as u32
                    })
                })
                .collect();
            if let Some(pools) = pools {
                for (account, kind) in trunk_levels.iter().zip(pools) {
                    self.uses_of(&account.id).push(TrunkUse {
                        start_micros: call.start_micros,
                        end_micros: call.end_micros.max(call.start_micros),
                        kind,
                    });
                }
                return BillingClass::Trunk;
            }
        }
        if chain.iter().any(|account| !account.allow_per_minute) {
            BillingClass::LimitExceeded
        } else {
            BillingClass::PerMinute
        }
    }

    /// The trunk calls of one account (allocating its entry only the first time).
    fn uses_of(&mut self, account: &str) -> &mut Vec<TrunkUse> {
        if !self.up.contains_key(account) {
            self.up.insert(account.to_string(), Vec::new());
        }
        self.up.get_mut(account).expect("inserted above")
    }

    /// Drops the trunk calls that ended by the watermark: the state stays as small as the trunks
    /// in use.
    pub fn forget_ended(&mut self) {
        let watermark = self.watermark_micros;
        self.up.retain(|_, uses| {
            uses.retain(|up| up.end_micros > watermark);
            !uses.is_empty()
        });
    }
}

/// What one run of the sweep over a store did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub classified: BTreeMap<BillingClass, u64>,
    /// Calls that started before the sweep had already passed (their CDR came after the settle
    /// window), classified against the trunk calls still known up at their start.
    pub late: u64,
    pub charged_units: i64,
}

/// Classifies every call held in `store` that started by `cutoff_micros`, page by page in start
/// order, carrying the sweep's state from one page (and run) to the next. Safe to run in several
/// processes at once: each page is applied only if the state is still the one it was read with.
pub fn run_trunk_sweep(
    store: &mut dyn LedgerStore,
    cutoff_micros: i64,
    eligibility: &TrunkEligibility,
) -> anyhow::Result<SweepReport> {
    let mut report = SweepReport::default();
    let mut book: Option<AccountBook> = None;
    let mut conflicts = 0;
    loop {
        let (state, held) = store.held_calls(cutoff_micros, SWEEP_PAGE_CALLS)?;
        if held.is_empty() {
            return Ok(report);
        }
        let book = match &mut book {
            Some(book) => book,
            None => book.insert(AccountBook {
                accounts: store
                    .accounts()?
                    .into_iter()
                    .map(|account| (account.id.clone(), account))
                    .collect(),
            }),
        };
        let mut sweep = state.sweep;
        let mut late = 0;
        let mut classes = Vec::with_capacity(held.len());
        for call in &held {
            let direction = Direction::parse(&call.direction).with_context(|| {
                format!(
                    "held call {} has direction {:?}",
                    call.cdr_id, call.direction
                )
            })?;
            let chain = book.chain(&call.account);
            let classified = sweep.classify(
                &SweepCall {
                    direction,
                    trunk_eligible: eligibility.call_is_eligible(
                        direction,
                        &call.caller,
                        &call.callee,
                    ),
                    start_micros: call.start_micros,
                    end_micros: call.end_micros,
                    billsec: u32::try_from(call.billsec).unwrap_or(u32::MAX),
                },
                &chain,
            );
            late += u64::from(classified.late);
            classes.push((call.clone(), classified.class));
        }
        sweep.forget_ended();
        match store.apply_sweep(state.version, &sweep, &classes)? {
            Some(charged_units) => {
                report.late += late;
                report.charged_units += charged_units;
                for (_, class) in &classes {
                    *report.classified.entry(*class).or_default() += 1;
                }
                if held.len() < SWEEP_PAGE_CALLS {
                    return Ok(report);
                }
            }
            None => {
                conflicts += 1;
                if conflicts > SWEEP_CONFLICT_RETRIES_MAX {
                    anyhow::bail!("the trunk sweep kept losing to another instance's sweep");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: i64 = 60_000_000;

    fn account(
        id: &str,
        parent: Option<&str>,
        trunks: (u32, u32, u32),
        per_minute: bool,
    ) -> Account {
        let mut account = Account::new(id, parent, "USD");
        (
            account.trunks_inbound,
            account.trunks_outbound,
            account.trunks_two_way,
        ) = trunks;
        account.allow_per_minute = per_minute;
        account
    }

    /// (direction, eligible, start minute, end minute)
    fn call(direction: Direction, eligible: bool, start: i64, end: i64) -> SweepCall {
        SweepCall {
            direction,
            trunk_eligible: eligible,
            start_micros: start * MINUTE,
            end_micros: end * MINUTE,
            billsec: ((end - start) * 60) as u32,
        }
    }

    fn classes(
        sweep: &mut TrunkSweep,
        chain: &[&Account],
        calls: &[SweepCall],
    ) -> Vec<&'static str> {
        calls
            .iter()
            .map(|call| sweep.classify(call, chain).class.as_str())
            .collect()
    }

    use Direction::{Inbound as In, Outbound as Out};

    #[test]
    fn direction_pools_fill_first_then_two_way_then_per_minute() {
        // 1 inbound, 1 outbound, 1 two-way.
        let a = account("a", None, (1, 1, 1), true);
        let cases: Vec<(&str, Vec<SweepCall>, Vec<&str>)> = vec![
            (
                "outbound, outbound overflows to two-way, third is per-minute",
                vec![
                    call(Out, true, 0, 10),
                    call(Out, true, 1, 10),
                    call(Out, true, 2, 10),
                ],
                vec!["trunk", "trunk", "per_minute"],
            ),
            (
                "inbound has its own pool even when outbound took two-way",
                vec![
                    call(Out, true, 0, 10),
                    call(Out, true, 1, 10),
                    call(In, true, 2, 10),
                    call(In, true, 3, 10),
                ],
                vec!["trunk", "trunk", "trunk", "per_minute"],
            ),
            (
                "a trunk freed by a call's end is taken again",
                vec![
                    call(Out, true, 0, 5),
                    call(Out, true, 1, 5),
                    call(Out, true, 5, 9),
                    call(Out, true, 6, 9),
                    call(Out, true, 7, 9),
                ],
                vec!["trunk", "trunk", "trunk", "trunk", "per_minute"],
            ),
            (
                "toll-free and international calls never take a trunk",
                vec![
                    call(Out, false, 0, 10),
                    call(In, false, 1, 10),
                    call(Out, true, 2, 10),
                ],
                vec!["per_minute", "per_minute", "trunk"],
            ),
        ];
        for (name, calls, expected) in cases {
            let mut sweep = TrunkSweep::default();
            assert_eq!(classes(&mut sweep, &[&a], &calls), expected, "{name}");
        }
    }

    #[test]
    fn without_per_minute_a_call_over_the_trunks_exceeds_the_limit() {
        let a = account("a", None, (0, 1, 0), false);
        let mut sweep = TrunkSweep::default();
        let calls = [
            call(Out, true, 0, 10),
            call(Out, true, 1, 10),
            call(Out, false, 2, 3),
        ];
        assert_eq!(
            classes(&mut sweep, &[&a], &calls),
            ["trunk", "limit_exceeded", "limit_exceeded"]
        );
        let mut suspended = account("s", None, (0, 5, 0), true);
        suspended.status = AccountStatus::Suspended;
        assert_eq!(
            classes(
                &mut TrunkSweep::default(),
                &[&suspended],
                &[call(Out, true, 0, 1)]
            ),
            ["limit_exceeded"]
        );
        // A call of no seconds used nothing.
        let mut empty = call(Out, false, 5, 5);
        empty.billsec = 0;
        assert_eq!(classes(&mut sweep, &[&a], &[empty]), ["per_minute"]);
    }

    #[test]
    fn every_level_with_trunks_must_have_room_and_the_lowest_wins() {
        // The child has 3 outbound trunks, its parent only 2 for all its children.
        let parent = account("p", None, (0, 2, 0), true);
        let child = account("c", Some("p"), (0, 3, 0), true);
        let sibling = account("s", Some("p"), (0, 0, 0), true);
        let mut sweep = TrunkSweep::default();
        let child_chain = [&child, &parent];
        let sibling_chain = [&sibling, &parent];
        let mut got = classes(&mut sweep, &child_chain, &[call(Out, true, 0, 10)]);
        // The sibling has no trunks of its own but rides on the parent's.
        got.extend(classes(
            &mut sweep,
            &sibling_chain,
            &[call(Out, true, 1, 10)],
        ));
        got.extend(classes(&mut sweep, &child_chain, &[call(Out, true, 2, 10)]));
        assert_eq!(got, ["trunk", "trunk", "per_minute"]);
        assert_eq!(sweep.up["c"].len(), 1);
        assert_eq!(sweep.up["p"].len(), 2);
    }

    #[test]
    fn state_carried_across_midnight_keeps_a_call_on_its_trunk() {
        let a = account("a", None, (0, 1, 0), true);
        let day = 24 * 60;
        // Night one: a call from 23:50 to 00:20. Its state is saved and read back.
        let mut sweep = TrunkSweep::default();
        assert_eq!(
            classes(&mut sweep, &[&a], &[call(Out, true, day - 10, day + 20)]),
            ["trunk"]
        );
        sweep.forget_ended();
        let saved = serde_json::to_string(&sweep).unwrap();
        let mut next_night: TrunkSweep = serde_json::from_str(&saved).unwrap();
        assert_eq!(next_night, sweep);
        // Night two: 00:05 finds the trunk busy, 00:25 finds it free.
        let calls = [
            call(Out, true, day + 5, day + 8),
            call(Out, true, day + 25, day + 30),
        ];
        assert_eq!(
            classes(&mut next_night, &[&a], &calls),
            ["per_minute", "trunk"]
        );
        next_night.forget_ended();
        assert_eq!(
            next_night.up["a"].len(),
            1,
            "only the call still up is kept"
        );
    }

    #[test]
    fn a_late_call_is_decided_against_the_calls_known_up_at_its_start() {
        let a = account("a", None, (0, 1, 0), true);
        let mut sweep = TrunkSweep::default();
        sweep.classify(&call(Out, true, 10, 40), &[&a]);
        sweep.classify(&call(Out, true, 30, 35), &[&a]);
        // Arrives after the sweep passed minute 30: minute 20 sees the 10–40 call up.
        let late = sweep.classify(&call(Out, true, 20, 25), &[&a]);
        assert_eq!(
            late,
            Classified {
                class: BillingClass::PerMinute,
                late: true
            }
        );
        // Minute 5 sees nothing up and takes the trunk, though the sweep has moved on.
        let late = sweep.classify(&call(Out, true, 5, 8), &[&a]);
        assert_eq!(
            late,
            Classified {
                class: BillingClass::Trunk,
                late: true
            }
        );
        assert_eq!(sweep.watermark_micros, 30 * MINUTE);
    }
}

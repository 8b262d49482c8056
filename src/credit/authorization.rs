//! Real-time call authorization, decided from a snapshot of the call's account chain (the account
//! first, then each account above it) taken inside the store's transaction, so two calls never
//! see the same free trunk or spend the same money.
//!
//! A trunk-eligible call takes a free trunk of its direction, else a free two-way trunk, at every
//! level of the chain that has trunks; when any such level is full, or the call is not eligible,
//! it is per-minute: allowed only when every level allows per-minute calls and the destination has
//! a rate, for as long as the most constrained level's available money (balance + credit limit −
//! reservations) buys, capped. That cost is reserved on every level until the call ends.

use super::accounts::{Account, AccountStatus};
use super::trunks::{TrunkEligibility, TrunkKind, has_trunks, pool_with_room};
use crate::cdr::Direction;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a switch asks before letting a call through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthorizationRequest {
    pub call_id: String,
    pub account: String,
    pub direction: Direction,
    pub caller: String,
    pub callee: String,
    /// When the call starts (the rate in force then prices it).
    pub time_micros: i64,
}

impl AuthorizationRequest {
    /// What must match when the same call id is authorized again (the time may differ: a switch
    /// retrying a request does not resend the same clock).
    pub fn identity(&self) -> String {
        format!(
            "{}\u{1f}{}\u{1f}{}\u{1f}{}",
            self.account,
            match self.direction {
                Direction::Inbound => "inbound",
                Direction::Outbound => "outbound",
            },
            self.caller,
            self.callee
        )
    }
}

/// One account of the chain as the store holds it at decision time.
#[derive(Clone, Debug)]
pub struct ChainLevel {
    pub account: Account,
    pub balance_units: i64,
    /// Money reserved by calls still up.
    pub reserved_units: i64,
    pub trunks_in_use: BTreeMap<TrunkKind, u32>,
}

impl ChainLevel {
    /// The pool a call of `direction` takes here: its direction's, else two-way; `None` if full.
    fn free_trunk(&self, direction: Direction) -> Option<TrunkKind> {
        pool_with_room(&self.account, direction, |kind| {
            self.trunks_in_use.get(&kind).copied().unwrap_or(0)
        })
    }

    /// Money this level can still commit; `None` when its credit is unlimited.
    fn available_units(&self) -> Option<i64> {
        let limit = crate::money::ledger_units(self.account.credit_limit?).unwrap_or(i64::MAX / 4);
        Some(self.balance_units + limit - self.reserved_units)
    }
}

/// Builds the chain's levels, the call's account first, from what a store read: each account with
/// its balance, and per account and trunk kind (`trunks::NO_TRUNK` for none) the calls up and the
/// money they reserve.
pub fn chain_levels(
    chain: &[String],
    accounts: &BTreeMap<String, (Account, i64)>,
    holds: &[(String, String, i64, i64)],
) -> anyhow::Result<Vec<ChainLevel>> {
    chain
        .iter()
        .map(|id| {
            let (account, balance_units) = accounts
                .get(id)
                .ok_or_else(|| anyhow::anyhow!("account {id} is not in the store"))?;
            let mut level = ChainLevel {
                account: account.clone(),
                balance_units: *balance_units,
                reserved_units: 0,
                trunks_in_use: BTreeMap::new(),
            };
            for (_, kind, calls, reserved) in holds.iter().filter(|hold| &hold.0 == id) {
                level.reserved_units += reserved;
                if let Some(kind) = TrunkKind::parse(kind) {
                    *level.trunks_in_use.entry(kind).or_default() += *calls as u32;
                }
            }
            Ok(level)
        })
        .collect()
}

/// What a call holds on one account until it ends: a trunk, or money, or both none (a level
/// without limits still records the call's reservation).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    pub account: String,
    pub trunk: Option<TrunkKind>,
    pub reserved_units: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Trunk,
    PerMinute,
    Deny,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Trunk => "trunk",
            Decision::PerMinute => "per_minute",
            Decision::Deny => "deny",
        }
    }
}

/// The answer to one authorization.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authorization {
    pub call_id: String,
    pub decision: Decision,
    /// Why: `trunk_available`, `not_trunk_eligible`, `no_trunks`, `trunks_busy` for calls let
    /// through; `no_trunk_available`, `per_minute_not_allowed`, `insufficient_balance`,
    /// `no_rate_for_destination`, `account_suspended` for denials.
    pub reason: String,
    /// The account of the chain that decided a denial.
    pub denied_by: Option<String>,
    pub max_duration_seconds: u32,
    pub holds: Vec<Hold>,
    /// The account's currency, that of the reservation.
    #[serde(default)]
    pub currency: String,
}

impl Authorization {
    /// The money reserved on the call's own account (every level reserves the same).
    pub fn reserved_units(&self) -> i64 {
        self.holds.first().map_or(0, |hold| hold.reserved_units)
    }
}

/// Decides one call. `cost_units(seconds)` prices a call of that length at the account's rate
/// (in ledger units, non-decreasing in `seconds`); `None` when the destination has no rate.
pub fn decide(
    request: &AuthorizationRequest,
    chain: &[ChainLevel],
    eligibility: &TrunkEligibility,
    cost_units: Option<&dyn Fn(u32) -> i64>,
    max_duration_cap_seconds: u32,
) -> Authorization {
    let currency = chain
        .first()
        .map(|level| level.account.currency.clone())
        .unwrap_or_default();
    let deny = |reason: &str, level: Option<&ChainLevel>| Authorization {
        call_id: request.call_id.clone(),
        decision: Decision::Deny,
        reason: reason.to_string(),
        denied_by: level.map(|level| level.account.id.clone()),
        max_duration_seconds: 0,
        holds: Vec::new(),
        currency: currency.clone(),
    };
    if let Some(level) = chain
        .iter()
        .find(|level| level.account.status != AccountStatus::Active)
    {
        return deny("account_suspended", Some(level));
    }

    let trunk_levels: Vec<&ChainLevel> = chain
        .iter()
        .filter(|level| has_trunks(&level.account))
        .collect();
    let eligible =
        eligibility.call_is_eligible(request.direction, &request.caller, &request.callee);
    let why_per_minute = if !eligible {
        "not_trunk_eligible"
    } else if trunk_levels.is_empty() {
        "no_trunks"
    } else {
        let taken: Option<Vec<Hold>> = trunk_levels
            .iter()
            .map(|level| {
                level.free_trunk(request.direction).map(|kind| Hold {
                    account: level.account.id.clone(),
                    trunk: Some(kind),
                    reserved_units: 0,
                })
            })
            .collect();
        if let Some(holds) = taken {
            return Authorization {
                call_id: request.call_id.clone(),
                decision: Decision::Trunk,
                reason: "trunk_available".to_string(),
                denied_by: None,
                max_duration_seconds: max_duration_cap_seconds,
                holds,
                currency,
            };
        }
        "trunks_busy"
    };

    if let Some(level) = chain.iter().find(|level| !level.account.allow_per_minute) {
        let reason = if why_per_minute == "trunks_busy" {
            "no_trunk_available"
        } else {
            "per_minute_not_allowed"
        };
        return deny(reason, Some(level));
    }
    let Some(cost_units) = cost_units else {
        return deny("no_rate_for_destination", None);
    };
    // The most constrained level: the least available money (unlimited levels do not constrain).
    let constraining = chain
        .iter()
        .filter_map(|level| level.available_units().map(|available| (available, level)))
        .min_by_key(|(available, _)| *available);
    let max_duration_seconds = match constraining {
        None => max_duration_cap_seconds,
        Some((available, level)) => {
            match longest_affordable_seconds(cost_units, available, max_duration_cap_seconds) {
                Some(seconds) => seconds,
                None => return deny("insufficient_balance", Some(level)),
            }
        }
    };
    let reserved_units = cost_units(max_duration_seconds);
    Authorization {
        call_id: request.call_id.clone(),
        decision: Decision::PerMinute,
        reason: why_per_minute.to_string(),
        denied_by: None,
        max_duration_seconds,
        holds: chain
            .iter()
            .map(|level| Hold {
                account: level.account.id.clone(),
                trunk: None,
                reserved_units,
            })
            .collect(),
        currency,
    }
}

/// The longest call of at most `cap` seconds whose cost is within `available`; `None` when not even
/// one second is (its cost includes the first increment and the connect fee).
fn longest_affordable_seconds(
    cost_units: &dyn Fn(u32) -> i64,
    available: i64,
    cap: u32,
) -> Option<u32> {
    if cap == 0 || cost_units(1) > available {
        return None;
    }
    let (mut affordable, mut too_long) = (1u32, cap.saturating_add(1));
    if cost_units(cap) <= available {
        return Some(cap);
    }
    while too_long - affordable > 1 {
        let middle = affordable + (too_long - affordable) / 2;
        if cost_units(middle) <= available {
            affordable = middle;
        } else {
            too_long = middle;
        }
    }
    Some(affordable)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An account with unlimited credit (the money cases set a limit).
    fn level(id: &str, trunks: (u32, u32, u32), in_use: &[(TrunkKind, u32)]) -> ChainLevel {
        let mut account = Account::new(id, None, "USD");
        account.credit_limit = None;
        (
            account.trunks_inbound,
            account.trunks_outbound,
            account.trunks_two_way,
        ) = trunks;
        ChainLevel {
            account,
            balance_units: 0,
            reserved_units: 0,
            trunks_in_use: in_use.iter().copied().collect(),
        }
    }

    fn call(direction: Direction, other_party: &str) -> AuthorizationRequest {
        let (caller, callee) = match direction {
            Direction::Outbound => ("14155550001".to_string(), other_party.to_string()),
            Direction::Inbound => (other_party.to_string(), "14155550001".to_string()),
        };
        AuthorizationRequest {
            call_id: "c".into(),
            account: "a".into(),
            direction,
            caller,
            callee,
            time_micros: 0,
        }
    }

    /// One cent a second, whole minutes: 60 s minimum.
    fn per_minute(seconds: u32) -> i64 {
        i64::from(seconds.div_ceil(60) * 60) * 1_000_000
    }

    const US: &str = "13125550143";
    const LONDON: &str = "442079460000";

    /// (case, direction, other party, chain, priced, decision, reason, holds' trunks)
    type Case = (
        &'static str,
        Direction,
        &'static str,
        Vec<ChainLevel>,
        bool,
        Decision,
        &'static str,
        Vec<Option<TrunkKind>>,
    );

    #[test]
    fn decisions_by_case() {
        use Decision::*;
        use TrunkKind::*;
        let rules = TrunkEligibility::default();
        let with_limit = |mut chain_level: ChainLevel, balance: i64, limit: &str| {
            chain_level.balance_units = balance;
            chain_level.account.credit_limit = Some(limit.parse().unwrap());
            chain_level
        };
        let mut suspended = level("a", (1, 1, 1), &[]);
        suspended.account.status = AccountStatus::Suspended;
        let mut no_per_minute = level("a", (0, 1, 0), &[(Outbound, 1)]);
        no_per_minute.account.allow_per_minute = false;
        let mut no_per_minute_not_eligible = level("a", (0, 1, 0), &[]);
        no_per_minute_not_eligible.account.allow_per_minute = false;
        // (case, direction, other party, chain, priced, decision, reason, holds' trunks)
        let cases: Vec<Case> = vec![
            (
                "own pool first",
                Direction::Outbound,
                US,
                vec![level("a", (0, 2, 1), &[(Outbound, 1)])],
                true,
                Trunk,
                "trunk_available",
                vec![Some(Outbound)],
            ),
            (
                "two-way overflow",
                Direction::Outbound,
                US,
                vec![level("a", (0, 2, 1), &[(Outbound, 2)])],
                true,
                Trunk,
                "trunk_available",
                vec![Some(TwoWay)],
            ),
            (
                "inbound pool",
                Direction::Inbound,
                US,
                vec![level("a", (1, 0, 0), &[])],
                true,
                Trunk,
                "trunk_available",
                vec![Some(Inbound)],
            ),
            (
                "all busy: per-minute",
                Direction::Outbound,
                US,
                vec![level("a", (0, 1, 1), &[(Outbound, 1), (TwoWay, 1)])],
                true,
                PerMinute,
                "trunks_busy",
                vec![None],
            ),
            (
                "international: per-minute",
                Direction::Outbound,
                LONDON,
                vec![level("a", (0, 5, 5), &[])],
                true,
                PerMinute,
                "not_trunk_eligible",
                vec![None],
            ),
            (
                "toll-free: per-minute",
                Direction::Outbound,
                "18005550100",
                vec![level("a", (0, 5, 5), &[])],
                true,
                PerMinute,
                "not_trunk_eligible",
                vec![None],
            ),
            (
                "no trunks at all",
                Direction::Outbound,
                US,
                vec![level("a", (0, 0, 0), &[])],
                true,
                PerMinute,
                "no_trunks",
                vec![None],
            ),
            (
                "parent full, child free",
                Direction::Outbound,
                US,
                vec![
                    level("a", (0, 5, 0), &[]),
                    level("p", (0, 1, 0), &[(Outbound, 1)]),
                ],
                true,
                PerMinute,
                "trunks_busy",
                vec![None, None],
            ),
            (
                "both levels have room",
                Direction::Outbound,
                US,
                vec![
                    level("a", (0, 5, 0), &[]),
                    level("p", (0, 2, 1), &[(Outbound, 2)]),
                ],
                true,
                Trunk,
                "trunk_available",
                vec![Some(Outbound), Some(TwoWay)],
            ),
            (
                "suspended",
                Direction::Outbound,
                US,
                vec![suspended],
                true,
                Deny,
                "account_suspended",
                vec![],
            ),
            (
                "busy, per-minute not allowed",
                Direction::Outbound,
                US,
                vec![no_per_minute],
                true,
                Deny,
                "no_trunk_available",
                vec![],
            ),
            (
                "not eligible, per-minute not allowed",
                Direction::Outbound,
                LONDON,
                vec![no_per_minute_not_eligible],
                true,
                Deny,
                "per_minute_not_allowed",
                vec![],
            ),
            (
                "no rate",
                Direction::Outbound,
                LONDON,
                vec![level("a", (0, 0, 0), &[])],
                false,
                Deny,
                "no_rate_for_destination",
                vec![],
            ),
            (
                "parent out of money",
                Direction::Outbound,
                LONDON,
                vec![
                    with_limit(level("a", (0, 0, 0), &[]), 500_000_000, "0"),
                    with_limit(level("p", (0, 0, 0), &[]), 10_000_000, "0"),
                ],
                true,
                Deny,
                "insufficient_balance",
                vec![],
            ),
        ];
        for (case, direction, other, chain, priced, decision, reason, trunks) in cases {
            let price: &dyn Fn(u32) -> i64 = &per_minute;
            let answer = decide(
                &call(direction, other),
                &chain,
                &rules,
                priced.then_some(price),
                3600,
            );
            assert_eq!(answer.decision, decision, "{case}: {answer:?}");
            assert_eq!(answer.reason, reason, "{case}");
            let held: Vec<Option<TrunkKind>> = answer.holds.iter().map(|hold| hold.trunk).collect();
            assert_eq!(held, trunks, "{case}");
        }
    }

    #[test]
    fn max_duration_is_what_the_tightest_level_buys() {
        let rules = TrunkEligibility::default();
        let mut child = level("a", (0, 0, 0), &[]);
        child.balance_units = 5_00000000; // 5.00 and a 2.00 credit limit: 7.00 available
        child.account.credit_limit = Some("2".parse().unwrap());
        let mut parent = level("p", (0, 0, 0), &[]);
        parent.balance_units = 3_00000000; // 3.00, 0.50 of it reserved: 2.50 available
        parent.reserved_units = 50000000;
        parent.account.credit_limit = Some("0".parse().unwrap());
        let price: &dyn Fn(u32) -> i64 = &per_minute;
        let answer = decide(
            &call(Direction::Outbound, LONDON),
            &[child.clone(), parent.clone()],
            &rules,
            Some(price),
            3600,
        );
        // 2.50 at 0.60 a minute: 4 whole minutes (2.40).
        assert_eq!(answer.max_duration_seconds, 240);
        assert_eq!(answer.reserved_units(), 2_40000000);
        assert!(
            answer
                .holds
                .iter()
                .all(|hold| hold.reserved_units == 2_40000000)
        );
        // Unlimited everywhere: the cap.
        child.account.credit_limit = None;
        parent.account.credit_limit = None;
        let answer = decide(
            &call(Direction::Outbound, LONDON),
            &[child, parent],
            &rules,
            Some(price),
            3600,
        );
        assert_eq!(answer.max_duration_seconds, 3600);
    }
}

//! The usage rollup: for every account that has sub-accounts, the calls, billable seconds and
//! charged units of its whole subtree (its own calls included), per quarter hour of start time
//! (UTC) and currency. A reseller's month to date with its sub-accounts then reads a few thousand
//! rollup rows instead of every call of the subtree.
//!
//! Invariant: each rollup row equals the aggregate of the calls of its account's subtree in its
//! quarter hour and currency, to the unit. Whatever changes a call's account, start time,
//! currency, billable seconds, cost or billing class, or the account tree, changes the rollup in
//! the same transaction. The stores do it in one place each (`rollup` in `sqlite_store` and
//! `postgres_store`); this module computes what changes, the same for both.
//!
//! Leaf accounts have no rollup: one of them has about one call per quarter hour, so its calls
//! are read directly, through the index by account and start time.

use super::ledger_store::{QUARTER_HOUR_MICROS, UsageGrouping, UsageQuery, charged_units};
use crate::credit::posting::{CallColumns, CallFate, PostingBatch};
use std::collections::{BTreeMap, HashMap, HashSet};

/// The rollup's table, the same columns in both stores.
pub const ROLLUP_COLUMNS: &str =
    "ancestor, quarter_hour_micros, currency, calls, billable_seconds, charged_units";

/// The quarter hour (UTC) a call started in, in micros (both stores: integer arithmetic on
/// BIGINTs, rounding down before the epoch too).
pub const QUARTER_HOUR_SQL: &str =
    "(start_time_micros - ((start_time_micros % 900000000) + 900000000) % 900000000)";

/// The start of the quarter hour (UTC) that `micros` falls in.
pub fn quarter_hour_of(micros: i64) -> i64 {
    micros.div_euclid(QUARTER_HOUR_MICROS) * QUARTER_HOUR_MICROS
}

/// What the rollup counts of one call, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RollupCall {
    pub account: String,
    pub start_time_micros: i64,
    pub currency: String,
    pub billable_seconds: i64,
    /// What the call is charged: nothing on a trunk or while held (see [`charged_units`]).
    pub charged_units: i64,
}

impl RollupCall {
    pub fn new(
        account: String,
        start_time_micros: i64,
        currency: String,
        billable_seconds: i64,
        billing_class: &str,
        cost_units: i64,
    ) -> RollupCall {
        RollupCall {
            account,
            start_time_micros,
            currency,
            billable_seconds,
            charged_units: charged_units(billing_class, cost_units),
        }
    }
}

/// The columns a [`RollupCall`] is read from, in [`RollupCall::new`]'s order (both stores).
pub const ROLLUP_CALL_COLUMNS: &str =
    "account, start_time_micros, currency, billable_seconds, billing_class, cost_units";

/// Who has a rollup: the accounts with at least one sub-account.
#[derive(Clone, Debug)]
pub struct RollupTree<'a> {
    parents: &'a HashMap<String, Option<String>>,
    with_children: HashSet<&'a str>,
}

impl<'a> RollupTree<'a> {
    pub fn new(parents: &'a HashMap<String, Option<String>>) -> RollupTree<'a> {
        RollupTree {
            parents,
            with_children: parents.values().flatten().map(String::as_str).collect(),
        }
    }

    /// The accounts whose rollup counts `account`'s calls: those of its chain (itself first)
    /// that have sub-accounts. An account not in the tree is in no rollup.
    pub fn rollups_of(&self, account: &str) -> Vec<&'a str> {
        let parents = self.parents;
        let mut rollups = Vec::new();
        let mut next = parents.get_key_value(account).map(|(id, _)| id.as_str());
        let mut steps = 0;
        while let Some(id) = next {
            if self.with_children.contains(id) {
                rollups.push(id);
            }
            next = parents
                .get(id)
                .and_then(|parent| parent.as_deref())
                .and_then(|parent| parents.get_key_value(parent))
                .map(|(id, _)| id.as_str());
            steps += 1;
            // Imports refuse cycles; this only guards the walk.
            if steps > parents.len() {
                break;
            }
        }
        rollups
    }
}

/// (ancestor, quarter hour, currency) of a rollup row.
pub type RollupKey = (String, i64, String);

/// Sums to add to rollup rows (negative to take away), in key order: every store applies them
/// in that order, so two writers take the rows' locks in the same order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RollupChange {
    /// key → (calls, billable seconds, charged units)
    pub sums: BTreeMap<RollupKey, (i64, i64, i64)>,
}

impl RollupChange {
    /// Counts `call` (`sign` 1) or takes it away (`sign` -1) in every rollup of its chain.
    pub fn count(&mut self, tree: &RollupTree<'_>, call: &RollupCall, sign: i64) {
        self.count_sums(
            &tree.rollups_of(&call.account),
            call.start_time_micros,
            &call.currency,
            (
                sign,
                sign * call.billable_seconds,
                sign * call.charged_units,
            ),
        );
    }

    /// Adds already summed calls of one quarter hour and currency to the rollups of `ancestors`.
    pub fn count_sums(
        &mut self,
        ancestors: &[&str],
        start_time_micros: i64,
        currency: &str,
        (calls, seconds, units): (i64, i64, i64),
    ) {
        let quarter_hour = quarter_hour_of(start_time_micros);
        for ancestor in ancestors {
            let sums = self
                .sums
                .entry((ancestor.to_string(), quarter_hour, currency.to_string()))
                .or_default();
            sums.0 += calls;
            sums.1 += seconds;
            sums.2 += units;
        }
    }

    /// Takes away `before` and counts `after`: what changing those calls does to the rollup.
    pub fn between(tree: &RollupTree<'_>, before: &[RollupCall], after: &[RollupCall]) -> Self {
        let mut change = RollupChange::default();
        for call in before {
            change.count(tree, call, -1);
        }
        for call in after {
            change.count(tree, call, 1);
        }
        change
    }

    /// The rows that change, in key order (sums that cancel out are left out).
    pub fn rows(&self) -> impl Iterator<Item = (&RollupKey, &(i64, i64, i64))> {
        self.sums.iter().filter(|(_, sums)| **sums != (0, 0, 0))
    }

    pub fn is_empty(&self) -> bool {
        self.rows().next().is_none()
    }

    /// True when some row may lose its last call (and is then deleted).
    pub fn takes_calls_away(&self) -> bool {
        self.rows().any(|(_, (calls, _, _))| *calls < 0)
    }
}

/// What posting `batch` adds to the rollup: its new calls (stored, on a trunk or held), each
/// charged as its fate says, the same as the balances are.
pub fn posted_calls(
    batch: &PostingBatch,
    fates: &[CallFate],
    tree: &RollupTree<'_>,
) -> RollupChange {
    let columns = CallColumns::of(batch);
    // (account, quarter hour, currency) → sums: a batch has far fewer of these than calls.
    let mut by_account: HashMap<(&str, i64, &str), (i64, i64, i64)> = HashMap::new();
    for (index, fate) in fates.iter().enumerate() {
        let charged = match fate {
            CallFate::Charged => batch.cost_units[index],
            CallFate::OnTrunk | CallFate::Held => 0,
            CallFate::Duplicate | CallFate::Conflict { .. } => continue,
        };
        let sums = by_account
            .entry((
                columns.account.value(index),
                quarter_hour_of(columns.start_time.value(index)),
                columns.currency.value(index),
            ))
            .or_default();
        sums.0 += 1;
        sums.1 += columns.billable_seconds.value(index);
        sums.2 += charged;
    }
    let mut rollups: HashMap<&str, Vec<&str>> = HashMap::new();
    let mut change = RollupChange::default();
    for ((account, quarter_hour, currency), sums) in by_account {
        let ancestors = rollups
            .entry(account)
            .or_insert_with(|| tree.rollups_of(account));
        change.count_sums(ancestors, quarter_hour, currency, sums);
    }
    change
}

/// An account whose calls move between rollups when the tree changes: it leaves `from` and joins
/// `to` (a re-parented account and its subtree, an account gaining its first sub-account, an
/// account imported after calls of it were stored).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RollupMove {
    pub account: String,
    pub from: Vec<String>,
    pub to: Vec<String>,
}

/// The accounts whose rollups differ between the tree `before` and the tree `after`.
pub fn rollup_moves(
    before: &HashMap<String, Option<String>>,
    after: &HashMap<String, Option<String>>,
) -> Vec<RollupMove> {
    let (old, new) = (RollupTree::new(before), RollupTree::new(after));
    let mut accounts: Vec<&String> = before.keys().chain(after.keys()).collect();
    accounts.sort();
    accounts.dedup();
    accounts
        .into_iter()
        .filter_map(|account| {
            let was: HashSet<&str> = old.rollups_of(account).into_iter().collect();
            let is: HashSet<&str> = new.rollups_of(account).into_iter().collect();
            let mut from: Vec<String> = was.difference(&is).map(|id| id.to_string()).collect();
            let mut to: Vec<String> = is.difference(&was).map(|id| id.to_string()).collect();
            from.sort();
            to.sort();
            (!from.is_empty() || !to.is_empty()).then(|| RollupMove {
                account: account.clone(),
                from,
                to,
            })
        })
        .collect()
}

/// What moving accounts between rollups changes, from each moved account's stored sums per
/// quarter hour and currency: `sums` is (account, quarter hour, currency, calls, billable
/// seconds, charged units).
pub fn moved_sums(
    moves: &[RollupMove],
    sums: &[(String, i64, String, i64, i64, i64)],
) -> RollupChange {
    let by_account: HashMap<&str, &RollupMove> = moves
        .iter()
        .map(|moved| (moved.account.as_str(), moved))
        .collect();
    let mut change = RollupChange::default();
    for (account, quarter_hour, currency, calls, seconds, units) in sums {
        let Some(moved) = by_account.get(account.as_str()) else {
            continue;
        };
        let from: Vec<&str> = moved.from.iter().map(String::as_str).collect();
        let to: Vec<&str> = moved.to.iter().map(String::as_str).collect();
        change.count_sums(&from, *quarter_hour, currency, (-calls, -seconds, -units));
        change.count_sums(&to, *quarter_hour, currency, (*calls, *seconds, *units));
    }
    change
}

/// How a quarter-hour usage query over `[from, to)` splits: whole quarter hours the rollup
/// answers, and at most two partial ones at the ends that are read call by call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RollupSpan {
    /// Whole quarter hours `[start, end)` read from the rollup.
    pub whole: (i64, i64),
    /// Ranges read call by call (empty ranges left out).
    pub edges: Vec<(i64, i64)>,
}

/// The account whose rollup can answer `query`, with the span it answers: by quarter hour, a
/// subtree with sub-accounts (only those have a rollup), at least one whole quarter hour.
pub fn rollup_query_span(query: &UsageQuery) -> Option<(&str, RollupSpan)> {
    if query.grouping != UsageGrouping::QuarterHour || query.accounts.len() < 2 {
        return None;
    }
    let root = query.subtree_of.as_deref()?;
    Some((root, rollup_span(query.from_micros, query.to_micros)?))
}

/// Splits `[from, to)`; `None` when it holds no whole quarter hour.
pub fn rollup_span(from_micros: i64, to_micros: i64) -> Option<RollupSpan> {
    let rounded_up = from_micros.div_euclid(QUARTER_HOUR_MICROS)
        + i64::from(from_micros.rem_euclid(QUARTER_HOUR_MICROS) != 0);
    let start = rounded_up.checked_mul(QUARTER_HOUR_MICROS)?;
    let end = to_micros
        .div_euclid(QUARTER_HOUR_MICROS)
        .checked_mul(QUARTER_HOUR_MICROS)?;
    if start >= end {
        return None;
    }
    let edges = [(from_micros, start), (end, to_micros)]
        .into_iter()
        .filter(|(from, to)| from < to)
        .collect();
    Some(RollupSpan {
        whole: (start, end),
        edges,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(links: &[(&str, Option<&str>)]) -> HashMap<String, Option<String>> {
        links
            .iter()
            .map(|(id, parent)| (id.to_string(), parent.map(str::to_string)))
            .collect()
    }

    #[test]
    fn rollups_are_the_chain_accounts_that_have_children() {
        let parents = tree(&[
            ("root", None),
            ("reseller", Some("root")),
            ("leaf", Some("reseller")),
            ("lone", None),
        ]);
        let tree = RollupTree::new(&parents);
        assert_eq!(tree.rollups_of("leaf"), vec!["reseller", "root"]);
        assert_eq!(tree.rollups_of("reseller"), vec!["reseller", "root"]);
        assert_eq!(tree.rollups_of("lone"), Vec::<&str>::new());
        assert_eq!(tree.rollups_of("unknown"), Vec::<&str>::new());
    }

    #[test]
    fn a_first_child_and_a_re_parent_move_calls_between_rollups() {
        let before = tree(&[("a", None), ("b", None), ("c", Some("a"))]);
        let after = tree(&[("a", None), ("b", None), ("c", Some("b")), ("d", Some("c"))]);
        let moves = rollup_moves(&before, &after);
        let of = |account: &str| moves.iter().find(|moved| moved.account == account).cloned();
        // a has no child left: its own calls leave its rollup.
        assert_eq!(of("a").unwrap().from, vec!["a"]);
        // c leaves a for b, and now has a child of its own.
        assert_eq!(of("c").unwrap().from, vec!["a"]);
        assert_eq!(of("c").unwrap().to, vec!["b", "c"]);
        assert_eq!(of("b").unwrap().to, vec!["b"]);
        assert_eq!(of("d").unwrap().to, vec!["b", "c"]);
    }

    #[test]
    fn spans_keep_whole_quarter_hours_and_read_the_ends_call_by_call() {
        let q = QUARTER_HOUR_MICROS;
        assert_eq!(
            rollup_span(0, 3 * q),
            Some(RollupSpan {
                whole: (0, 3 * q),
                edges: vec![]
            })
        );
        assert_eq!(
            rollup_span(-5, 2 * q + 7),
            Some(RollupSpan {
                whole: (0, 2 * q),
                edges: vec![(-5, 0), (2 * q, 2 * q + 7)]
            })
        );
        assert_eq!(rollup_span(1, q + 1), None);
        assert_eq!(
            rollup_span(i64::MIN, i64::MAX).map(|span| span.edges.len()),
            Some(2)
        );
    }
}

//! Rerating: after a deck correction, the calls of a period are priced again with the rating core,
//! and each call whose cost changed gets a revision. Applying a revision reverses the old charge
//! and makes the new one on the call's account and every account above it (ledger kind `rerate`),
//! so the net effect is the difference, never a second full debit. A revision applies only to the
//! call revision it was priced from, so running the same rerate again, or two at once, moves
//! nothing the second time.

use super::accounts::AccountBook;
use super::posting::{AccountLinks, account_chain};
use super::thresholds::thresholds_crossed;
use super::trunk_sweep::{BillingClass, HELD_FOR_SWEEP};
use crate::batch::deck_choice::DeckChoice;
use crate::cdr::{Cdr, Direction, RejectReason};
use crate::limits::RERATE_PAGE_CALLS;
use crate::money::cost_in_ledger_units;
use crate::rate::deck::Deck;
use crate::rate::pricing::rate_cdr;
use crate::store::ledger_store::{
    CallCursor, CallRevision, LedgerStore, RevisionsApplied, StoredCall,
};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Which accounts' calls to rerate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RerateScope {
    Account(String),
    All,
}

impl RerateScope {
    pub fn label(&self) -> String {
        match self {
            RerateScope::Account(account) => format!("account {account}"),
            RerateScope::All => "all accounts".to_string(),
        }
    }
}

/// What a rerate did, for the summary on stdout.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RerateSummary {
    pub rerate_run: i64,
    pub calls_examined: u64,
    pub calls_changed: u64,
    /// Per currency: money given back (old cost above new) and charged more, in ledger units.
    pub refunded_units: BTreeMap<String, i64>,
    pub charged_more_units: BTreeMap<String, i64>,
    /// Calls left as they were because the decks given cannot price them, by reason.
    pub calls_not_priced: BTreeMap<String, u64>,
    /// Calls held for the trunk sweep (stored, not yet charged): left as they were; the sweep
    /// charges their stored cost, so rerate again once it has classified them.
    pub calls_held: u64,
}

/// One ledger entry of an applied revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RerateEntry {
    pub account: String,
    pub amount_units: i64,
    pub balance_after_units: i64,
    pub reference: String,
}

/// What applied revisions write to the ledger: the entries, each account's balance after them,
/// and the thresholds crossed downwards from the balance before to the balance after.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RerateLedgerPlan {
    pub entries: Vec<RerateEntry>,
    pub balances_after: BTreeMap<String, i64>,
    /// (account, threshold, balance after), as alert rows take them.
    pub alerts: Vec<(String, i64, i64)>,
}

/// Every account whose money applied revisions move (each call's account and those above it),
/// sorted, which is the order both stores lock them in.
pub fn accounts_moved(
    applied: &[&CallRevision],
    links: &AccountLinks,
) -> anyhow::Result<BTreeSet<String>> {
    let mut accounts = BTreeSet::new();
    for revision in applied {
        accounts.extend(account_chain(&revision.account, &links.parents)?);
    }
    Ok(accounts)
}

/// The ledger plan of applied revisions from the moved accounts' balances before them: per call
/// and per account of its chain, the reversal of the old charge, then the new charge.
pub fn plan_rerate_ledger(
    rerate_run: i64,
    applied: &[&CallRevision],
    links: &AccountLinks,
    balances_before: &HashMap<String, i64>,
) -> anyhow::Result<RerateLedgerPlan> {
    let mut balances: BTreeMap<String, i64> = BTreeMap::new();
    let mut entries = Vec::with_capacity(applied.len() * 4);
    for revision in applied {
        let call = format!("{}/{}", revision.source, revision.cdr_id);
        for account in account_chain(&revision.account, &links.parents)? {
            let before = *balances_before
                .get(&account)
                .ok_or_else(|| anyhow::anyhow!("account {account} is not in the store"))?;
            let balance = balances.entry(account.clone()).or_insert(before);
            *balance += revision.old_cost_units;
            entries.push(RerateEntry {
                account: account.clone(),
                amount_units: revision.old_cost_units,
                balance_after_units: *balance,
                reference: format!("rerate {rerate_run}: reversal of {call}"),
            });
            *balance -= revision.new_cost_units;
            entries.push(RerateEntry {
                account,
                amount_units: -revision.new_cost_units,
                balance_after_units: *balance,
                reference: format!("rerate {rerate_run}: {call} at {}", revision.new_deck),
            });
        }
    }
    let mut alerts = Vec::new();
    for (account, after) in &balances {
        for threshold in thresholds_crossed(
            balances_before[account],
            *after,
            links.thresholds_of(account),
        ) {
            alerts.push((account.clone(), threshold, *after));
        }
    }
    Ok(RerateLedgerPlan {
        entries,
        balances_after: balances,
        alerts,
    })
}

/// Sums what applied revisions moved: how many, and the money given back and charged more.
pub fn applied_totals(applied: &[&CallRevision]) -> RevisionsApplied {
    let mut totals = RevisionsApplied {
        changed: applied.len() as u64,
        ..RevisionsApplied::default()
    };
    for revision in applied {
        totals.add_move(revision.old_cost_units - revision.new_cost_units);
    }
    totals
}

/// Prices a stored call again: the revision when its cost changed, `Ok(None)` when it did not,
/// or why the decks cannot price it (the call is then left as it is).
pub fn reprice_call(
    call: &StoredCall,
    decks: &[Deck],
    deck_choice: &DeckChoice,
) -> Result<Option<CallRevision>, RejectReason> {
    if call.billing_class == BillingClass::Trunk.as_str() {
        // On a trunk: no per-minute charge to correct, whatever the deck says now.
        return Ok(None);
    }
    let direction = Direction::parse(&call.direction).ok_or(RejectReason::InvalidDirection)?;
    let deck = &decks[usize::from(deck_choice.deck_for(&call.account, direction)?)];
    let cdr = Cdr {
        source: &call.source,
        cdr_id: &call.cdr_id,
        account: &call.account,
        direction,
        caller: Cow::Borrowed(&call.caller),
        callee: Cow::Borrowed(&call.callee),
        start_time_micros: call.start_time_micros,
        answer_time_micros: call.answer_time_micros,
        end_time_micros: call.end_time_micros,
        billsec: u32::try_from(call.billsec).map_err(|_| RejectReason::InvalidBillsec)?,
        disposition: &call.disposition,
    };
    let charge = rate_cdr(deck, &cdr)?;
    let cost_mantissa =
        i64::try_from(charge.cost_mantissa).map_err(|_| RejectReason::InvalidBillsec)?;
    let new_cost_units = cost_in_ledger_units(cost_mantissa, deck.rounding.decimals);
    if new_cost_units == call.cost_units {
        return Ok(None);
    }
    let rate = charge.rate_id.map(|rate_id| &deck.rates[rate_id as usize]);
    Ok(Some(CallRevision {
        source: call.source.clone(),
        cdr_id: call.cdr_id.clone(),
        account: call.account.clone(),
        expected_revision: call.revision,
        old_deck: call.deck.clone(),
        new_deck: deck.label(),
        old_rate: call.rate.clone(),
        new_rate: rate.map(|rate| rate.rate_per_minute),
        new_rate_prefix: rate.map(|rate| rate.prefix.to_string()),
        new_destination: rate.map(|rate| rate.destination.to_string()),
        old_billable_seconds: call.billable_seconds,
        new_billable_seconds: i64::from(charge.billable_seconds),
        old_cost_units: call.cost_units,
        new_cost_units,
    }))
}

/// Rerates the calls of `scope` that started in `[from_micros, to_micros)` with `decks`. Only
/// accounts whose deck (by name) is among `decks` are priced; a call the decks cannot price is
/// counted and left alone, never made free. Each page is one transaction, so an interrupted run
/// leaves whole pages done and a second run finishes the rest.
pub fn run_rerate(
    store: &mut dyn LedgerStore,
    decks: &[Deck],
    scope: &RerateScope,
    from_micros: i64,
    to_micros: i64,
    mut progress: impl FnMut(&RerateSummary),
) -> anyhow::Result<RerateSummary> {
    let stored_accounts = store.accounts()?;
    let accounts: Vec<String> = match scope {
        RerateScope::Account(account) => {
            if !stored_accounts.iter().any(|stored| &stored.id == account) {
                anyhow::bail!("no account {account:?} in the store");
            }
            vec![account.clone()]
        }
        RerateScope::All => stored_accounts
            .iter()
            .map(|account| account.id.clone())
            .collect(),
    };
    let book = AccountBook {
        accounts: stored_accounts
            .into_iter()
            .map(|account| (account.id.clone(), account))
            .collect(),
    };
    let (deck_choice, _decks_not_given) =
        DeckChoice::by_account_listing_unknown_decks(&book, decks);
    let deck_names: Vec<&str> = decks.iter().map(|deck| deck.name.as_str()).collect();
    let deck_labels: Vec<String> = decks.iter().map(Deck::label).collect();
    let mut summary = RerateSummary {
        rerate_run: store.begin_rerate_run(
            &scope.label(),
            from_micros,
            to_micros,
            &deck_labels.join(", "),
        )?,
        ..RerateSummary::default()
    };
    let mut applied_total = RevisionsApplied::default();
    for account in &accounts {
        let uses_given_deck = book.accounts.get(account).is_some_and(|profile| {
            [Direction::Outbound, Direction::Inbound]
                .iter()
                .any(|direction| {
                    profile
                        .deck_for(*direction)
                        .is_some_and(|name| deck_names.contains(&name))
                })
        });
        if !uses_given_deck {
            continue;
        }
        let mut after: Option<CallCursor> = None;
        loop {
            let calls = store.rated_calls_of(
                account,
                from_micros,
                to_micros,
                after.as_ref(),
                RERATE_PAGE_CALLS,
            )?;
            let Some(last) = calls.last() else { break };
            after = Some(last.cursor());
            let fetched = calls.len();
            let mut revisions = Vec::new();
            // Only the calls of the direction whose deck was given: the others are not this
            // rerate's business (an account's inbound deck may not be the one corrected).
            let profile = book.accounts.get(account);
            let calls: Vec<StoredCall> = calls
                .into_iter()
                .filter(|call| {
                    let deck = Direction::parse(&call.direction)
                        .and_then(|direction| profile.and_then(|p| p.deck_for(direction)));
                    deck.is_none_or(|name| deck_names.contains(&name))
                })
                .collect();
            for call in &calls {
                if call.billing_class == HELD_FOR_SWEEP {
                    summary.calls_held += 1;
                    continue;
                }
                match reprice_call(call, decks, &deck_choice) {
                    Ok(Some(revision)) => revisions.push(revision),
                    Ok(None) => {}
                    Err(reason) => {
                        *summary
                            .calls_not_priced
                            .entry(reason.as_str().to_string())
                            .or_default() += 1
                    }
                }
            }
            summary.calls_examined += calls.len() as u64;
            if !revisions.is_empty() {
                let applied = store.apply_call_revisions(summary.rerate_run, &revisions)?;
                // A page is one account's calls, so one currency.
                let currency = &calls[0].currency;
                *summary.refunded_units.entry(currency.clone()).or_default() +=
                    applied.refunded_units;
                *summary
                    .charged_more_units
                    .entry(currency.clone())
                    .or_default() += applied.charged_more_units;
                applied_total.add(&applied);
            }
            summary.calls_changed = applied_total.changed;
            progress(&summary);
            if fetched < RERATE_PAGE_CALLS {
                break;
            }
        }
    }
    store.finish_rerate_run(summary.rerate_run, summary.calls_examined, &applied_total)?;
    Ok(summary)
}

/// The summary `tollgate rerate` prints: calls examined and changed, money moved per currency,
/// and the calls the decks could not price.
pub fn rerate_report(summary: &RerateSummary) -> String {
    use crate::money::ledger_decimal;
    let mut report = format!(
        "rerate run {}: {} calls examined, {} changed\n",
        summary.rerate_run, summary.calls_examined, summary.calls_changed
    );
    let currencies: BTreeSet<&String> = summary
        .refunded_units
        .keys()
        .chain(summary.charged_more_units.keys())
        .collect();
    for currency in currencies {
        let refunded = summary.refunded_units.get(currency).copied().unwrap_or(0);
        let charged_more = summary
            .charged_more_units
            .get(currency)
            .copied()
            .unwrap_or(0);
        report.push_str(&format!(
            "  {currency}: {} given back, {} charged more, net {} {}\n",
            ledger_decimal(refunded),
            ledger_decimal(charged_more),
            ledger_decimal((refunded - charged_more).abs()),
            if refunded >= charged_more {
                "back to the accounts"
            } else {
                "more charged to the accounts"
            }
        ));
    }
    if !summary.calls_not_priced.is_empty() {
        let reasons: Vec<String> = summary
            .calls_not_priced
            .iter()
            .map(|(reason, count)| format!("{reason} {count}"))
            .collect();
        report.push_str(&format!(
            "  left as they were (the decks given cannot price them): {}\n",
            reasons.join(", ")
        ));
    }
    if summary.calls_held > 0 {
        report.push_str(&format!(
            "  held for the trunk sweep, not charged yet, left as they were (rerate again once it has classified them): {}\n",
            summary.calls_held
        ));
    }
    report
}

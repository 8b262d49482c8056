//! The run summary (`summary.json`): counts, money per currency, time taken.
//! Invariant: rows_read = rated + rejected + duplicates.

use crate::batch::rated_block::{RatedBlock, RatingContext, RowStatus};
use crate::batch::trunk_pass::BillingClasses;
use crate::cdr::RejectReason;
use crate::credit::trunk_sweep::BillingClass;
use crate::money::Money;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Default, Serialize, Clone, PartialEq)]
pub struct Summary {
    pub files: Vec<String>,
    pub decks: Vec<String>,
    pub rows_read: u64,
    pub rated: u64,
    pub rejected: u64,
    pub rejected_by_reason: BTreeMap<String, u64>,
    pub duplicates: u64,
    /// Duplicates whose content differed from the first occurrence: worth a look.
    pub conflicting_duplicates: u64,
    pub billable_seconds: u64,
    /// Total cost of the rated calls charged (all but those on trunks) per currency.
    pub total_cost: BTreeMap<String, Money>,
    /// With `--accounts` whose accounts have trunks or limits: rated calls per billing class.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub billing_classes: Option<BTreeMap<String, u64>>,
    /// List price of the calls on trunks (recorded, not charged) per currency.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub trunk_list_cost: BTreeMap<String, Money>,
    pub seconds_taken: f64,
    pub rated_output: String,
    pub rejects_output: String,
}

impl Summary {
    pub fn count_reject(&mut self, reason: RejectReason) {
        self.rejected += 1;
        *self
            .rejected_by_reason
            .entry(reason.as_str().to_string())
            .or_default() += 1;
    }

    /// Adds a block whose statuses are final; parse rejects are counted separately, as the
    /// ordered pass writes them.
    pub fn add_rows(
        &mut self,
        block: &RatedBlock,
        classes: &BillingClasses,
        cost_by_deck: &mut [i128],
        trunk_cost_by_deck: &mut [i128],
    ) {
        for row in 0..block.n_rows() {
            match block.status[row] {
                RowStatus::Rated => {
                    self.rated += 1;
                    self.billable_seconds += u64::from(block.billable_seconds[row]);
                    let class = classes.of(block.key_digest[row]);
                    let costs = match class {
                        BillingClass::Trunk => &mut *trunk_cost_by_deck,
                        _ => &mut *cost_by_deck,
                    };
                    costs[usize::from(block.deck[row])] += i128::from(block.cost_mantissa[row]);
                    if let Some(counts) = &mut self.billing_classes {
                        *counts.entry(class.as_str().to_string()).or_default() += 1;
                    }
                }
                RowStatus::Rejected(_) => {}
                RowStatus::Duplicate { same_content } => {
                    self.duplicates += 1;
                    if !same_content {
                        self.conflicting_duplicates += 1;
                    }
                }
            }
        }
    }

    /// Folds per-deck cost mantissas into totals per currency.
    pub fn set_total_cost(
        &mut self,
        context: &RatingContext,
        cost_by_deck: &[i128],
        trunk_cost_by_deck: &[i128],
    ) {
        self.total_cost.clear();
        self.trunk_list_cost.clear();
        for (deck, (&charged, &on_trunks)) in context
            .decks
            .iter()
            .zip(cost_by_deck.iter().zip(trunk_cost_by_deck))
        {
            *self.total_cost.entry(deck.currency.clone()).or_default() +=
                Money::from_scaled(charged, deck.rounding.decimals);
            if on_trunks != 0 {
                *self
                    .trunk_list_cost
                    .entry(deck.currency.clone())
                    .or_default() += Money::from_scaled(on_trunks, deck.rounding.decimals);
            }
        }
    }

    pub fn invariant_holds(&self) -> bool {
        self.rows_read == self.rated + self.rejected + self.duplicates
    }
}

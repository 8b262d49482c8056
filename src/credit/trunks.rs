//! Trunks (KAZOO jonny5 semantics): which calls may use an account's flat-rate lines, and which
//! pool a call takes. A call is trunk-eligible when its other party (the callee of an outbound
//! call, the caller of an inbound one) is a NANP number, `1` and ten digits, whose area code is not
//! excluded: toll-free codes and the NANP codes outside the US and Canada by default.

use super::accounts::{Account, AccountStatus};
use crate::cdr::Direction;

/// Toll-free area codes.
pub const TOLL_FREE_NPAS: &[u16] = &[800, 833, 844, 855, 866, 877, 888];

/// NANP area codes outside the US and Canada (Caribbean and Atlantic countries). US territories
/// (Puerto Rico, USVI, Guam, Northern Marianas, American Samoa) are domestic and stay eligible.
pub const NON_US_CANADA_NPAS: &[u16] = &[
    242, 246, 264, 268, 284, 345, 441, 473, 649, 658, 664, 721, 758, 767, 784, 809, 829, 849, 868,
    869, 876,
];

/// A trunk pool of an account.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum TrunkKind {
    Inbound,
    Outbound,
    TwoWay,
}

impl TrunkKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TrunkKind::Inbound => "inbound",
            TrunkKind::Outbound => "outbound",
            TrunkKind::TwoWay => "two_way",
        }
    }

    pub fn parse(text: &str) -> Option<TrunkKind> {
        match text {
            "inbound" => Some(TrunkKind::Inbound),
            "outbound" => Some(TrunkKind::Outbound),
            "two_way" => Some(TrunkKind::TwoWay),
            _ => None,
        }
    }

    /// The pool of a direction; two-way is the overflow of both.
    pub fn of_direction(direction: Direction) -> TrunkKind {
        match direction {
            Direction::Inbound => TrunkKind::Inbound,
            Direction::Outbound => TrunkKind::Outbound,
        }
    }
}

/// How many trunks of a pool an account has.
pub fn trunks_of(account: &Account, kind: TrunkKind) -> u32 {
    match kind {
        TrunkKind::Inbound => account.trunks_inbound,
        TrunkKind::Outbound => account.trunks_outbound,
        TrunkKind::TwoWay => account.trunks_two_way,
    }
}

pub fn has_trunks(account: &Account) -> bool {
    account.trunks_inbound + account.trunks_outbound + account.trunks_two_way > 0
}

/// The pool a call of `direction` takes on `account`: its direction's, else two-way; `None` when
/// both are full. `in_use(kind)` counts the calls on that pool.
pub fn pool_with_room(
    account: &Account,
    direction: Direction,
    in_use: impl Fn(TrunkKind) -> u32,
) -> Option<TrunkKind> {
    [TrunkKind::of_direction(direction), TrunkKind::TwoWay]
        .into_iter()
        .find(|kind| in_use(*kind) < trunks_of(account, *kind))
}

/// True when an account's calls are not all simply per-minute: it has trunks, refuses per-minute
/// calls, or is not active. Calls of a chain with such an account need a trunk decision.
pub fn account_limits_calls(account: &Account) -> bool {
    has_trunks(account) || !account.allow_per_minute || account.status != AccountStatus::Active
}

/// How stores write "no trunk" (a per-minute call's hold) where a trunk kind would go.
pub const NO_TRUNK: &str = "none";

/// A hold's trunk kind as stores keep it.
pub fn trunk_kind_text(kind: Option<TrunkKind>) -> &'static str {
    kind.map_or(NO_TRUNK, TrunkKind::as_str)
}

/// Which area codes are not trunk-eligible.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrunkEligibility {
    pub excluded_npas: Vec<u16>,
}

impl Default for TrunkEligibility {
    fn default() -> Self {
        let mut excluded_npas: Vec<u16> = TOLL_FREE_NPAS
            .iter()
            .chain(NON_US_CANADA_NPAS)
            .copied()
            .collect();
        excluded_npas.sort_unstable();
        TrunkEligibility { excluded_npas }
    }
}

impl TrunkEligibility {
    /// True when `number` (E.164 digits, an optional leading `+`) may use a trunk.
    pub fn is_eligible(&self, number: &str) -> bool {
        let digits = number.strip_prefix('+').unwrap_or(number);
        if digits.len() != 11
            || !digits.starts_with('1')
            || !digits.bytes().all(|b| b.is_ascii_digit())
        {
            return false;
        }
        let npa: u16 = digits[1..4].parse().expect("three digits");
        // NANP area codes start 2–9.
        npa >= 200 && self.excluded_npas.binary_search(&npa).is_err()
    }

    /// The party whose number decides: the callee of an outbound call, the caller of an inbound.
    pub fn call_is_eligible(&self, direction: Direction, caller: &str, callee: &str) -> bool {
        match direction {
            Direction::Outbound => self.is_eligible(callee),
            Direction::Inbound => self.is_eligible(caller),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nanp_numbers_outside_the_exclusions_are_eligible() {
        let rules = TrunkEligibility::default();
        let cases = [
            ("14155550100", true),   // San Francisco
            ("+14155550100", true),  // with a plus
            ("16135550100", true),   // Ottawa, Canada
            ("17875550100", true),   // Puerto Rico, a US territory
            ("18005550100", false),  // toll-free
            ("18885550100", false),  // toll-free
            ("18765550100", false),  // Jamaica
            ("12425550100", false),  // Bahamas
            ("442079460000", false), // London
            ("4155550100", false),   // ten digits, no country code
            ("11155550100", false),  // area codes start 2-9
            ("1415555010x", false),
        ];
        for (number, eligible) in cases {
            assert_eq!(rules.is_eligible(number), eligible, "{number}");
        }
        assert!(rules.call_is_eligible(Direction::Inbound, "14155550100", "442079460000"));
        assert!(!rules.call_is_eligible(Direction::Outbound, "14155550100", "442079460000"));
    }
}

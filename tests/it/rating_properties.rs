//! Properties that hold for every rate and call: billing never undercounts, costs grow with
//! duration, and the rounding modes bracket each other.

use crate::support::deck_from_text;
use proptest::prelude::*;
use tollgate::cdr::Direction;
use tollgate::rate::pricing::price_call;

const HEADER: &str = "prefix,destination,rate,connect_fee,min_seconds,increment,effective_from,effective_until,no_charge_seconds";

fn deck_row(
    rate_ten_thousandths: u32,
    connect_fee_hundredths: u32,
    min_seconds: u32,
    increment: u32,
    no_charge: u32,
    mode: &str,
) -> tollgate::rate::deck::Deck {
    let csv = format!(
        "{HEADER}\n44,UK,{}.{:04},0.{:02},{min_seconds},{increment},,,{no_charge}\n",
        rate_ten_thousandths / 10_000,
        rate_ten_thousandths % 10_000,
        connect_fee_hundredths
    );
    deck_from_text(&csv, Some(&format!("rounding_mode = \"{mode}\"")))
}

proptest! {
    #[test]
    fn billable_seconds_cover_the_call_by_less_than_one_block(
        rate in 0u32..50_000, fee in 0u32..100, min_seconds in 0u32..120, increment in 1u32..120,
        no_charge in 0u32..10, billsec in 0u32..20_000,
    ) {
        let deck = deck_row(rate, fee, min_seconds, increment, no_charge, "half_up");
        let charge = price_call(&deck, 0, 0, billsec, Direction::Outbound);
        if billsec == 0 || billsec <= no_charge {
            prop_assert_eq!(charge.billable_seconds, 0);
            prop_assert_eq!(charge.cost_mantissa, 0);
        } else {
            prop_assert!(charge.billable_seconds >= billsec);
            prop_assert!(charge.billable_seconds >= min_seconds);
            prop_assert!(charge.billable_seconds < billsec.max(min_seconds) + increment);
        }
    }

    #[test]
    fn cost_never_decreases_with_duration(
        rate in 0u32..50_000, fee in 0u32..100, min_seconds in 0u32..120, increment in 1u32..120, billsec in 1u32..20_000,
    ) {
        let deck = deck_row(rate, fee, min_seconds, increment, 0, "half_up");
        let shorter = price_call(&deck, 0, 0, billsec, Direction::Outbound);
        let longer = price_call(&deck, 0, 0, billsec + 1, Direction::Outbound);
        prop_assert!(longer.cost_mantissa >= shorter.cost_mantissa);
        prop_assert!(shorter.cost_mantissa >= 0);
    }

    #[test]
    fn rounding_modes_bracket_each_other(
        rate in 0u32..50_000, fee in 0u32..100, increment in 1u32..60, billsec in 1u32..5_000,
    ) {
        let cost = |mode: &str| price_call(&deck_row(rate, fee, 0, increment, 0, mode), 0, 0, billsec, Direction::Outbound).cost_mantissa;
        let (down, half_even, half_up, up) = (cost("down"), cost("half_even"), cost("half_up"), cost("up"));
        prop_assert!(down <= half_even && half_even <= half_up && half_up <= up);
        prop_assert!(up - down <= 1);
    }
}

//! Money: a decimal newtype, rounding modes, and the one function that rounds a price.
//!
//! Rating prices calls in scaled integers (a mantissa and a number of decimals) so that a call costs
//! a few integer operations; every conversion back to a rounded amount goes through
//! [`round_scaled_ratio`]. Money never passes through `f64`.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::fmt;

/// An amount of money in a deck's or account's currency.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Money(pub Decimal);

impl Money {
    pub const ZERO: Money = Money(Decimal::ZERO);

    /// Builds an amount from a mantissa and a number of decimals: `(12345, 4)` is 1.2345.
    pub fn from_scaled(mantissa: i128, decimals: u32) -> Money {
        Money(Decimal::from_i128_with_scale(mantissa, decimals))
    }

    pub fn as_decimal(self) -> Decimal {
        self.0
    }
}

impl fmt::Display for Money {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(formatter)
    }
}

impl std::ops::Add for Money {
    type Output = Money;
    fn add(self, other: Money) -> Money {
        Money(self.0 + other.0)
    }
}

impl std::ops::AddAssign for Money {
    fn add_assign(&mut self, other: Money) {
        self.0 += other.0;
    }
}

/// How a cost is rounded to the deck's decimals.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RoundingMode {
    /// Away from zero (CGRateS `*up`).
    Up,
    /// To nearest, ties away from zero (CGRateS `*middle`).
    #[default]
    HalfUp,
    /// Toward zero (CGRateS `*down`).
    Down,
    /// To nearest, ties to the even neighbour (banker's rounding).
    HalfEven,
}

impl RoundingMode {
    pub fn parse(text: &str) -> Option<RoundingMode> {
        match text.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "up" | "*up" | "ceiling" => Some(RoundingMode::Up),
            "half_up" | "*middle" | "middle" => Some(RoundingMode::HalfUp),
            "down" | "*down" | "floor" | "truncate" => Some(RoundingMode::Down),
            "half_even" | "bankers" => Some(RoundingMode::HalfEven),
            _ => None,
        }
    }
}

/// Where rounding happens: once per call (the default), or on every increment first
/// (CGRateS compatibility: each increment's cost is rounded to `decimals` before summing).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RoundingScope {
    #[default]
    Call,
    Increment {
        decimals: u32,
    },
}

/// A deck's rounding rule: how many decimals, which way, and where.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rounding {
    pub decimals: u32,
    pub mode: RoundingMode,
    pub scope: RoundingScope,
}

impl Default for Rounding {
    fn default() -> Self {
        Rounding {
            decimals: 4,
            mode: RoundingMode::HalfUp,
            scope: RoundingScope::Call,
        }
    }
}

/// Rounds the exact value `numerator / (denominator * 10^numerator_decimals)` to `decimals`
/// decimals with `mode`, returning the mantissa at `decimals`.
///
/// This is the one place where tollgate rounds money. It works on integers, so a value that sits
/// exactly on a tie is seen as one (no binary or truncated-decimal error can move it).
pub fn round_scaled_ratio(
    numerator: i128,
    numerator_decimals: u32,
    denominator: i128,
    decimals: u32,
    mode: RoundingMode,
) -> i128 {
    assert!(denominator > 0, "rounding denominator must be positive");
    // value * 10^decimals = numerator * 10^decimals / (denominator * 10^numerator_decimals)
    let (scaled_numerator, scaled_denominator) = if decimals >= numerator_decimals {
        (
            numerator * pow10(decimals - numerator_decimals),
            denominator,
        )
    } else {
        (
            numerator,
            denominator * pow10(numerator_decimals - decimals),
        )
    };
    // i128 division is a slow library call; a call's cost fits in i64, so divide there when we can.
    let (quotient, remainder) = match (
        i64::try_from(scaled_numerator),
        i64::try_from(scaled_denominator),
    ) {
        (Ok(numerator), Ok(denominator)) => (
            i128::from(numerator / denominator),
            i128::from(numerator % denominator),
        ),
        _ => (
            scaled_numerator / scaled_denominator,
            scaled_numerator % scaled_denominator,
        ),
    };
    if remainder == 0 {
        return quotient;
    }
    let sign: i128 = if scaled_numerator < 0 { -1 } else { 1 };
    let twice_remainder = 2 * remainder.abs();
    let away_from_zero = match mode {
        RoundingMode::Up => true,
        RoundingMode::Down => false,
        RoundingMode::HalfUp => twice_remainder >= scaled_denominator,
        RoundingMode::HalfEven => {
            twice_remainder > scaled_denominator
                || (twice_remainder == scaled_denominator && quotient % 2 != 0)
        }
    };
    if away_from_zero {
        quotient + sign
    } else {
        quotient
    }
}

/// Rounds a decimal to `decimals` with `mode` through [`round_scaled_ratio`].
pub fn round_decimal(value: Decimal, decimals: u32, mode: RoundingMode) -> Decimal {
    let mantissa = round_scaled_ratio(value.mantissa(), value.scale(), 1, decimals, mode);
    Decimal::from_i128_with_scale(mantissa, decimals)
}

/// 10^exponent as i128; exponents stay small (decimals of a price), so this cannot overflow.
pub fn pow10(exponent: u32) -> i128 {
    const POWERS: [i128; 31] = {
        let mut powers = [1i128; 31];
        let mut index = 1;
        while index < 31 {
            powers[index] = powers[index - 1] * 10;
            index += 1;
        }
        powers
    };
    assert!(
        exponent <= 30,
        "10^{exponent} is beyond any price's decimals"
    );
    POWERS[exponent as usize]
}

/// The mantissa of `value` at exactly `decimals` decimals, when it can be represented without loss.
pub fn mantissa_at(value: Decimal, decimals: u32) -> Option<i128> {
    let scale = value.scale();
    if scale > decimals {
        let factor = pow10(scale - decimals);
        let mantissa = value.mantissa();
        (mantissa % factor == 0).then(|| mantissa / factor)
    } else {
        Some(value.mantissa() * pow10(decimals - scale))
    }
}

/// Decimals of every amount the ledger stores (balances, entries, limits, thresholds), as i64
/// "ledger units". Costs are rounded to at most 8 decimals (`COST_DECIMALS_MAX`), so every cost
/// converts exactly, and i64 still holds ±92 billion currency units.
pub const LEDGER_DECIMALS: u32 = 8;

/// An amount in ledger units, when it has at most [`LEDGER_DECIMALS`] decimals and fits in i64.
pub fn ledger_units(value: Decimal) -> Option<i64> {
    mantissa_at(value, LEDGER_DECIMALS).and_then(|units| i64::try_from(units).ok())
}

/// Ledger units back to a decimal, with trailing zeros dropped (`150000000` is `1.5`).
pub fn ledger_decimal(units: i64) -> Decimal {
    Decimal::from_i128_with_scale(i128::from(units), LEDGER_DECIMALS).normalize()
}

/// A cost mantissa at a deck's `decimals` in ledger units (exact: `decimals` ≤ 8).
pub fn cost_in_ledger_units(cost_mantissa: i64, decimals: u32) -> i64 {
    let factor = pow10(LEDGER_DECIMALS - decimals.min(LEDGER_DECIMALS)) as i64;
    cost_mantissa
        .checked_mul(factor)
        .expect("costs are capped far below i64 at 8 decimals")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn check(value: &str, decimals: u32, mode: RoundingMode, expected: &str) {
        let rounded = round_decimal(Decimal::from_str(value).unwrap(), decimals, mode);
        assert_eq!(
            rounded.to_string(),
            expected,
            "{value} to {decimals} {mode:?}"
        );
    }

    #[test]
    fn rounding_modes() {
        use RoundingMode::*;
        check("0.12345", 4, HalfUp, "0.1235");
        check("0.12345", 4, HalfEven, "0.1234");
        check("0.12355", 4, HalfEven, "0.1236");
        check("0.12341", 4, Up, "0.1235");
        check("0.12349", 4, Down, "0.1234");
        check("0.1234", 4, Up, "0.1234");
        check("-0.12345", 4, HalfUp, "-0.1235");
        check("-0.12341", 4, Up, "-0.1235");
        check("-0.12349", 4, Down, "-0.1234");
        check("2.5", 0, HalfEven, "2");
        check("3.5", 0, HalfEven, "4");
        check("1.2", 4, HalfUp, "1.2000");
    }

    #[test]
    fn ratio_rounding_sees_exact_ties() {
        // 0.0001 * 5 / 10 = 0.00005 exactly: a tie at 4 decimals.
        assert_eq!(round_scaled_ratio(5, 4, 10, 4, RoundingMode::HalfUp), 1);
        assert_eq!(round_scaled_ratio(5, 4, 10, 4, RoundingMode::HalfEven), 0);
        // 1/3 at 4 decimals.
        assert_eq!(round_scaled_ratio(1, 0, 3, 4, RoundingMode::HalfUp), 3333);
        assert_eq!(round_scaled_ratio(1, 0, 3, 4, RoundingMode::Up), 3334);
    }

    #[test]
    fn mantissa_at_refuses_loss() {
        let value = Decimal::from_str("0.12345").unwrap();
        assert_eq!(mantissa_at(value, 6), Some(123450));
        assert_eq!(mantissa_at(value, 4), None);
    }
}

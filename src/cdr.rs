//! The call detail record as tollgate sees it once decoded, number normalisation, and reject reasons.

use std::borrow::Cow;
use std::fmt;

/// Which way a call went, from the account's point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    Outbound,
    Inbound,
}

impl Direction {
    pub fn parse(text: &str) -> Option<Direction> {
        let text = text.trim_ascii();
        if text.eq_ignore_ascii_case("outbound") || text.eq_ignore_ascii_case("out") {
            Some(Direction::Outbound)
        } else if text.eq_ignore_ascii_case("inbound") || text.eq_ignore_ascii_case("in") {
            Some(Direction::Inbound)
        } else {
            None
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Outbound => "outbound",
            Direction::Inbound => "inbound",
        }
    }
}

/// One decoded call leg, borrowing its text from the input it was decoded from.
/// Times are microseconds since the Unix epoch (UTC).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cdr<'a> {
    /// Which feed the CDR came from; with `cdr_id` it is the dedupe key.
    pub source: &'a str,
    pub cdr_id: &'a str,
    pub account: &'a str,
    pub direction: Direction,
    pub caller: Cow<'a, str>,
    /// The callee, normalised to E.164 digits (see [`normalize_number`]).
    pub callee: Cow<'a, str>,
    pub start_time_micros: i64,
    pub answer_time_micros: Option<i64>,
    pub end_time_micros: Option<i64>,
    pub billsec: u32,
    pub disposition: &'a str,
}

impl Cdr<'_> {
    /// The instant a call is priced at: its answer time if present, else its start time.
    pub fn pricing_time_micros(&self) -> i64 {
        self.answer_time_micros.unwrap_or(self.start_time_micros)
    }

    /// A call is answered when it has billable time and its disposition does not say otherwise.
    /// Unanswered and 0-second calls cost nothing, not even a connect fee.
    pub fn is_answered(&self) -> bool {
        self.billsec > 0 && !is_unanswered_disposition(self.disposition)
    }
}

/// Dispositions the canonical format knows: answered, and the ways a call can fail to connect.
/// Anything else is refused rather than guessed at.
pub fn is_known_disposition(disposition: &str) -> bool {
    let disposition = disposition.trim_ascii();
    disposition == "ANSWERED"
        || disposition.eq_ignore_ascii_case("ANSWERED")
        || is_unanswered_disposition(disposition)
}

/// Dispositions that mean the call never connected, whatever billsec says.
pub fn is_unanswered_disposition(disposition: &str) -> bool {
    const UNANSWERED: [&str; 8] = [
        "NO ANSWER",
        "NOANSWER",
        "NO_ANSWER",
        "BUSY",
        "FAILED",
        "CANCEL",
        "CONGESTION",
        "CHANUNAVAIL",
    ];
    let disposition = disposition.trim();
    UNANSWERED
        .iter()
        .any(|unanswered| disposition.eq_ignore_ascii_case(unanswered))
}

/// Numbers longer than this are not telephone numbers (E.164 allows 15 digits; carriers add
/// routing prefixes, so a little room is left).
pub const NUMBER_DIGITS_MAX: usize = 20;

/// Normalises a telephone number to the digits that rate-deck prefixes are written in.
///
/// The rule, applied in order: remove `+`, spaces, dashes, dots and parentheses; then strip one
/// international call prefix, `011` (North America) or `00` (most of the world). What remains must be
/// 1 to [`NUMBER_DIGITS_MAX`] digits. National formats (a 10-digit US number without its `1`) are not
/// guessed at: feeds must send international numbers.
pub fn normalize_number(raw: &str) -> Result<Cow<'_, str>, NumberProblem> {
    let bytes = raw.as_bytes();
    let is_plain = !bytes.is_empty()
        && bytes.iter().all(u8::is_ascii_digit)
        && bytes[0] != b'0'
        && bytes.len() <= NUMBER_DIGITS_MAX;
    if is_plain {
        return Ok(Cow::Borrowed(raw));
    }
    let mut digits = String::with_capacity(raw.len());
    for character in raw.chars() {
        match character {
            '0'..='9' => digits.push(character),
            '+' | ' ' | '-' | '.' | '(' | ')' => {}
            _ => return Err(NumberProblem::NotDigits),
        }
    }
    let without_international_prefix = if let Some(rest) = digits.strip_prefix("011") {
        rest
    } else if let Some(rest) = digits.strip_prefix("00") {
        rest
    } else {
        digits.as_str()
    };
    if without_international_prefix.is_empty() {
        return Err(if digits.is_empty() {
            NumberProblem::Empty
        } else {
            NumberProblem::NotDigits
        });
    }
    if without_international_prefix.len() > NUMBER_DIGITS_MAX {
        return Err(NumberProblem::TooLong);
    }
    Ok(Cow::Owned(without_international_prefix.to_string()))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NumberProblem {
    Empty,
    NotDigits,
    TooLong,
}

/// True for an identifier (source, cdr_id, account) a store can keep and index: not empty, at most
/// [`crate::limits::IDENTIFIER_BYTES_MAX`] bytes, no control characters.
pub fn is_plausible_identifier(text: &str) -> bool {
    let printable_ascii = |byte: &u8| (0x20..0x7f).contains(byte);
    !text.is_empty()
        && text.len() <= crate::limits::IDENTIFIER_BYTES_MAX
        && (text.as_bytes().iter().all(printable_ascii) || !text.chars().any(char::is_control))
}

/// Why a CDR was not rated. The names are stable: they appear in rejects files, summaries and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    InvalidUtf8,
    WrongColumnCount,
    MissingCdrId,
    MissingAccount,
    /// A source, cdr_id or account with control characters or longer than
    /// [`crate::limits::IDENTIFIER_BYTES_MAX`]: no feed's identifier looks like that, and stores
    /// could not index it.
    InvalidIdentifier,
    InvalidDirection,
    InvalidStartTime,
    InvalidAnswerTime,
    InvalidEndTime,
    InvalidBillsec,
    NegativeBillsec,
    EndBeforeStart,
    AnswerBeforeStart,
    InvalidDisposition,
    EmptyCallee,
    InvalidCallee,
    /// A caller that is not a number and holds control characters or is implausibly long.
    InvalidCaller,
    UnknownAccount,
    NoDeckForAccount,
    CurrencyMismatch,
    NoRateForDestination,
    /// A CGRateS plan has no rating profile (nor a `*any` one) for the CDR's subject active at
    /// the call's start.
    NoRatingProfile,
    /// The CGRateS rate that would price the call is not one for calls: its units are not whole
    /// seconds (a data or SMS rate), or its increment is 0.
    RateNotForCalls,
    /// A switch document that is not a JSON object (a KAZOO line or array element).
    InvalidJson,
    /// A record that repeats a call another record of the same feed bills: a KAZOO leg the
    /// switch placed (the call is billed on the leg that entered it), a CGRateS charging run
    /// other than `*default`.
    SecondaryRecord,
    /// A record of something other than a voice call (a CGRateS `*sms` or `*data` record): it
    /// has no duration to price per minute.
    NotAVoiceCall,
}

impl RejectReason {
    pub const ALL: [RejectReason; 26] = [
        RejectReason::InvalidUtf8,
        RejectReason::WrongColumnCount,
        RejectReason::MissingCdrId,
        RejectReason::MissingAccount,
        RejectReason::InvalidIdentifier,
        RejectReason::InvalidDirection,
        RejectReason::InvalidStartTime,
        RejectReason::InvalidAnswerTime,
        RejectReason::InvalidEndTime,
        RejectReason::InvalidBillsec,
        RejectReason::NegativeBillsec,
        RejectReason::EndBeforeStart,
        RejectReason::AnswerBeforeStart,
        RejectReason::InvalidDisposition,
        RejectReason::EmptyCallee,
        RejectReason::InvalidCallee,
        RejectReason::InvalidCaller,
        RejectReason::UnknownAccount,
        RejectReason::NoDeckForAccount,
        RejectReason::CurrencyMismatch,
        RejectReason::NoRateForDestination,
        RejectReason::NoRatingProfile,
        RejectReason::RateNotForCalls,
        RejectReason::InvalidJson,
        RejectReason::SecondaryRecord,
        RejectReason::NotAVoiceCall,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::InvalidUtf8 => "invalid_utf8",
            RejectReason::WrongColumnCount => "wrong_column_count",
            RejectReason::MissingCdrId => "missing_cdr_id",
            RejectReason::MissingAccount => "missing_account",
            RejectReason::InvalidIdentifier => "invalid_identifier",
            RejectReason::InvalidDirection => "invalid_direction",
            RejectReason::InvalidStartTime => "invalid_start_time",
            RejectReason::InvalidAnswerTime => "invalid_answer_time",
            RejectReason::InvalidEndTime => "invalid_end_time",
            RejectReason::InvalidBillsec => "invalid_billsec",
            RejectReason::NegativeBillsec => "negative_billsec",
            RejectReason::EndBeforeStart => "end_before_start",
            RejectReason::AnswerBeforeStart => "answer_before_start",
            RejectReason::InvalidDisposition => "invalid_disposition",
            RejectReason::EmptyCallee => "empty_callee",
            RejectReason::InvalidCallee => "invalid_callee",
            RejectReason::UnknownAccount => "unknown_account",
            RejectReason::NoDeckForAccount => "no_deck_for_account",
            RejectReason::CurrencyMismatch => "currency_mismatch",
            RejectReason::NoRateForDestination => "no_rate_for_destination",
            RejectReason::InvalidCaller => "invalid_caller",
            RejectReason::NoRatingProfile => "no_rating_profile",
            RejectReason::RateNotForCalls => "rate_not_for_calls",
            RejectReason::InvalidJson => "invalid_json",
            RejectReason::SecondaryRecord => "secondary_record",
            RejectReason::NotAVoiceCall => "not_a_voice_call",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(raw: &str, expected: Result<&str, NumberProblem>) {
        let normalised = normalize_number(raw);
        assert_eq!(
            normalised.as_deref().map_err(|problem| *problem),
            expected,
            "{raw:?}"
        );
    }

    #[test]
    fn number_normalisation() {
        check("442071234567", Ok("442071234567"));
        check("+44 20 7123-4567", Ok("442071234567"));
        check("00442071234567", Ok("442071234567"));
        check("011442071234567", Ok("442071234567"));
        check("+1 (212) 555.0100", Ok("12125550100"));
        check("", Err(NumberProblem::Empty));
        check("+", Err(NumberProblem::Empty));
        check("00", Err(NumberProblem::NotDigits));
        check("abc", Err(NumberProblem::NotDigits));
        check("12ab", Err(NumberProblem::NotDigits));
        check("123456789012345678901", Err(NumberProblem::TooLong));
    }

    #[test]
    fn reject_reason_names_are_distinct_snake_case() {
        let names: std::collections::BTreeSet<&str> = RejectReason::ALL
            .iter()
            .map(|reason| reason.as_str())
            .collect();
        assert_eq!(names.len(), RejectReason::ALL.len());
        for name in &names {
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{name}"
            );
        }
        for switch_reason in ["invalid_json", "secondary_record", "not_a_voice_call"] {
            assert!(names.contains(switch_reason), "{switch_reason}");
        }
    }

    #[test]
    fn unanswered_dispositions() {
        assert!(is_unanswered_disposition("NO ANSWER"));
        assert!(is_unanswered_disposition("busy"));
        assert!(!is_unanswered_disposition("ANSWERED"));
        assert!(!is_unanswered_disposition(""));
    }
}

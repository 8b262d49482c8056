//! The portal's query parameters, each checked by name: a bad one is a 400 that names it.

use crate::ingest::timestamp::parse_time_bound_micros;
use crate::store::ledger_store::CallCursor;
use chrono_tz::Tz;
use std::collections::HashMap;

/// A request's query parameters; any name not read is refused by [`QueryParams::finish`].
pub struct QueryParams {
    values: HashMap<String, String>,
    known: Vec<&'static str>,
}

impl QueryParams {
    pub fn new(values: HashMap<String, String>) -> QueryParams {
        QueryParams {
            values,
            known: Vec::new(),
        }
    }

    pub fn text(&mut self, name: &'static str) -> Option<&str> {
        self.known.push(name);
        self.values.get(name).map(String::as_str)
    }

    /// An IANA time zone, else `default`.
    pub fn time_zone(&mut self, name: &'static str, default: Tz) -> Result<Tz, String> {
        match self.text(name) {
            None => Ok(default),
            Some(text) => text.parse::<Tz>().map_err(|_| {
                format!("{name}: {text:?} is not an IANA time zone such as Europe/Paris")
            }),
        }
    }

    /// A date (its midnight in `time_zone`) or a time (RFC 3339, or local in `time_zone`).
    pub fn time_bound(&mut self, name: &'static str, time_zone: Tz) -> Result<Option<i64>, String> {
        match self.text(name) {
            None => Ok(None),
            Some(text) => parse_time_bound_micros(text, time_zone)
                .map(Some)
                .ok_or_else(|| {
                    format!("{name}: {text:?} is not a date (YYYY-MM-DD) or a time (RFC 3339)")
                }),
        }
    }

    /// `tz` (default: the account's zone, `account_zone`) and the `from` and `to` bounds read in
    /// it.
    pub fn zone_and_range(
        &mut self,
        account_zone: &str,
    ) -> Result<(Tz, Option<i64>, Option<i64>), String> {
        let time_zone = self.time_zone("tz", account_zone.parse().unwrap_or(chrono_tz::UTC))?;
        let from = self.time_bound("from", time_zone)?;
        let to = self.time_bound("to", time_zone)?;
        Ok((time_zone, from, to))
    }

    pub fn boolean(&mut self, name: &'static str) -> Result<bool, String> {
        match self.text(name) {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(text) => Err(format!("{name}: {text:?} is not true or false")),
        }
    }

    /// A whole number in `1..=max`, else `default`.
    pub fn limit(
        &mut self,
        name: &'static str,
        default: usize,
        max: usize,
    ) -> Result<usize, String> {
        match self.text(name) {
            None => Ok(default),
            Some(text) => text
                .parse::<usize>()
                .ok()
                .filter(|limit| (1..=max).contains(limit))
                .ok_or_else(|| format!("{name}: {text:?} is not a whole number from 1 to {max}")),
        }
    }

    pub fn one_of(
        &mut self,
        name: &'static str,
        allowed: &[&str],
    ) -> Result<Option<String>, String> {
        match self.text(name) {
            None => Ok(None),
            Some(text) if allowed.contains(&text) => Ok(Some(text.to_string())),
            Some(text) => Err(format!(
                "{name}: {text:?} is not one of {}",
                allowed.join(", ")
            )),
        }
    }

    pub fn cursor(&mut self, name: &'static str) -> Result<Option<CallCursor>, String> {
        self.opaque(name, decode_cursor)
    }

    /// A rejects listing's cursor: the last reject's (batch, line).
    pub fn reject_cursor(&mut self, name: &'static str) -> Result<Option<(i64, i64)>, String> {
        self.opaque(name, decode_opaque)
    }

    fn opaque<T>(
        &mut self,
        name: &'static str,
        decode: impl Fn(&str) -> Option<T>,
    ) -> Result<Option<T>, String> {
        match self.text(name) {
            None => Ok(None),
            Some(text) => decode(text)
                .map(Some)
                .ok_or_else(|| format!("{name}: {text:?} is not a cursor this API gave out")),
        }
    }

    /// Refuses parameters the route does not know (a misspelt filter must not be ignored).
    pub fn finish(self) -> Result<(), String> {
        let mut unknown: Vec<&String> = self
            .values
            .keys()
            .filter(|name| !self.known.contains(&name.as_str()))
            .collect();
        unknown.sort();
        match unknown.first() {
            None => Ok(()),
            Some(name) => Err(format!(
                "{name}: unknown parameter (known: {})",
                self.known.join(", ")
            )),
        }
    }
}

/// A cursor as handed to clients: the last call's start, source and id, as hex of JSON (opaque,
/// URL-safe).
pub fn encode_cursor(cursor: &CallCursor) -> String {
    encode_opaque(&(cursor.start_time_micros, &cursor.source, &cursor.cdr_id))
}

/// The cursor of the page after `page`: its last item's, when the page is full (a page shorter
/// than `limit` is the last).
pub fn next_cursor<T>(
    page: &[T],
    limit: usize,
    cursor_of: impl Fn(&T) -> String,
) -> Option<String> {
    page.last().filter(|_| page.len() == limit).map(cursor_of)
}

/// Any cursor as handed to clients: hex of its JSON.
pub fn encode_opaque(value: &impl serde::Serialize) -> String {
    let json = serde_json::to_string(value).expect("a cursor serialises");
    json.bytes().map(|byte| format!("{byte:02x}")).collect()
}

fn decode_opaque<T: serde::de::DeserializeOwned>(text: &str) -> Option<T> {
    if !text.len().is_multiple_of(2) || text.len() > 4096 {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..text.len())
        .step_by(2)
        .map(|index| u8::from_str_radix(text.get(index..index + 2)?, 16).ok())
        .collect();
    serde_json::from_slice(&bytes?).ok()
}

fn decode_cursor(text: &str) -> Option<CallCursor> {
    let (start_time_micros, source, cdr_id): (i64, String, String) = decode_opaque(text)?;
    // Identifiers never hold control characters (and PostgreSQL text cannot hold NUL).
    if [&source, &cdr_id]
        .iter()
        .any(|text| text.chars().any(char::is_control))
    {
        return None;
    }
    Some(CallCursor {
        start_time_micros,
        source,
        cdr_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let cursor = CallCursor {
            start_time_micros: 1_763_600_000_000_000,
            source: "switch-a".into(),
            cdr_id: "id,with\"odd chars".into(),
        };
        assert_eq!(decode_cursor(&encode_cursor(&cursor)), Some(cursor));
        let with_nul = encode_cursor(&CallCursor {
            start_time_micros: 1,
            source: "a\u{0}".into(),
            cdr_id: "b".into(),
        });
        for garbage in ["", "zz", "abc", "5b5d", "5b312c322c335d", &with_nul] {
            assert_eq!(decode_cursor(garbage), None, "{garbage}");
        }
    }
}

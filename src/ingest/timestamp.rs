//! Reading CDR times: RFC 3339, or `YYYY-MM-DD HH:MM:SS` in a named time zone, to epoch microseconds.
//!
//! Switch CDR files carry millions of timestamps, so the common shapes are read by hand (a few
//! nanoseconds each) and anything else falls back to chrono.

use chrono::{NaiveDate, TimeZone};
use chrono_tz::Tz;

/// Parses `text` as an instant. Times without an offset are read in `naive_time_zone`; a local
/// time that occurs twice (DST ends) is the earlier instant, one that does not exist (DST starts)
/// is refused.
pub fn parse_timestamp_micros(text: &str, naive_time_zone: Tz) -> Option<i64> {
    if let Some(micros) = parse_utc_seconds_form(text.as_bytes()) {
        return Some(micros);
    }
    let bytes = text.trim_ascii().as_bytes();
    if bytes.len() < 19 {
        return None;
    }
    let year = digits(&bytes[0..4])? as i32;
    let month = digits(&bytes[5..7])?;
    let day = digits(&bytes[8..10])?;
    let hour = digits(&bytes[11..13])?;
    let minute = digits(&bytes[14..16])?;
    let second = digits(&bytes[17..19])?;
    let separators_ok = bytes[4] == b'-'
        && bytes[7] == b'-'
        && matches!(bytes[10], b'T' | b't' | b' ')
        && bytes[13] == b':'
        && bytes[16] == b':';
    if !separators_ok || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut rest = &bytes[19..];
    let mut fraction_micros = 0i64;
    if let [b'.' | b',', tail @ ..] = rest {
        let n_digits = tail.iter().take_while(|byte| byte.is_ascii_digit()).count();
        if n_digits == 0 {
            return None;
        }
        for (position, byte) in tail[..n_digits].iter().take(6).enumerate() {
            fraction_micros += i64::from(byte - b'0') * 10i64.pow(5 - position as u32);
        }
        rest = &tail[n_digits..];
    }
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    let local_seconds = days_from_civil(year, month, day) * 86_400
        + i64::from(hour) * 3600
        + i64::from(minute) * 60
        + i64::from(second);
    let utc_seconds = match rest {
        [] => {
            if naive_time_zone == chrono_tz::UTC {
                local_seconds
            } else {
                let naive =
                    NaiveDate::from_ymd_opt(year, month, day)?.and_hms_opt(hour, minute, second)?;
                naive_time_zone
                    .from_local_datetime(&naive)
                    .earliest()?
                    .timestamp()
            }
        }
        [b'Z' | b'z'] => local_seconds,
        [sign @ (b'+' | b'-'), offset @ ..] => {
            let (offset_hours, offset_minutes) = match offset {
                [h1, h2] => (digits(&[*h1, *h2])?, 0),
                [h1, h2, b':', m1, m2] | [h1, h2, m1, m2] => {
                    (digits(&[*h1, *h2])?, digits(&[*m1, *m2])?)
                }
                _ => return None,
            };
            if offset_hours > 23 || offset_minutes > 59 {
                return None;
            }
            let offset_seconds = i64::from(offset_hours * 3600 + offset_minutes * 60);
            if *sign == b'+' {
                local_seconds - offset_seconds
            } else {
                local_seconds + offset_seconds
            }
        }
        _ => return None,
    };
    Some(utc_seconds * 1_000_000 + fraction_micros)
}

std::thread_local! {
    /// The last `YYYY-MM-DD` read by [`parse_utc_seconds_form`] on this thread, and its day
    /// number: a file's calls mostly share a few dates, so most timestamps skip the calendar.
    static LAST_DATE: std::cell::Cell<([u8; 10], i64)> = const { std::cell::Cell::new((*b"1970-01-01", 0)) };
}

/// The form nearly every CDR file uses, `YYYY-MM-DDTHH:MM:SSZ`, read without the general
/// parser's trimming and branching. `None` for anything else (the general parser decides).
fn parse_utc_seconds_form(bytes: &[u8]) -> Option<i64> {
    let [date @ .., b'T', h1, h2, b':', m1, m2, b':', s1, s2, b'Z'] = bytes else {
        return None;
    };
    let date: [u8; 10] = date.try_into().ok()?;
    let (cached_date, cached_days) = LAST_DATE.get();
    let days = if date == cached_date {
        cached_days
    } else {
        let [y1, y2, y3, y4, b'-', mo1, mo2, b'-', d1, d2] = date else {
            return None;
        };
        let year = digits(&[y1, y2, y3, y4])? as i32;
        let month = digits(&[mo1, mo2])?;
        let day = digits(&[d1, d2])?;
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return None;
        }
        let days = days_from_civil(year, month, day);
        LAST_DATE.set((date, days));
        days
    };
    let hour = digits(&[*h1, *h2])?;
    let minute = digits(&[*m1, *m2])?;
    let second = digits(&[*s1, *s2])?;
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let seconds =
        days * 86_400 + i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second);
    Some(seconds * 1_000_000)
}

fn digits(bytes: &[u8]) -> Option<u32> {
    bytes.iter().try_fold(0u32, |value, byte| {
        byte.is_ascii_digit()
            .then(|| value * 10 + u32::from(byte - b'0'))
    })
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i32, month: u32, day: u32) -> i64 {
    let year = i64::from(year) - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// The first instant of `date` in `time_zone` (a day that starts in a DST gap starts when the
/// clocks resume).
pub fn local_midnight_micros(date: NaiveDate, time_zone: Tz) -> i64 {
    let mut local = date.and_hms_opt(0, 0, 0).expect("midnight exists");
    for _ in 0..4 {
        if let Some(instant) = time_zone.from_local_datetime(&local).earliest() {
            return instant.timestamp_micros();
        }
        local += chrono::Duration::minutes(30);
    }
    time_zone
        .from_utc_datetime(&date.and_hms_opt(0, 0, 0).expect("midnight exists"))
        .timestamp_micros()
}

/// A bound of a time range as a user writes it: a date `YYYY-MM-DD` (its first instant in
/// `time_zone`) or a time (RFC 3339, or without an offset read in `time_zone`).
pub fn parse_time_bound_micros(text: &str, time_zone: Tz) -> Option<i64> {
    match NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d") {
        Ok(date) => Some(local_midnight_micros(date, time_zone)),
        Err(_) => parse_timestamp_micros(text, time_zone),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, time_zone: Tz, expected: Option<&str>) {
        let parsed = parse_timestamp_micros(text, time_zone);
        let expected = expected.map(|rfc3339| {
            chrono::DateTime::parse_from_rfc3339(rfc3339)
                .unwrap()
                .timestamp_micros()
        });
        assert_eq!(parsed, expected, "{text:?} in {time_zone}");
    }

    #[test]
    fn timestamps() {
        use chrono_tz::{America::New_York, UTC};
        check("2026-11-20T09:15:02Z", UTC, Some("2026-11-20T09:15:02Z"));
        check(
            "2026-11-20T09:15:02.250Z",
            UTC,
            Some("2026-11-20T09:15:02.25Z"),
        );
        check("2026-11-20 09:15:02", UTC, Some("2026-11-20T09:15:02Z"));
        check(
            "2026-11-20T09:15:02+01:00",
            UTC,
            Some("2026-11-20T08:15:02Z"),
        );
        check(
            "2026-11-20T09:15:02-0530",
            UTC,
            Some("2026-11-20T14:45:02Z"),
        );
        check(
            "2026-11-20 09:15:02",
            New_York,
            Some("2026-11-20T14:15:02Z"),
        );
        // DST ends in New York on 2026-11-01: 01:30 happens twice; the earlier is taken.
        check(
            "2026-11-01 01:30:00",
            New_York,
            Some("2026-11-01T05:30:00Z"),
        );
        // DST starts on 2026-03-08: 02:30 does not exist.
        check("2026-03-08 02:30:00", New_York, None);
        check("1969-12-31T23:59:59Z", UTC, Some("1969-12-31T23:59:59Z"));
        check("2026-02-30T00:00:00Z", UTC, None);
        check("2024-02-29T00:00:00Z", UTC, Some("2024-02-29T00:00:00Z"));
        check("2100-02-29T00:00:00Z", UTC, None);
        check("2000-02-29T12:00:00Z", UTC, Some("2000-02-29T12:00:00Z"));
        check("2026-13-01T00:00:00Z", UTC, None);
        check("0001-01-01T00:00:00Z", UTC, Some("0001-01-01T00:00:00Z"));
        check("2026-11-20T24:00:00Z", UTC, None);
        check("2026-11-20", UTC, None);
        check("yesterday at noon", UTC, None);
        check("2026-11-20T09:15:02Zjunk", UTC, None);
        check("2026-11-20T09:15:02.Z", UTC, None);
    }

    #[test]
    fn the_utc_seconds_form_reads_the_same_with_its_date_remembered_or_not() {
        use chrono_tz::UTC;
        let cases = [
            ("2026-11-20T09:15:02Z", Some("2026-11-20T09:15:02Z")),
            ("2026-11-20T23:59:59Z", Some("2026-11-20T23:59:59Z")),
            ("2026-11-20T09:61:02Z", None),
            ("2026-11-20T09:15:60Z", None),
            ("2026-11-2xT09:15:02Z", None),
            ("2026-11-21T00:00:00Z", Some("2026-11-21T00:00:00Z")),
            ("1970-01-01T00:00:00Z", Some("1970-01-01T00:00:00Z")),
            ("\0\0\0\0\0\0\0\0\0\0T00:00:00Z", None),
            ("2026-02-29T00:00:00Z", None),
            ("2026-11-20t09:15:02z", Some("2026-11-20T09:15:02Z")),
            (" 2026-11-20T09:15:02Z ", Some("2026-11-20T09:15:02Z")),
        ];
        // Twice through: the second pass reads every date with another one remembered.
        for _ in 0..2 {
            for (text, expected) in cases {
                check(text, UTC, expected);
            }
        }
    }
}

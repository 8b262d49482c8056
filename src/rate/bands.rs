//! Time-of-day bands ("peak = Mon–Fri 08:00–19:00"): which band an instant falls in, and when it
//! next changes, read in the deck's time zone.

use chrono::{Datelike, NaiveDate, NaiveTime, TimeZone, Timelike};
use chrono_tz::Tz;

/// Index of a band in its deck's [`BandSchedule`].
pub type BandId = u16;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BandWindow {
    /// Monday = 0 … Sunday = 6.
    pub days: [bool; 7],
    /// Seconds after local midnight; `to_second` may be 86,400 (end of day).
    pub from_second: u32,
    pub to_second: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Band {
    pub name: String,
    pub windows: Vec<BandWindow>,
}

/// A deck's bands. An instant belongs to the first band (in declaration order) with a window
/// containing it, or to no band.
#[derive(Clone, Debug, Default)]
pub struct BandSchedule {
    pub bands: Vec<Band>,
    /// Every window edge as seconds after midnight, sorted, with midnight itself: the only local
    /// times at which the band can change.
    edges_second: Vec<u32>,
}

impl BandSchedule {
    pub fn new(bands: Vec<Band>) -> BandSchedule {
        let mut edges_second: Vec<u32> = bands
            .iter()
            .flat_map(|band| band.windows.iter())
            .flat_map(|window| [window.from_second, window.to_second % 86_400])
            .chain([0])
            .collect();
        edges_second.sort_unstable();
        edges_second.dedup();
        BandSchedule {
            bands,
            edges_second,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.bands.is_empty()
    }

    pub fn band_id(&self, name: &str) -> Option<BandId> {
        self.bands
            .iter()
            .position(|band| band.name == name)
            .map(|position| position as BandId)
    }

    pub fn band_name(&self, band: BandId) -> &str {
        &self.bands[usize::from(band)].name
    }

    /// The band in force at `instant_micros`.
    pub fn band_at(&self, time_zone: Tz, instant_micros: i64) -> Option<BandId> {
        if self.bands.is_empty() {
            return None;
        }
        let local = time_zone.timestamp_micros(instant_micros).single()?;
        let weekday = local.weekday().num_days_from_monday() as usize;
        let second = local.num_seconds_from_midnight();
        self.band_at_local(weekday, second)
    }

    fn band_at_local(&self, weekday: usize, second: u32) -> Option<BandId> {
        self.bands
            .iter()
            .position(|band| {
                band.windows.iter().any(|window| {
                    window.days[weekday]
                        && window.from_second <= second
                        && second < window.to_second
                })
            })
            .map(|position| position as BandId)
    }

    /// The first instant after `instant_micros` and before `limit_micros` at which the band differs
    /// from the band at `instant_micros`.
    pub fn next_change(
        &self,
        time_zone: Tz,
        instant_micros: i64,
        limit_micros: i64,
    ) -> Option<i64> {
        if self.bands.is_empty() {
            return None;
        }
        let current = self.band_at(time_zone, instant_micros);
        let start_date = time_zone
            .timestamp_micros(instant_micros)
            .single()?
            .date_naive();
        // A call longer than eight days is not a call; stop looking there.
        for day_offset in 0..8 {
            let date: NaiveDate = start_date + chrono::Days::new(day_offset);
            for &edge_second in &self.edges_second {
                let time = NaiveTime::from_num_seconds_from_midnight_opt(edge_second, 0)?;
                // An edge that falls in a DST gap does not exist that day: the band changes at
                // whatever the next existing edge is.
                let Some(edge) = time_zone
                    .from_local_datetime(&date.and_time(time))
                    .earliest()
                else {
                    continue;
                };
                let edge_micros = edge.timestamp_micros();
                if edge_micros <= instant_micros {
                    continue;
                }
                if edge_micros >= limit_micros {
                    return None;
                }
                if self.band_at(time_zone, edge_micros) != current {
                    return Some(edge_micros);
                }
            }
        }
        None
    }
}

/// Parses a window such as `Mon-Fri 08:00-19:00`, `Sat,Sun 00:00-24:00` or `Mon 09:30-12:00`.
pub fn parse_band_window(text: &str) -> Result<BandWindow, String> {
    let mut parts = text.split_whitespace();
    let (Some(days_text), Some(times_text), None) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(format!("band window {text:?} is not \"DAYS HH:MM-HH:MM\""));
    };
    let mut days = [false; 7];
    for day_range in days_text.split(',') {
        let (first, last) = match day_range.split_once('-') {
            Some((first, last)) => (weekday_index(first)?, weekday_index(last)?),
            None => (weekday_index(day_range)?, weekday_index(day_range)?),
        };
        let mut day = first;
        loop {
            days[day] = true;
            if day == last {
                break;
            }
            day = (day + 1) % 7;
        }
    }
    let (from_text, to_text) = times_text
        .split_once('-')
        .ok_or_else(|| format!("band window times {times_text:?} are not HH:MM-HH:MM"))?;
    let from_second = parse_clock_time(from_text)?;
    let to_second = parse_clock_time(to_text)?;
    if to_second <= from_second {
        return Err(format!(
            "band window {text:?} ends before it starts (write a window over midnight as two windows)"
        ));
    }
    Ok(BandWindow {
        days,
        from_second,
        to_second,
    })
}

fn weekday_index(text: &str) -> Result<usize, String> {
    const NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let lower = text.trim().to_ascii_lowercase();
    NAMES
        .iter()
        .position(|name| lower.starts_with(name))
        .ok_or_else(|| format!("{text:?} is not a weekday (Mon … Sun)"))
}

fn parse_clock_time(text: &str) -> Result<u32, String> {
    let problem = || format!("{text:?} is not a time of day HH:MM (00:00 to 24:00)");
    let (hours, minutes) = text.trim().split_once(':').ok_or_else(problem)?;
    let hours: u32 = hours.parse().map_err(|_| problem())?;
    let minutes: u32 = minutes.parse().map_err(|_| problem())?;
    if minutes >= 60 || hours > 24 || (hours == 24 && minutes != 0) {
        return Err(problem());
    }
    Ok(hours * 3600 + minutes * 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peak_offpeak() -> BandSchedule {
        BandSchedule::new(vec![
            Band {
                name: "peak".into(),
                windows: vec![parse_band_window("Mon-Fri 08:00-19:00").unwrap()],
            },
            Band {
                name: "offpeak".into(),
                windows: vec![
                    parse_band_window("Mon-Fri 00:00-08:00").unwrap(),
                    parse_band_window("Mon-Fri 19:00-24:00").unwrap(),
                    parse_band_window("Sat-Sun 00:00-24:00").unwrap(),
                ],
            },
        ])
    }

    fn micros(text: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(text)
            .unwrap()
            .timestamp_micros()
    }

    #[test]
    fn band_of_an_instant() {
        let schedule = peak_offpeak();
        let utc = chrono_tz::UTC;
        // 2026-11-20 is a Friday.
        assert_eq!(
            schedule.band_at(utc, micros("2026-11-20T12:00:00Z")),
            Some(0)
        );
        assert_eq!(
            schedule.band_at(utc, micros("2026-11-20T19:00:00Z")),
            Some(1)
        );
        assert_eq!(
            schedule.band_at(utc, micros("2026-11-21T12:00:00Z")),
            Some(1)
        );
        let new_york = chrono_tz::America::New_York;
        // 12:30 UTC is 07:30 in New York: before peak.
        assert_eq!(
            schedule.band_at(new_york, micros("2026-11-20T12:30:00Z")),
            Some(1)
        );
    }

    #[test]
    fn next_change_finds_the_boundary() {
        let schedule = peak_offpeak();
        let utc = chrono_tz::UTC;
        let start = micros("2026-11-20T18:59:00Z");
        let limit = micros("2026-11-20T20:00:00Z");
        assert_eq!(
            schedule.next_change(utc, start, limit),
            Some(micros("2026-11-20T19:00:00Z"))
        );
        // Friday 19:00 to Monday 08:00 is one offpeak stretch: midnight is not a change.
        let evening = micros("2026-11-20T20:00:00Z");
        assert_eq!(
            schedule.next_change(utc, evening, micros("2026-11-24T00:00:00Z")),
            Some(micros("2026-11-23T08:00:00Z"))
        );
        assert_eq!(
            schedule.next_change(utc, start, micros("2026-11-20T18:59:30Z")),
            None
        );
    }

    #[test]
    fn window_parsing_errors_are_named() {
        assert!(parse_band_window("Mon-Fri 19:00-08:00").is_err());
        assert!(parse_band_window("Funday 08:00-09:00").is_err());
        assert!(parse_band_window("Mon 25:00-26:00").is_err());
        let window = parse_band_window("Sat,Sun 00:00-24:00").unwrap();
        assert_eq!(window.days, [false, false, false, false, false, true, true]);
        let wrapping = parse_band_window("Fri-Mon 00:00-01:00").unwrap();
        assert_eq!(wrapping.days, [true, false, false, false, true, true, true]);
    }
}

//! The progress line on stderr for long runs: CDRs so far, CDRs per second, and an ETA.

use crate::limits::PROGRESS_INTERVAL_MILLISECONDS;
use std::io::Write;
use std::time::{Duration, Instant};

pub struct Progress {
    enabled: bool,
    started: Instant,
    last_drawn: Instant,
    total_units: u64,
    drawn: bool,
}

impl Progress {
    /// `total_units` is what `done_units` counts up to (bytes of input), 0 when unknown.
    pub fn new(enabled: bool, total_units: u64) -> Progress {
        let now = Instant::now();
        Progress {
            enabled,
            started: now,
            last_drawn: now,
            total_units,
            drawn: false,
        }
    }

    pub fn update(&mut self, n_cdrs: u64, done_units: u64) {
        if !self.enabled
            || self.last_drawn.elapsed() < Duration::from_millis(PROGRESS_INTERVAL_MILLISECONDS)
        {
            return;
        }
        self.last_drawn = Instant::now();
        let elapsed = self.started.elapsed().as_secs_f64().max(1e-9);
        let mut line = format!("\r{n_cdrs} CDRs, {:.0} CDRs/s", n_cdrs as f64 / elapsed);
        if self.total_units > 0 && done_units > 0 {
            let fraction = (done_units as f64 / self.total_units as f64).min(1.0);
            let eta = elapsed * (1.0 - fraction) / fraction;
            line.push_str(&format!(
                ", {:.0}% done, ETA {eta:.0} s   ",
                fraction * 100.0
            ));
        }
        let _ = std::io::stderr().write_all(line.as_bytes());
        self.drawn = true;
    }

    pub fn finish(&mut self) {
        if self.drawn {
            let _ = std::io::stderr().write_all(b"\r\x1b[K");
        }
    }
}

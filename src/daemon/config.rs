//! `tollgate serve` settings: a TOML file (every key optional) overridden by command-line flags.
//! With no file at all the daemon runs on the embedded store under `./data`, spools from
//! `./spool`, rates with the decks in `./rate-decks` and listens on 127.0.0.1:8080.

use crate::limits;
use anyhow::{Context, bail};
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeConfig {
    /// Address of the HTTP server.
    pub listen: String,
    /// Folder of the embedded store (ignored with `database_url`).
    pub data_dir: PathBuf,
    /// `postgres://…` to use PostgreSQL instead of the embedded store.
    pub database_url: Option<String>,
    /// Files renamed into this folder are rated and posted, then moved to `done/` (or `failed/`).
    pub spool_dir: PathBuf,
    /// Rate decks (CSV in `deck_format`, with an optional TOML manifest beside each). When empty,
    /// every `.csv` in `deck_dir` is loaded.
    pub decks: Vec<PathBuf>,
    pub deck_dir: PathBuf,
    /// The format of every deck: native, kazoo, astpp or a2billing.
    pub deck_format: crate::ingest::deck_files::DeckFormat,
    /// Time zone of CDR times written without an offset.
    pub input_time_zone: String,
    /// Feed name for the dedupe key when a CDR has no `source`.
    pub default_source: String,
    pub batch_cdrs_max: usize,
    pub batch_wait_milliseconds: u64,
    pub request_bytes_max: usize,
    pub spool_poll_milliseconds: u64,
    pub store_attempts_max: u32,
    /// Attempts at delivering one alert to its webhook, the first included, before it is failed.
    pub webhook_attempts_max: u32,
    /// Wait after a failed delivery; doubled after each further failure (capped at an hour).
    pub webhook_retry_milliseconds: u64,
    /// An authorized call neither kept alive nor ended for this long is released.
    pub call_ttl_seconds: u32,
    /// How long an ended call's reserved money waits for its CDR before it is released anyway.
    pub call_settle_seconds: u32,
    /// The longest call an authorization allows, however much money there is.
    pub call_max_duration_seconds: u32,
    /// How long an unauthorized CDR of an account with limits waits (from its call's start) before
    /// the trunk sweep gives it its billing class and charges it.
    pub trunk_settle_seconds: u32,
    /// NANP area codes whose numbers never use a trunk (toll-free and non-US/Canada by default).
    pub trunk_excluded_npas: Vec<u16>,
    /// Portal requests per second each bearer token may make, and the burst it may save up; past
    /// them a request is answered 429 with `Retry-After`.
    pub portal_requests_per_second: u32,
    pub portal_request_burst: u32,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            listen: "127.0.0.1:8080".to_string(),
            data_dir: PathBuf::from("data"),
            database_url: None,
            spool_dir: PathBuf::from("spool"),
            decks: Vec::new(),
            deck_dir: PathBuf::from("rate-decks"),
            deck_format: crate::ingest::deck_files::DeckFormat::Native,
            input_time_zone: "UTC".to_string(),
            default_source: "default".to_string(),
            batch_cdrs_max: limits::BATCH_CDRS_MAX,
            batch_wait_milliseconds: limits::BATCH_WAIT_MILLISECONDS,
            request_bytes_max: limits::REQUEST_BYTES_MAX,
            spool_poll_milliseconds: limits::SPOOL_POLL_MILLISECONDS,
            store_attempts_max: limits::STORE_ATTEMPTS_MAX,
            webhook_attempts_max: limits::WEBHOOK_ATTEMPTS_MAX,
            webhook_retry_milliseconds: limits::WEBHOOK_RETRY_MILLISECONDS,
            call_ttl_seconds: limits::CALL_TTL_SECONDS,
            call_settle_seconds: limits::CALL_SETTLE_SECONDS,
            call_max_duration_seconds: limits::CALL_MAX_DURATION_SECONDS,
            trunk_settle_seconds: limits::TRUNK_SETTLE_SECONDS,
            trunk_excluded_npas: crate::credit::trunks::TrunkEligibility::default().excluded_npas,
            portal_requests_per_second: limits::PORTAL_REQUESTS_PER_SECOND,
            portal_request_burst: limits::PORTAL_REQUEST_BURST,
        }
    }
}

impl ServeConfig {
    /// Reads a config file; a missing file named explicitly, an unknown key or a bad value is an
    /// error naming the file.
    pub fn from_file(path: &Path) -> anyhow::Result<ServeConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the config file {}", path.display()))?;
        let config: ServeConfig = toml::from_str(&text).map_err(|error| {
            anyhow::anyhow!("config file {}: {}", path.display(), error.message())
        })?;
        config.check()?;
        Ok(config)
    }

    pub fn check(&self) -> anyhow::Result<()> {
        if self.batch_cdrs_max == 0 {
            bail!("batch_cdrs_max must be at least 1");
        }
        if self.store_attempts_max == 0 {
            bail!("store_attempts_max must be at least 1");
        }
        if self.webhook_attempts_max == 0 {
            bail!("webhook_attempts_max must be at least 1");
        }
        if self.call_ttl_seconds == 0 || self.call_max_duration_seconds == 0 {
            bail!("call_ttl_seconds and call_max_duration_seconds must be at least 1");
        }
        if self.portal_requests_per_second == 0 || self.portal_request_burst == 0 {
            bail!("portal_requests_per_second and portal_request_burst must be at least 1");
        }
        if let Some(npa) = self
            .trunk_excluded_npas
            .iter()
            .find(|npa| !(200..=999).contains(*npa))
        {
            bail!("trunk_excluded_npas: {npa} is not a NANP area code (200 to 999)");
        }
        if self.input_time_zone.parse::<chrono_tz::Tz>().is_err() {
            bail!(
                "input_time_zone {:?} is not an IANA time zone",
                self.input_time_zone
            );
        }
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            bail!(
                "listen {:?} is not an address such as 127.0.0.1:8080",
                self.listen
            );
        }
        Ok(())
    }

    /// Which calls may use trunks.
    pub fn trunk_eligibility(&self) -> crate::credit::trunks::TrunkEligibility {
        let mut excluded_npas = self.trunk_excluded_npas.clone();
        excluded_npas.sort_unstable();
        excluded_npas.dedup();
        crate::credit::trunks::TrunkEligibility { excluded_npas }
    }

    /// The deck files to load: `decks`, or every `.csv` in `deck_dir`.
    pub fn deck_paths(&self) -> anyhow::Result<Vec<PathBuf>> {
        if !self.decks.is_empty() {
            return Ok(self.decks.clone());
        }
        let entries = std::fs::read_dir(&self.deck_dir).with_context(|| {
            format!(
                "no decks configured and the deck folder {} cannot be read",
                self.deck_dir.display()
            )
        })?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| path.extension().is_some_and(|extension| extension == "csv"))
            .collect();
        paths.sort();
        if paths.is_empty() {
            bail!(
                "no decks: the deck folder {} has no .csv deck",
                self.deck_dir.display()
            );
        }
        Ok(paths)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_states_the_defaults() {
        let example: ServeConfig =
            toml::from_str(include_str!("../../tollgate.example.toml")).unwrap();
        assert_eq!(example, ServeConfig::default());
        example.check().unwrap();
    }
}

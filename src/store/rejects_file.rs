//! The rejects file: `file,line,reason,raw_record` for every record that could not be parsed or
//! rated, so nothing is lost silently.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

pub struct RejectsFile {
    writer: csv::Writer<BufWriter<File>>,
}

impl RejectsFile {
    pub fn create(path: &Path) -> anyhow::Result<RejectsFile> {
        let file = File::create(path)
            .map_err(|error| anyhow::anyhow!("cannot create {}: {error}", path.display()))?;
        let mut writer = csv::Writer::from_writer(BufWriter::new(file));
        writer.write_record(["file", "line", "reason", "raw_record"])?;
        Ok(RejectsFile { writer })
    }

    /// Writes one reject. The raw record is kept byte for byte when it is UTF-8, and with
    /// replacement characters otherwise (the reason then says `invalid_utf8`).
    pub fn write(&mut self, file: &str, line: u64, reason: &str, raw: &[u8]) -> anyhow::Result<()> {
        let raw = String::from_utf8_lossy(raw);
        self.writer
            .write_record([file, &line.to_string(), reason, &raw])?;
        Ok(())
    }

    pub fn finish(self) -> anyhow::Result<()> {
        let mut inner = self
            .writer
            .into_inner()
            .map_err(|error| anyhow::anyhow!("cannot write the rejects file: {error}"))?;
        inner.flush()?;
        inner.get_ref().sync_all()?;
        Ok(())
    }
}

//! The pcapng capture as a sink: every event that carries packet bytes,
//! with the kernel's verdict in the packet comment (see [`crate::pcapng`]).

use std::{
    fs::File,
    io::BufWriter,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};

use crate::{
    event::Event,
    pcapng::{self, PcapngWriter},
    record::writer::create_private,
    sink::{Sink, SummaryStep},
};

pub struct Pcap {
    writer: PcapngWriter<BufWriter<File>>,
    path: PathBuf,
    /// Say on stderr how many packets were written, at the end.
    report: bool,
}

impl Pcap {
    pub fn create(path: &Path, report: bool) -> Result<Self> {
        let file = create_private(path)?;
        let writer = PcapngWriter::new(BufWriter::new(file))
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(Self {
            writer,
            path: path.to_owned(),
            report,
        })
    }
}

impl Sink for Pcap {
    fn event(&mut self, ev: &Event, boot_offset_ns: i64) -> Result<()> {
        if let Some((bytes, comment)) = pcapng::packet(ev) {
            let unix_ns = (ev.ts_ns as i64).saturating_add(boot_offset_ns);
            self.writer
                .write_packet(unix_ns, bytes, &comment)
                .context("writing the pcapng file")?;
        }
        Ok(())
    }

    fn summary(&mut self, _: &mut SummaryStep<'_>) -> Result<()> {
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.writer.flush().context("writing the pcapng file")
    }

    fn finish(&mut self) -> Result<()> {
        self.flush()?;
        if self.report {
            eprintln!(
                "tcptrace: wrote {} packets to {}",
                self.writer.packets(),
                self.path.display()
            );
        }
        Ok(())
    }
}

//! The sinks every decoded event goes through, shared by the live run and by
//! replay so both print exactly the same: the summary state, the text or JSON
//! lines, and an optional pcapng capture.

use std::{
    fs::File,
    io::{BufWriter, Write},
    path::Path,
};

use anyhow::{Context as _, Result};

use crate::{
    diagnose::session::Session,
    event::{DecodeError, Event},
    output::{human, json},
    pcapng::{self, PcapngWriter},
    record::writer::create_private,
    summary::{KernelCounters, Summary},
};

pub struct Printer<W: Write> {
    out: W,
    /// None: JSON Lines.
    human: Option<human::Human>,
    pub summary: Summary,
    boot_offset_ns: i64,
    /// Print events and periodic summaries (the final summary always prints).
    show_events: bool,
    pcap: Option<PcapngWriter<BufWriter<File>>>,
    /// The findings engine: fed every event, consulted at every summary.
    diag: Option<Session>,
}

impl<W: Write> Printer<W> {
    pub fn new(out: W, json: bool, boot_offset_ns: i64, show_events: bool) -> Self {
        Self {
            out,
            human: (!json).then(human::Human::new),
            summary: Summary::default(),
            boot_offset_ns,
            show_events,
            pcap: None,
            diag: None,
        }
    }

    /// Diagnoses as it goes: findings join every summary (and, for
    /// `tcptrace diagnose`, replace the rest of the output).
    pub fn with_diagnosis(mut self, diag: Session) -> Self {
        self.show_events &= diag.show_events();
        self.diag = Some(diag);
        self
    }

    /// Tells the diagnosis which hooks attached (live, or in a recording).
    pub fn set_hook_set(&mut self, hooks: crate::diagnose::hookset::HookSet) {
        if let Some(d) = &mut self.diag {
            d.set_hooks(hooks);
        }
    }

    /// Also writes every event that carries packet bytes to a pcapng file.
    pub fn with_pcap(mut self, path: Option<&Path>) -> Result<Self> {
        if let Some(path) = path {
            let file = create_private(path)?;
            self.pcap = Some(
                PcapngWriter::new(BufWriter::new(file))
                    .with_context(|| format!("writing {}", path.display()))?,
            );
        }
        Ok(self)
    }

    pub fn set_boot_offset(&mut self, boot_offset_ns: i64) {
        self.boot_offset_ns = boot_offset_ns;
    }

    /// The column header of the text view.
    pub fn begin(&mut self) -> Result<()> {
        if self.human.is_some() && self.show_events {
            writeln!(self.out, "{}", human::HEADER)?;
        }
        self.out.flush()?;
        Ok(())
    }

    /// One decoded event into the summary, the output and the capture.
    pub fn event(&mut self, ev: &Event) -> Result<()> {
        self.summary.observe(ev);
        let json_needed = self.show_events && self.human.is_none();
        let v = json_needed.then(|| json::event(ev, self.boot_offset_ns));
        if let Some(diag) = &mut self.diag {
            match &v {
                Some(v) => diag.observe(v),
                None => diag.observe_event(ev, self.boot_offset_ns),
            }
        }
        if self.show_events {
            match (&self.human, &v) {
                (Some(h), _) => writeln!(self.out, "{}", h.line(ev, self.boot_offset_ns))?,
                (None, Some(v)) => writeln!(self.out, "{v}")?,
                (None, None) => writeln!(self.out, "{}", json::event(ev, self.boot_offset_ns))?,
            }
        }
        if let Some(pcap) = &mut self.pcap {
            if let Some((bytes, comment)) = pcapng::packet(ev) {
                let unix_ns = (ev.ts_ns as i64).saturating_add(self.boot_offset_ns);
                pcap.write_packet(unix_ns, bytes, &comment)
                    .context("writing the pcapng file")?;
            }
        }
        Ok(())
    }

    pub fn undecodable(&mut self, e: &DecodeError) {
        self.summary.decode_errors += 1;
        log::warn!("{e}");
    }

    /// A periodic (`final_` false) or the final summary.
    pub fn summary(&mut self, k: &KernelCounters, final_: bool) -> Result<()> {
        let title = if final_ { "final summary" } else { "summary" };
        if let Some(diag) = &mut self.diag {
            if final_ || self.show_events || !diag.show_events() {
                let summary = &self.summary;
                diag.summary(
                    &mut self.out,
                    summary.to_json(k, final_),
                    || summary.render_text(k, title),
                    self.human.is_none(),
                    final_,
                )?;
            }
            return self.flush();
        }
        if !final_ && !self.show_events {
            return Ok(());
        }
        if self.human.is_none() {
            writeln!(self.out, "{}", self.summary.to_json(k, final_))?;
        } else {
            write!(self.out, "{}", self.summary.render_text(k, title))?;
        }
        self.flush()
    }

    /// The findings of the last summary (none without diagnosis).
    pub fn findings(&self) -> &[crate::diagnose::Finding] {
        self.diag.as_ref().map_or(&[], Session::findings)
    }

    /// The host view behind the findings of the last summary (live), for
    /// the recording.
    pub fn take_host_view(&mut self) -> Option<String> {
        self.diag.as_mut().and_then(Session::take_host_view)
    }

    /// Replay: the host view the live run recorded at this summary.
    pub fn set_recorded_host_view(&mut self, json: Option<&str>) {
        if let Some(diag) = &mut self.diag {
            diag.set_recorded_host_view(json);
        }
    }

    pub fn flush(&mut self) -> Result<()> {
        self.out.flush()?;
        if let Some(pcap) = &mut self.pcap {
            pcap.flush().context("writing the pcapng file")?;
        }
        Ok(())
    }

    pub fn packets(&self) -> Option<u64> {
        self.pcap.as_ref().map(PcapngWriter::packets)
    }
}

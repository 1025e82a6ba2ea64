//! The file header: signature, format version and the run's metadata (JSON),
//! under one CRC.

use std::collections::BTreeMap;

use anyhow::{bail, ensure, Context as _, Result};
use serde::{Deserialize, Serialize};

use super::{HEADER_FIXED, MAGIC, MAX_METADATA, VERSION};

/// Host and run facts stored in the header as a JSON object. Unknown fields
/// are ignored and missing ones default, so fields can be added within a
/// format version.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Metadata {
    pub hostname: String,
    pub kernel_release: String,
    pub tcptrace_version: String,
    /// Add to a record's CLOCK_BOOTTIME `ts_ns` to get Unix time in ns.
    pub boot_offset_ns: i64,
    /// CLOCK_BOOTTIME when this file was started.
    pub start_boot_ns: u64,
    /// 0 for the first file of a run, then 1, 2, … for files opened by rotation.
    pub file_sequence: u32,
    pub hooks: Vec<HookInfo>,
    /// The filter the kernel applied, as options (`--port 80 --pid 42`);
    /// empty when unfiltered.
    pub filter: String,
    pub command_line: Vec<String>,
    /// Sizes of the shared record structs, by name.
    pub record_sizes: BTreeMap<String, u32>,
    /// Event kind names and their record discriminants.
    pub event_kinds: BTreeMap<String, u8>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HookInfo {
    pub hook: String,
    pub mechanism: Option<String>,
    pub notes: Vec<String>,
    /// Every program the hook may run (the diagnosis sums their skips);
    /// empty in recordings made before it was stored.
    pub programs: Vec<String>,
}

pub fn encode_header(meta: &Metadata) -> Result<Vec<u8>> {
    let json = serde_json::to_vec(meta).context("encoding the recording header")?;
    ensure!(json.len() <= MAX_METADATA, "recording header too large");
    let mut out = Vec::with_capacity(HEADER_FIXED + json.len() + 4);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&json);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// Checks the fixed part of a header; returns the metadata length.
pub fn check_header_fixed(fixed: &[u8; HEADER_FIXED]) -> Result<usize> {
    if fixed[..8] != MAGIC {
        bail!("not a tcptrace recording (no TCPTRREC signature at the start)");
    }
    let version = u16::from_le_bytes([fixed[8], fixed[9]]);
    if version > VERSION {
        bail!(
            "recorded with a newer tcptrace (format version {version}; this tcptrace reads \
             version {VERSION}): replay it with a newer tcptrace"
        );
    }
    if version == 0 {
        bail!("corrupt header (format version 0)");
    }
    let len = u32::from_le_bytes([fixed[12], fixed[13], fixed[14], fixed[15]]) as usize;
    ensure!(
        len <= MAX_METADATA,
        "corrupt header (metadata length {len})"
    );
    Ok(len)
}

/// Parses metadata and checks the header CRC (`header` = fixed part + metadata).
pub fn parse_header(header: &[u8], crc: u32) -> Result<Metadata> {
    ensure!(
        crc32fast::hash(header) == crc,
        "corrupt header (checksum mismatch)"
    );
    serde_json::from_slice(&header[HEADER_FIXED..])
        .map_err(|e| anyhow::anyhow!("corrupt header (metadata: {e})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_checks() {
        let meta = Metadata {
            hostname: "h".into(),
            ..Metadata::default()
        };
        let h = encode_header(&meta).unwrap();
        let fixed: [u8; HEADER_FIXED] = h[..HEADER_FIXED].try_into().unwrap();
        let len = check_header_fixed(&fixed).unwrap();
        let crc = u32::from_le_bytes(h[HEADER_FIXED + len..].try_into().unwrap());
        assert_eq!(parse_header(&h[..HEADER_FIXED + len], crc).unwrap(), meta);
        let mut future = fixed;
        future[8] = 2;
        let err = check_header_fixed(&future).unwrap_err().to_string();
        assert!(err.contains("newer tcptrace"), "{err}");
        let mut foreign = fixed;
        foreign[..4].copy_from_slice(b"\x0a\x0d\x0d\x0a");
        let err = check_header_fixed(&foreign).unwrap_err().to_string();
        assert!(err.contains("not a tcptrace recording"), "{err}");
    }
}

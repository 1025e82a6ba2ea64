//! The summary object of JSON Lines (`{"kind":"summary",...}`, README
//! "JSON events"), typed: written by the `--json` output, read back by
//! `tcptrace diagnose --input`, and handed to the diagnosis rules.
//!
//! Fields are declared in the order summaries have always printed them
//! (sorted by name). When reading a saved stream, missing fields are empty
//! (findings are not read back: the rules make them anew).

use std::{collections::BTreeMap, net::IpAddr};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{
    mapstats::MapJson,
    paws::stats::{PawsJson, RstReceivedJson, RstSentJson},
    syn::{Answered, ListenerJson},
};

/// One summary object.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SummaryJson {
    pub decode_errors: u64,
    pub errors: Vec<ErrorCount>,
    pub events: BTreeMap<String, u64>,
    #[serde(rename = "final")]
    pub final_: bool,
    /// Every finding of this summary, when the diagnosis runs.
    #[serde(skip_serializing_if = "Option::is_none", skip_deserializing)]
    pub findings: Option<Vec<FindingJson>>,
    pub histograms: BTreeMap<String, HistJson>,
    pub kind: String,
    pub listeners: Vec<ListenerJson>,
    pub lost: BTreeMap<String, u64>,
    pub lost_total: u64,
    pub maps: Vec<MapJson>,
    /// Kernel skips per program; `None` when a saved summary lacks them.
    pub missed: Option<BTreeMap<String, u64>>,
    pub missed_total: u64,
    pub paws: PawsJson,
    /// Only when the recording stopped before the run did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recording: Option<RecordingJson>,
    pub rst_received: RstReceivedJson,
    pub rst_sent: RstSentJson,
    pub stats: BTreeMap<String, u64>,
    pub syn_answered: Answered,
    pub untracked_peers_events: u64,
}

/// A finding as JSON Lines print it, alone (`{"kind":"finding",...}`) and
/// in the summary's `findings` (docs/diagnosis.md).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FindingJson {
    pub advice: Vec<String>,
    pub count: u64,
    /// The numbers that show it; each rule has its own.
    pub evidence: Map<String, Value>,
    pub first_seen: Option<String>,
    pub id: &'static str,
    /// Always `finding`.
    pub kind: &'static str,
    pub last_seen: Option<String>,
    pub severity: &'static str,
    pub subject: String,
    pub summary: String,
}

/// Failed calls of one kind with one errno.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ErrorCount {
    pub count: u64,
    pub errno: i32,
    pub kind: String,
    pub name: String,
}

/// A latency histogram: percentiles (`null` while empty) and its
/// non-empty log2 slots.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HistJson {
    pub count: u64,
    pub p50_ns: Option<u64>,
    pub p90_ns: Option<u64>,
    pub p99_ns: Option<u64>,
    pub slots: Vec<SlotJson>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SlotJson {
    pub count: u64,
    pub high_ns: u64,
    pub low_ns: u64,
}

/// A recording that stopped early (a full disk).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RecordingJson {
    pub error: String,
    pub events_not_written: u64,
    pub events_written: u64,
    pub file: String,
    pub stopped: String,
}

impl SummaryJson {
    /// The listeners' SYN cookie answers: (netns, address, port, cookies).
    pub fn cookie_answers(&self) -> impl Iterator<Item = (u32, Option<IpAddr>, u16, u64)> + '_ {
        self.listeners.iter().filter_map(|l| {
            let cookies = l.answered.cookie;
            (cookies > 0).then_some((l.netns?, l.addr, l.port?, cookies))
        })
    }
}

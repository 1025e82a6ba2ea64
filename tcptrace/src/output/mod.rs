//! The outputs a person or a program reads: aligned text lines, JSON Lines,
//! only the findings (`tcptrace diagnose`), the findings log (`tcptrace
//! daemon`), and a pcapng capture; and the diagnosis, the sink that adds
//! the findings they print.

pub mod diagnosis;
pub mod findings;
pub mod findings_log;
pub mod human;
pub mod json;
pub mod pcap;

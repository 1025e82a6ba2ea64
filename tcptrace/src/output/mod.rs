//! The outputs a person or a program reads: aligned text lines, JSON Lines,
//! only the findings (`tcptrace diagnose`), and a pcapng capture.

pub mod findings;
pub mod human;
pub mod json;
pub mod pcap;

//! PAWS/RST family, userspace side: what the programs need from this kernel
//! ([`offsets`]), decoding of `PawsEvent`/`RstEvent` records ([`decode`]),
//! their text, JSON fields and pcapng comment ([`output`]), the `RST_SENT`
//! map ([`maps`]), the peer clock estimator ([`clocks`]) and the summary's
//! per-peer view ([`stats`]). The
//! attach table is in `hooks/paws.rs`; the rules in `diagnose/{paws,rst}.rs`.

pub mod clocks;
pub mod decode;
pub mod maps;
pub mod offsets;
pub mod output;
pub mod stats;

pub use self::{
    decode::{PawsDetail, RstDetail},
    offsets::{drop_reasons, kernel_offsets, rst_slot_names},
};

//! Run-time settings handed to the programs as a read-only global.

/// Settings the programs read on every event.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// Events faster than this (and without an error) are only counted in the
    /// histograms, not sent to userspace.
    pub min_latency_ns: u64,
}

const _: () = assert!(core::mem::size_of::<Config>() == 8);

#[cfg(feature = "user")]
unsafe impl aya::Pod for Config {}

//! Run-time settings handed to the programs as a read-only global.

/// `Filter::flags` bits: which criteria are set.
pub mod filter_flags {
    pub const PID: u32 = 1 << 0;
    pub const COMM: u32 = 1 << 1;
    pub const PORT: u32 = 1 << 2;
    pub const ADDR: u32 = 1 << 3;
    pub const NETNS: u32 = 1 << 4;
    pub const CGROUP: u32 = 1 << 5;
}

/// Event filters applied in the kernel before an event is counted or sent;
/// userspace applies the same rules to recordings.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// `filter_flags` bits.
    pub flags: u32,
    pub pid: u32,
    pub cgroup: u64,
    pub comm: [u8; 16],
    pub netns: u32,
    /// Local or remote port.
    pub port: u16,
    /// AF_INET or AF_INET6 for `addr`.
    pub addr_family: u16,
    /// Local or remote address within `addr`/`prefix_len`.
    pub addr: [u8; 16],
    pub prefix_len: u32,
    pub _pad: u32,
}

/// Settings the programs read on every event.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// Events faster than this (and without an error) are only counted in the
    /// histograms, not sent to userspace.
    pub min_latency_ns: u64,
    pub filter: Filter,
}

impl Config {
    /// No threshold, no filter: what the object is compiled with.
    pub const DEFAULT: Config = Config {
        min_latency_ns: 0,
        filter: Filter {
            flags: 0,
            pid: 0,
            cgroup: 0,
            comm: [0; 16],
            netns: 0,
            port: 0,
            addr_family: 0,
            addr: [0; 16],
            prefix_len: 0,
            _pad: 0,
        },
    };
}

const _: () = assert!(core::mem::size_of::<Filter>() == 64);
const _: () = assert!(core::mem::size_of::<Config>() == 72);

// SAFETY: #[repr(C)], Copy, integer fields and byte arrays with explicit
// padding (`Filter::_pad`; sizes asserted above): every bit pattern is a
// valid value.
#[cfg(feature = "user")]
unsafe impl aya::Pod for Config {}

/// Whether `addr` lies in `net`/`prefix_len` (both network byte order).
#[inline(always)]
pub fn prefix_match(addr: &[u8; 16], net: &[u8; 16], prefix_len: u32) -> bool {
    let mut i = 0;
    while i < 16 {
        let bits = prefix_len.saturating_sub(i as u32 * 8);
        if bits == 0 {
            return true;
        }
        let mask: u8 = if bits >= 8 {
            0xff
        } else {
            0xffu8 << (8 - bits)
        };
        if addr[i] & mask != net[i] & mask {
            return false;
        }
        i += 1;
    }
    true
}

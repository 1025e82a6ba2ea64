//! The kernel maps that hold per-thread or per-socket state, shared so the
//! programs count insert failures per map and userspace shows how full each
//! map is.

use crate::maps;

/// Per-CPU array of insert failures, indexed by [`StateMap`].
pub const FULL_MAP: &str = maps::STATE_MAP_FULL;

/// Per-CPU array (one slot) of connect() calls in flight, added to at entry
/// and taken from at return: the connect state lives in task storage, which
/// cannot be walked. Per-CPU values wrap; their sum is the count.
pub const CONNECT_IN_FLIGHT: &str = maps::CONNECT_IN_FLIGHT;

/// A state map. The discriminant indexes [`FULL_MAP`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateMap {
    /// connect() calls in flight, in each thread's task storage.
    Connect = 0,
    /// Ephemeral port searches in flight, by thread.
    PortSearch = 1,
    /// Segments inside tcp_validate_incoming, by socket.
    PawsValidating = 2,
    /// kprobe mode: tcp_validate_incoming call stacks, by thread or CPU.
    PawsValidateCalls = 3,
    /// Answered-SYN counters, by listener address.
    SynListeners = 4,
    /// Who called listen(), by socket.
    ListenOwners = 5,
    /// Accept-queue overflows awaiting SYN-ACK retransmits, by 4-tuple.
    Ghosts = 6,
    /// Active opens in SYN_SENT, by socket.
    Handshakes = 7,
}

impl StateMap {
    pub const COUNT: u32 = 8;
    pub const ALL: [StateMap; Self::COUNT as usize] = [
        StateMap::Connect,
        StateMap::PortSearch,
        StateMap::PawsValidating,
        StateMap::PawsValidateCalls,
        StateMap::SynListeners,
        StateMap::ListenOwners,
        StateMap::Ghosts,
        StateMap::Handshakes,
    ];

    /// Short name in summaries.
    pub const fn name(self) -> &'static str {
        match self {
            StateMap::Connect => "connect",
            StateMap::PortSearch => "port_search",
            StateMap::PawsValidating => "paws_validating",
            StateMap::PawsValidateCalls => "paws_validate_calls",
            StateMap::SynListeners => "syn_listeners",
            StateMap::ListenOwners => "listen_owners",
            StateMap::Ghosts => "syn_ghosts",
            StateMap::Handshakes => "handshakes",
        }
    }

    /// Kept in task storage: one value per thread, freed with it, so there
    /// is no capacity to fill; entries are counted in [`CONNECT_IN_FLIGHT`].
    pub const fn per_task(self) -> bool {
        matches!(self, StateMap::Connect)
    }

    /// The map's name in the object file.
    pub const fn map_name(self) -> &'static str {
        match self {
            StateMap::Connect => maps::CONNECT_TASK,
            StateMap::PortSearch => maps::PORT_SEARCH_STATE,
            StateMap::PawsValidating => maps::PAWS_VALIDATING,
            StateMap::PawsValidateCalls => maps::PAWS_VALIDATE_CALLS,
            StateMap::SynListeners => maps::SYN_LISTENERS,
            StateMap::ListenOwners => maps::SYN_LISTEN_OWNERS,
            StateMap::Ghosts => maps::SYN_GHOSTS,
            StateMap::Handshakes => maps::HANDSHAKE_STATE,
        }
    }
}

// `ALL[i]` is the map with index i.
const _: () = {
    let mut i = 0;
    while i < StateMap::COUNT as usize {
        assert!(StateMap::ALL[i] as usize == i);
        i += 1;
    }
};

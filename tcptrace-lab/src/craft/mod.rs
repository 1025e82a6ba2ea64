//! A crafted TCP peer: two named network namespaces joined by a veth pair.
//! The server namespace runs real kernel sockets; the client namespace
//! sends hand-built segments from an address no stack owns (with a
//! permanent neighbour entry on the server side pointing at the client
//! veth) and sniffs the server's replies with AF_PACKET, so the client
//! kernel never answers or resets anything and every sequence number and
//! timestamp is ours.
//!
//! The namespaces are named (`ip netns add`), so a tracer finds them under
//! /run/netns; [`Lab`]'s Drop deletes them, and [`remove_stale`] deletes
//! those of a process killed before it could.

mod conn;
mod lab;
mod named;
mod peer;
mod wire;

pub use conn::Conn;
pub use lab::{Lab, STALE_SYNACK_BEHIND, STALE_SYNACK_TSVAL};
pub use named::{in_netns, ip, netns_inode, netns_path, nft, remove_stale, Prefix};
pub use peer::{client_isn, Peer};
pub use wire::{Reply, Segment, Wire, WAIT};

/// The address family of a lab.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

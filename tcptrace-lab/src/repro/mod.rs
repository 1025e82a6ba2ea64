//! The reproductions, one module per failure. Each runs in a private
//! network namespace ([`crate::netns::in_private_netns`]) and returns what
//! it did (the namespace's inode, the sockets' ports, the kernel counters'
//! deltas) beside a keeper holding the namespace open.

pub mod accept_queue;
pub mod handshake;
pub mod ports;

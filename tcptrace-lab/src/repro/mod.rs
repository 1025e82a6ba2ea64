//! The reproductions, one module per failure. Each runs in a private
//! network namespace ([`crate::netns::in_private_netns`]) and returns what
//! it did (the namespace's inode, the sockets' ports, the kernel counters'
//! deltas) beside a keeper holding the namespace open. Those of a crafted
//! peer ([`paws`], [`rst`]) run in a [`crate::craft::Lab`] instead, which
//! their result holds.

pub mod abort;
pub mod accept_queue;
pub mod handshake;
pub mod paws;
pub mod paws_handshake;
pub mod ports;
pub mod rst;
pub mod syn_queue;

//! Reproductions of the TCP failures tcptrace traces, each in a private
//! network namespace of its own, with what was injected and the kernel's
//! counters around it. `tcptrace selftest` runs them on a production host;
//! the scenario tests run the same ones under their exact assertions, so a
//! scenario has one place to fix.
//!
//! Every reproduction is bounded in connections and time, touches sysctls
//! only inside its namespace, and leaves nothing behind: its namespace is
//! unshared by a thread of its own (no name under /run/netns) and goes away
//! when that thread ends and the sockets in it are closed, even if the
//! process is killed. The crafted peer ([`craft`]) is the exception: a
//! tracer must see its packets on both sides, so its two namespaces are
//! named; they are deleted when its lab is dropped, and by the next user
//! of the same name prefix when its process was killed.

pub mod craft;
pub mod netns;
pub mod netstat;
pub mod repro;
pub mod sock;

//! connect() syscall: enter/exit tracepoints, on every kernel.

use super::{HookSpec, TpTarget};

pub fn spec() -> HookSpec {
    HookSpec {
        name: "connect",
        about: "connect() on TCP sockets: latency and errno",
        tracepoints: vec![
            TpTarget {
                category: "syscalls",
                name: "sys_enter_connect",
                program: "sys_enter_connect",
            },
            TpTarget {
                category: "syscalls",
                name: "sys_exit_connect",
                program: "sys_exit_connect",
            },
        ],
        functions: Vec::new(),
        ..HookSpec::default()
    }
}

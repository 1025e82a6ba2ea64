//! connect(): the syscall tracepoints on every kernel, replaced by
//! fentry/fexit on `inet_stream_connect` where the kernel allows BPF
//! trampolines (no syscall tracepoint on every task's syscalls, no fd walk).

use super::{FnTarget, HookSpec, TpTarget};

pub fn spec() -> HookSpec {
    // fentry only: a kretprobe costs more than the syscall tracepoints.
    let function = |fentry, ret| FnTarget {
        function: "inet_stream_connect",
        fentry,
        kprobe: "",
        ret,
        optional: false,
    };
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
        upgrade: vec![
            function("connect_fentry", false),
            function("connect_fexit", true),
        ],
        ..HookSpec::default()
    }
}

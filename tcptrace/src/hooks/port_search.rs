//! Ephemeral port search in `__inet_hash_connect`, and the ports it probes
//! through `__inet_check_established` / `__inet6_check_established`.

use tcptrace_common::programs;

use super::{FnTarget, HookSpec};
use crate::btf::KernelBtf;

pub fn spec(btf: &KernelBtf) -> HookSpec {
    // 6.18 added `bool rcu_lookup` as a fifth parameter; there the port that is
    // taken is checked twice, and only the lockless calls count.
    let rcu = |f: &str| btf.func_params(f).is_some_and(|n| n >= 5);
    let check = |function: &'static str,
                 plain: (&'static str, &'static str),
                 with_rcu: (&'static str, &'static str)| {
        let (fentry, kprobe) = if rcu(function) { with_rcu } else { plain };
        FnTarget {
            function,
            fentry,
            kprobe,
            ret: false,
            optional: true,
        }
    };
    HookSpec {
        name: "port_search",
        about: "ephemeral port search in connect(): duration, port, ports probed",
        tracepoints: Vec::new(),
        functions: vec![
            FnTarget {
                function: "__inet_hash_connect",
                fentry: programs::HASH_CONNECT_FENTRY,
                kprobe: programs::HASH_CONNECT_KPROBE,
                ret: false,
                optional: false,
            },
            FnTarget {
                function: "__inet_hash_connect",
                fentry: programs::HASH_CONNECT_FEXIT,
                kprobe: programs::HASH_CONNECT_KRETPROBE,
                ret: true,
                optional: false,
            },
            check(
                "__inet_check_established",
                (
                    programs::CHECK_ESTABLISHED_FENTRY,
                    programs::CHECK_ESTABLISHED_KPROBE,
                ),
                (
                    programs::CHECK_ESTABLISHED_RCU_FENTRY,
                    programs::CHECK_ESTABLISHED_RCU_KPROBE,
                ),
            ),
            check(
                "__inet6_check_established",
                (
                    programs::CHECK6_ESTABLISHED_FENTRY,
                    programs::CHECK_ESTABLISHED_KPROBE,
                ),
                (
                    programs::CHECK6_ESTABLISHED_RCU_FENTRY,
                    programs::CHECK_ESTABLISHED_RCU_KPROBE,
                ),
            ),
        ],
        ..HookSpec::default()
    }
}

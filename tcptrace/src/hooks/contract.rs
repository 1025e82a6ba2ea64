//! The kernel <-> userspace contract, checked against both embedded objects
//! (the bytes the loader loads; the thread-hash one on kernels without task
//! storage): the programs and maps it holds are exactly
//! those `tcptrace_common::{programs, maps}` name, every program the attach
//! table names is there with the kind of program its slot loads, and every
//! map userspace takes is there with the type userspace reads it as.

use std::collections::HashMap;

use aya_obj::{generated::bpf_map_type as map_type, Object, ProgramSection};
use tcptrace_common::{
    bench, maps,
    programs::{self, Kind},
    statemaps::{self, StateMap},
};

use super::{table, HookArgs, Typed};
use crate::btf::KernelBtf;

/// Both objects, by name.
fn objects() -> [(&'static str, Object); 2] {
    let parse = |name, bytes| {
        (
            name,
            Object::parse(bytes).unwrap_or_else(|e| panic!("object {name} parses: {e}")),
        )
    };
    [
        parse("tcptrace", crate::loader::OBJECT),
        parse("tcptrace-thread-hash", crate::loader::OBJECT_THREAD_HASH),
    ]
}

fn kind(section: &ProgramSection) -> Option<Kind> {
    Some(match section {
        ProgramSection::TracePoint => Kind::Tracepoint,
        ProgramSection::BtfTracePoint => Kind::TpBtf,
        ProgramSection::FEntry { .. } => Kind::FEntry,
        ProgramSection::FExit { .. } => Kind::FExit,
        ProgramSection::KProbe => Kind::KProbe,
        ProgramSection::KRetProbe => Kind::KRetProbe,
        _ => return None,
    })
}

/// Program name -> kind (None: a kind tcptrace never loads), per object.
fn object_programs() -> Vec<(&'static str, HashMap<String, Option<Kind>>)> {
    objects()
        .into_iter()
        .map(|(object, o)| {
            let programs = o
                .programs
                .into_iter()
                .map(|(name, p)| (name, kind(&p.section)))
                .collect();
            (object, programs)
        })
        .collect()
}

#[test]
fn object_holds_exactly_the_shared_programs() {
    for (object, found) in object_programs() {
        for &(name, want) in programs::ALL {
            assert_eq!(
                found.get(name),
                Some(&Some(want)),
                "program {name} ({want:?}) in {object}"
            );
        }
        for name in found.keys() {
            assert!(
                programs::kind(name).is_some(),
                "program {name} of {object} has no name in tcptrace_common::programs"
            );
        }
        assert_eq!(found.len(), programs::ALL.len(), "a name listed twice");
    }
}

/// Every program the attach table names for this kernel is in the object,
/// of the kind its slot loads it as; every tracepoint target with a BTF
/// form has its tp_btf twin available on this kernel (6.18).
#[test]
fn attach_table_names_programs_of_the_object() {
    let [(_, found), ..] = &object_programs()[..] else {
        panic!("no object");
    };
    let btf = KernelBtf::from_sys().expect("kernel BTF");
    let mut typed = 0;
    // With the opt-in state-change form, so that its programs are checked.
    let choice = HookArgs {
        handshake_state_changes: true,
        ..HookArgs::default()
    };
    for mut spec in table(&btf, choice) {
        for (name, want) in spec.program_kinds() {
            assert_eq!(
                found.get(name),
                Some(&Some(want)),
                "hook {}: program {name} as {want:?}",
                spec.name
            );
        }
        for t in spec.tracepoint_targets_mut() {
            match &t.typed {
                Typed::Program { .. } => typed += 1,
                Typed::Unavailable(why) => panic!("{}: tp_btf unavailable: {why}", t.name),
                Typed::None => assert_eq!(t.category, "syscalls", "{}", t.name),
            }
        }
    }
    // synack_retrans, rst_sent, receive_reset on every kernel (listen_owner
    // is on the listen() syscall tracepoint or fentry, with no tp_btf
    // form), more where the drop-reason forms exist (6.11+) and kfree_skb
    // for listen_overflow where its drop reason does (6.15+).
    assert!(typed >= 3, "{typed}");
}

/// The bench switches load their programs as tracepoints.
#[test]
fn bench_programs_are_tracepoints() {
    for (object, found) in object_programs() {
        let floor = bench::FLOOR_PROGRAMS.map(|(name, _)| name);
        for name in [bench::FLOOD_PROGRAM].into_iter().chain(floor) {
            assert_eq!(
                found.get(name),
                Some(&Some(Kind::Tracepoint)),
                "{name} in {object}"
            );
        }
    }
}

/// Every map userspace takes, with the map types it accepts in `object`.
fn taken(object: &str) -> Vec<(&'static str, Vec<map_type>)> {
    use map_type::*;
    let per_cpu = || vec![BPF_MAP_TYPE_PERCPU_ARRAY];
    let mut out = vec![
        (maps::EVENTS, vec![BPF_MAP_TYPE_RINGBUF]),
        (maps::HISTOGRAMS, per_cpu()),
        (maps::HIST_SUMS, per_cpu()),
        (maps::LOST, per_cpu()),
        (maps::STATS, per_cpu()),
        (maps::RST_SENT, per_cpu()),
        (maps::SYN_ANSWERED, per_cpu()),
        (
            maps::SYN_LISTENERS,
            vec![BPF_MAP_TYPE_PERCPU_HASH, BPF_MAP_TYPE_LRU_PERCPU_HASH],
        ),
        (statemaps::FULL_MAP, per_cpu()),
        (statemaps::CONNECT_IN_FLIGHT, per_cpu()),
        (bench::FLOOD_MAP, vec![BPF_MAP_TYPE_ARRAY]),
    ];
    // The state maps are walked by key (`mapstats`), except task storage
    // (an LRU hash in the thread-hash object), which the programs count in
    // CONNECT_IN_FLIGHT.
    for m in StateMap::ALL {
        let types = if m.per_task() && object == "tcptrace-thread-hash" {
            vec![BPF_MAP_TYPE_LRU_HASH]
        } else if m.per_task() {
            vec![BPF_MAP_TYPE_TASK_STORAGE]
        } else {
            vec![
                BPF_MAP_TYPE_HASH,
                BPF_MAP_TYPE_LRU_HASH,
                BPF_MAP_TYPE_PERCPU_HASH,
                BPF_MAP_TYPE_LRU_PERCPU_HASH,
            ]
        };
        out.push((m.map_name(), types));
    }
    out
}

#[test]
fn maps_userspace_takes_are_in_the_object() {
    for (object, obj) in objects() {
        for (name, types) in taken(object) {
            let map = obj
                .maps
                .get(name)
                .unwrap_or_else(|| panic!("map {name} missing from {object}"));
            assert!(
                types.iter().any(|&t| t as u32 == map.map_type()),
                "map {name} in {object}: type {} is none of {types:?}",
                map.map_type()
            );
        }
    }
}

#[test]
fn object_holds_exactly_the_shared_maps() {
    for (object, obj) in objects() {
        for name in maps::ALL {
            assert!(obj.maps.contains_key(*name), "map {name} in {object}");
        }
        for name in obj.maps.keys() {
            // Data sections (.rodata, .bss, ...) hold the globals; aya-log's
            // map (AYA_LOGS) is named by aya-log on both sides.
            if name.starts_with('.') || name.starts_with("AYA_") {
                continue;
            }
            assert!(
                maps::ALL.contains(&name.as_str()),
                "map {name} of {object} has no name in tcptrace_common::maps"
            );
        }
    }
}

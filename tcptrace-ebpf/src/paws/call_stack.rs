//! kprobe mode of `validate_incoming`: kretprobes do not see the arguments,
//! so each entry pushes its socket and skb on a small stack keyed by
//! execution context and the return pops them. The context is the thread,
//! or the CPU for the idle task (pid 0 on every CPU); a softirq that
//! interrupts a thread nests on that thread's stack.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_get_smp_processor_id},
    macros::map,
    maps::LruHashMap,
    EbpfContext,
};
use aya_log_ebpf::info;
use tcptrace_common::statemaps::StateMap;

use crate::maps::map_full;

const CALL_DEPTH: usize = 4;

/// The calls in flight in one execution context, innermost last.
#[derive(Clone, Copy)]
pub struct CallStack {
    depth: u32,
    _pad: u32,
    frames: [[u64; 2]; CALL_DEPTH],
}

/// LRU: a missed return leaves a frame behind, and a thread that dies with
/// one would hold its entry forever.
#[map(name = "PAWS_VALIDATE_CALLS")]
static VALIDATE_CALLS: LruHashMap<u64, CallStack> = LruHashMap::with_max_entries(4096, 0);

#[inline(always)]
fn call_key() -> u64 {
    let id = bpf_get_current_pid_tgid();
    if id == 0 {
        // SAFETY: a helper without arguments that returns this CPU's id.
        (1 << 63) | unsafe { bpf_get_smp_processor_id() } as u64
    } else {
        id
    }
}

/// Pushes the arguments of a `tcp_validate_incoming` call.
#[inline(always)]
pub fn push_call<C: EbpfContext>(ctx: &C, sk: u64, skb: u64) {
    let key = call_key();
    match VALIDATE_CALLS.get_ptr_mut(key) {
        Some(stack) => {
            // SAFETY: a pointer into a live value of this map, keyed by this
            // execution context: only programs running in it (entry and
            // return, never at once) use the entry.
            let stack = unsafe { &mut *stack };
            // Constant indexes only: verifiers differ on variable offsets
            // into map values.
            let frame = [sk, skb];
            match stack.depth {
                0 => stack.frames[0] = frame,
                1 => stack.frames[1] = frame,
                2 => stack.frames[2] = frame,
                3 => stack.frames[3] = frame,
                _ => {
                    // Deeper than real nesting goes: the bottom frames were
                    // left by returns the kernel missed. Drop the oldest so
                    // the next return still pops this call's frame.
                    stack.frames[0] = stack.frames[1];
                    stack.frames[1] = stack.frames[2];
                    stack.frames[2] = stack.frames[3];
                    stack.frames[3] = frame;
                    map_full(StateMap::PawsValidateCalls);
                    info!(
                        ctx,
                        "validate_incoming: call stack full (returns missed), oldest frame dropped"
                    );
                    return;
                }
            }
            stack.depth += 1;
        }
        None => {
            let stack = CallStack {
                depth: 1,
                _pad: 0,
                frames: [[sk, skb], [0; 2], [0; 2], [0; 2]],
            };
            if VALIDATE_CALLS.insert(key, stack, 0).is_err() {
                map_full(StateMap::PawsValidateCalls);
            }
        }
    }
}

/// Pops the arguments of the call returning now, if its entry was seen.
#[inline(always)]
pub fn pop_call<C: EbpfContext>(ctx: &C) -> Option<[u64; 2]> {
    let key = call_key();
    // SAFETY: as in `push_call`.
    let stack = unsafe { &mut *VALIDATE_CALLS.get_ptr_mut(key)? };
    let frame = match stack.depth {
        1 => stack.frames[0],
        2 => stack.frames[1],
        3 => stack.frames[2],
        4 => stack.frames[3],
        depth => {
            // An empty stack is removed and a full one stays at CALL_DEPTH:
            // this entry is corrupt.
            info!(
                ctx,
                "validate_incoming: call stack of depth {} dropped", depth
            );
            let _ = VALIDATE_CALLS.remove(key);
            return None;
        }
    };
    stack.depth -= 1;
    if stack.depth == 0 {
        let _ = VALIDATE_CALLS.remove(key);
    }
    Some(frame)
}

//! Per-program statistics the kernel keeps: how often it skipped one of our
//! programs because another BPF program was already running on that CPU
//! (`bpf_prog_info.recursion_misses`, Linux 5.12+). Such a skip loses an
//! event before it exists, so tcptrace reads and shows it like lost events.

use std::os::fd::{AsFd, AsRawFd as _, BorrowedFd};

use aya::{programs::ProgramFd, Ebpf};

/// Clones of the fds of every loaded program, by name.
#[derive(Default)]
pub struct ProgramStats {
    progs: Vec<(String, ProgramFd)>,
}

impl ProgramStats {
    pub fn new(ebpf: &Ebpf) -> Self {
        let progs = ebpf
            .programs()
            .filter_map(|(name, p)| Some((name.to_owned(), p.fd().ok()?.try_clone().ok()?)))
            .collect();
        Self { progs }
    }

    /// (program, skips) for every program the kernel skipped at least once.
    pub fn missed(&self) -> Vec<(String, u64)> {
        self.progs
            .iter()
            .filter_map(|(name, fd)| Some((name.clone(), recursion_misses(fd.as_fd())?)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}

/// `recursion_misses` of one program, via BPF_OBJ_GET_INFO_BY_FD.
fn recursion_misses(fd: BorrowedFd<'_>) -> Option<u64> {
    const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
    #[repr(C)]
    struct InfoAttr {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
        _rest: [u64; 13],
    }
    // SAFETY: bpf_prog_info is plain data; zero is a valid value.
    let mut info: aya_obj::generated::bpf_prog_info = unsafe { std::mem::zeroed() };
    let mut attr = InfoAttr {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: std::mem::size_of_val(&info) as u32,
        info: (&raw mut info) as u64,
        _rest: [0; 13],
    };
    // SAFETY: the attr points at a live, correctly sized info struct; the
    // kernel writes at most info_len bytes into it.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET_INFO_BY_FD,
            &raw mut attr,
            std::mem::size_of::<InfoAttr>(),
        )
    };
    (ret == 0).then_some(info.recursion_misses)
}

//! Disk space kept allocated just past the end of a recording, so the block
//! that closes it (the end block, or the stopped block saying the disk is
//! full) can still be written when nothing else fits.
//!
//! Before each block the writer allocates the block plus [`RESERVE`] bytes
//! with `fallocate(FALLOC_FL_KEEP_SIZE)`: the file size does not change, the
//! space is the file's. If that allocation fails with ENOSPC the block is
//! not written and the room reserved by the previous allocation takes the
//! stopped block. Filesystems without fallocate get plain writes; a full
//! disk is still reported, the stopped block written only if it fits.

use std::{fs::File, io, os::fd::AsRawFd as _};

/// Room for the end or stopped block (20-byte header and three varints),
/// also kept free under `--max-size`.
pub const RESERVE: u64 = 64;

/// True for the errors that mean "no room": ENOSPC, and EDQUOT (a quota is
/// a full disk for this user).
pub fn is_disk_full(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
}

fn fallocate(file: &File, mode: libc::c_int, offset: u64, len: u64) -> io::Result<()> {
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return Err(io::Error::from_raw_os_error(libc::EFBIG));
    };
    // SAFETY: fallocate reads only its integer arguments; the descriptor
    // stays open for the borrow of `file`.
    let r = unsafe { libc::fallocate(file.as_raw_fd(), mode, offset, len) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Allocates `[offset, offset + len)` without changing the file size.
pub fn allocate(file: &File, offset: u64, len: u64) -> io::Result<()> {
    fallocate(file, libc::FALLOC_FL_KEEP_SIZE, offset, len)
}

/// Gives back what was allocated past `size`, up to `reserved_to`: a closed
/// file keeps no reserve. Best effort: the data is complete either way.
pub fn release(file: &File, size: u64, reserved_to: u64) {
    if reserved_to <= size {
        return;
    }
    // ext4 and xfs free blocks past the end on truncate; tmpfs only on a
    // size change, so punch the range out as well.
    let _ = file.set_len(size);
    let _ = fallocate(
        file,
        libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
        size,
        reserved_to - size,
    );
}

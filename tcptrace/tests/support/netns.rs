//! A private network namespace for the calling thread; shared by the
//! scenario tests and the benches (`#[path]`-included there).

use std::os::fd::AsRawFd as _;

/// Moves the calling thread into a new network namespace with lo up.
pub fn enter_private_netns() {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
    let sock = std::net::UdpSocket::bind("0.0.0.0:0").expect("socket in the new netns");
    // SAFETY: ifreq is plain data; the ioctls read/write it in place.
    unsafe {
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo\0".iter().enumerate() {
            ifr.ifr_name[i] = *b as libc::c_char;
        }
        assert_eq!(
            libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr),
            0,
            "SIOCGIFFLAGS lo"
        );
        ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        assert_eq!(
            libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &ifr),
            0,
            "SIOCSIFFLAGS lo"
        );
    }
}

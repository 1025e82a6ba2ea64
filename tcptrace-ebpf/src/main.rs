//! tcptrace kernel programs. One module per hook family; shared maps and
//! helpers live in `maps`, `emit`, `kernel` and `diag` (rare diagnostics).
#![no_std]
#![no_main]

mod bench;
mod connect;
mod diag;
mod emit;
mod filter;
mod handshake;
mod kernel;
mod kfree_skb;
mod maps;
mod packet;
mod paws;
mod port_search;
mod syn;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";

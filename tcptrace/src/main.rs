use aya::Ebpf;
fn main() -> anyhow::Result<()> {
    let bytes = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tcptrace"));
    println!("{}", bytes.len());
    let _ = Ebpf::load(bytes);
    Ok(())
}

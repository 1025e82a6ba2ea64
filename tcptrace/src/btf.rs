//! Reading the running kernel's BTF: struct member offsets, function
//! signatures. Nothing about kernel layout is frozen in tcptrace.
//!
//! A lean reader of the BTF format (Documentation/bpf/btf.rst): one pass
//! records where each type starts and chains the ids of each name, so
//! start-up does not pay for decoding the ~100k types of vmlinux into
//! objects; lookups decode only the types they walk.

use std::{collections::HashMap, path::Path};

use anyhow::{anyhow, bail, Context as _, Result};
use tcptrace_common::KernelOffsets;

pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

const BTF_MAGIC: u16 = 0xeb9f;

// BTF kinds.
const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FWD: u32 = 7;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_FLOAT: u32 = 16;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

/// One `struct btf_type` header and where its kind-specific data starts.
#[derive(Clone, Copy, Debug)]
struct Ty {
    kind: u32,
    name_off: u32,
    vlen: usize,
    kind_flag: bool,
    /// `size` or `type`, depending on the kind.
    size_or_type: u32,
    /// Offset of the data after the header.
    extra: usize,
}

pub struct KernelBtf {
    data: Vec<u8>,
    strings: std::ops::Range<usize>,
    /// Start of each type's header in `data`, indexed by type id (0: void).
    starts: Vec<u32>,
    /// Name hash → highest type id with a name of that hash; `same_hash`
    /// chains to the next lower id with the same hash (0 ends it).
    by_name: HashMap<u64, u32>,
    same_hash: Vec<u32>,
}

/// FNV-1a: cheap and good enough to bucket type names.
fn name_hash(s: &[u8]) -> u64 {
    s.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl KernelBtf {
    /// The running kernel's BTF.
    pub fn from_sys() -> Result<Self> {
        if !Path::new(VMLINUX_BTF).exists() {
            bail!(
                "{VMLINUX_BTF} is missing: tcptrace needs a kernel built with \
                 CONFIG_DEBUG_INFO_BTF=y (Linux 5.8 or later)"
            );
        }
        Self::from_file(Path::new(VMLINUX_BTF))
    }

    pub fn from_file(path: &Path) -> Result<Self> {
        let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(data).with_context(|| format!("reading BTF from {}", path.display()))
    }

    fn parse(data: Vec<u8>) -> Result<Self> {
        let u16_at = |o: usize| data.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
        let u32_at = |o: usize| {
            data.get(o..o + 4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        };
        match u16_at(0) {
            Some(BTF_MAGIC) => {}
            Some(m) if m == BTF_MAGIC.swap_bytes() => bail!("BTF of the other byte order"),
            _ => bail!("not BTF (bad magic)"),
        }
        let field = |o: usize| {
            u32_at(o)
                .map(|v| v as usize)
                .ok_or_else(|| anyhow!("truncated BTF header"))
        };
        let hdr_len = field(4)?;
        let (type_off, type_len) = (field(8)?, field(12)?);
        let (str_off, str_len) = (field(16)?, field(20)?);
        let types = hdr_len + type_off..hdr_len + type_off + type_len;
        let strings = hdr_len + str_off..hdr_len + str_off + str_len;
        if types.end > data.len() || strings.end > data.len() {
            bail!("BTF sections run past the end of the data");
        }
        let mut starts = vec![0u32];
        let mut same_hash = vec![0u32];
        let mut by_name = HashMap::with_capacity(1 << 17);
        let mut pos = types.start;
        while pos < types.end {
            let id = starts.len() as u32;
            let ty = Self::header(&data, pos)?;
            starts.push(pos as u32);
            let name = Self::cstr(&data, &strings, ty.name_off);
            let prev = if name.is_empty() {
                0
            } else {
                by_name.insert(name_hash(name), id).unwrap_or(0)
            };
            same_hash.push(prev);
            let extra_len = match ty.kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
                KIND_ARRAY => 12,
                KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => 12 * ty.vlen,
                KIND_ENUM | KIND_FUNC_PROTO => 8 * ty.vlen,
                KIND_PTR | KIND_FWD | KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT
                | KIND_FUNC | KIND_FLOAT | KIND_TYPE_TAG => 0,
                k => bail!("unknown BTF kind {k} (type {id})"),
            };
            pos = ty.extra + extra_len;
        }
        if pos != types.end {
            bail!("BTF type section ends inside a type");
        }
        Ok(Self {
            data,
            strings,
            starts,
            by_name,
            same_hash,
        })
    }

    fn header(data: &[u8], pos: usize) -> Result<Ty> {
        let b = data
            .get(pos..pos + 12)
            .ok_or_else(|| anyhow!("BTF type at {pos} runs past the section"))?;
        let w = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let info = w(4);
        Ok(Ty {
            kind: (info >> 24) & 0x1f,
            name_off: w(0),
            vlen: (info & 0xffff) as usize,
            kind_flag: info >> 31 == 1,
            size_or_type: w(8),
            extra: pos + 12,
        })
    }

    fn cstr<'a>(data: &'a [u8], strings: &std::ops::Range<usize>, off: u32) -> &'a [u8] {
        let start = strings.start + off as usize;
        let Some(rest) = data.get(start..strings.end) else {
            return &[];
        };
        &rest[..rest.iter().position(|&c| c == 0).unwrap_or(rest.len())]
    }

    fn name(&self, off: u32) -> &str {
        std::str::from_utf8(Self::cstr(&self.data, &self.strings, off)).unwrap_or("")
    }

    fn ty(&self, id: u32) -> Result<Ty> {
        let pos = *self
            .starts
            .get(id as usize)
            .filter(|_| id != 0)
            .ok_or_else(|| anyhow!("BTF type id {id} out of range"))?;
        Self::header(&self.data, pos as usize)
    }

    fn u32_at(&self, pos: usize) -> u32 {
        self.data
            .get(pos..pos + 4)
            .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Ids of every type called `name`, lowest first.
    fn named(&self, name: &str) -> Vec<u32> {
        let mut ids = Vec::new();
        let mut id = self
            .by_name
            .get(&name_hash(name.as_bytes()))
            .copied()
            .unwrap_or(0);
        while id != 0 {
            if let Ok(t) = self.ty(id) {
                if self.name(t.name_off) == name {
                    ids.push(id);
                }
            }
            id = self.same_hash[id as usize];
        }
        ids.reverse();
        ids
    }

    fn named_kind(&self, name: &str, kinds: &[u32]) -> impl Iterator<Item = (u32, Ty)> + '_ {
        let kinds = kinds.to_vec();
        self.named(name).into_iter().filter_map(move |id| {
            self.ty(id)
                .ok()
                .filter(|t| kinds.contains(&t.kind))
                .map(|t| (id, t))
        })
    }

    /// Byte offset of `path` (dot-separated, e.g. `ns.inum`) inside struct
    /// `strukt`, looking through anonymous structs and unions.
    pub fn member_offset(&self, strukt: &str, path: &str) -> Result<u32> {
        let (_, mut ty) = self
            .named_kind(strukt, &[KIND_STRUCT])
            .next()
            .ok_or_else(|| anyhow!("struct {strukt} not found in kernel BTF"))?;
        let mut offset_bits = 0;
        for field in path.split('.') {
            let (bits, member_ty) = self
                .find_member(&ty, field, 0)?
                .ok_or_else(|| anyhow!("{strukt}.{path}: no member {field} in kernel BTF"))?;
            offset_bits += bits;
            ty = member_ty;
        }
        if offset_bits % 8 != 0 {
            bail!("{strukt}.{path} is a bitfield; tcptrace cannot read it");
        }
        Ok(offset_bits / 8)
    }

    /// Finds `field` in a struct/union, descending into anonymous members.
    /// Returns its bit offset and its (typedef-stripped) type.
    fn find_member(&self, ty: &Ty, field: &str, depth: u32) -> Result<Option<(u32, Ty)>> {
        if !matches!(ty.kind, KIND_STRUCT | KIND_UNION) || depth > 16 {
            return Ok(None);
        }
        for i in 0..ty.vlen {
            let at = ty.extra + 12 * i;
            let (name_off, type_id, offset) =
                (self.u32_at(at), self.u32_at(at + 4), self.u32_at(at + 8));
            let (bit_offset, bitfield_size) = if ty.kind_flag {
                (offset & 0x00ff_ffff, offset >> 24)
            } else {
                (offset, 0)
            };
            let member_ty = self.strip(self.ty(type_id)?)?;
            let name = self.name(name_off);
            if name == field {
                if bitfield_size != 0 {
                    bail!("member {field} is a bitfield; tcptrace cannot read it");
                }
                return Ok(Some((bit_offset, member_ty)));
            }
            if name.is_empty() {
                if let Some((bits, t)) = self.find_member(&member_ty, field, depth + 1)? {
                    return Ok(Some((bit_offset + bits, t)));
                }
            }
        }
        Ok(None)
    }

    /// Follows typedefs and qualifiers down to the underlying type.
    fn strip(&self, mut ty: Ty) -> Result<Ty> {
        for _ in 0..16 {
            match ty.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    ty = self.ty(ty.size_or_type)?;
                }
                _ => return Ok(ty),
            }
        }
        bail!("BTF type chain too deep")
    }

    /// The prototype of a FUNC.
    fn proto(&self, func: &Ty) -> Option<Ty> {
        self.ty(func.size_or_type)
            .ok()
            .filter(|p| p.kind == KIND_FUNC_PROTO)
    }

    /// Number of parameters of kernel function `func`, or `None` when BTF
    /// has no such function (absent from this kernel).
    pub fn func_params(&self, func: &str) -> Option<usize> {
        self.named_kind(func, &[KIND_FUNC])
            .find_map(|(_, f)| self.proto(&f).map(|p| p.vlen))
    }
}

impl KernelBtf {
    /// Name → value of every enumerator of `enum name` (e.g. `skb_drop_reason`),
    /// so values that move between kernels are never taken from a table.
    pub fn enum_values(&self, name: &str) -> Result<Vec<(String, u64)>> {
        let (_, e) = self
            .named_kind(name, &[KIND_ENUM, KIND_ENUM64])
            .next()
            .ok_or_else(|| anyhow!("enum {name} not found in kernel BTF"))?;
        Ok((0..e.vlen)
            .map(|i| {
                if e.kind == KIND_ENUM {
                    let at = e.extra + 8 * i;
                    (
                        self.name(self.u32_at(at)).to_owned(),
                        u64::from(self.u32_at(at + 4)),
                    )
                } else {
                    let at = e.extra + 12 * i;
                    let val = u64::from(self.u32_at(at + 4)) | u64::from(self.u32_at(at + 8)) << 32;
                    (self.name(self.u32_at(at)).to_owned(), val)
                }
            })
            .collect())
    }
}

impl KernelBtf {
    /// Whether kernel function `func` returns an enum (6.12+ returns
    /// `enum skb_drop_reason` from functions that returned int before).
    pub fn func_returns_enum(&self, func: &str) -> bool {
        self.named_kind(func, &[KIND_FUNC]).any(|(_, f)| {
            self.proto(&f)
                .and_then(|p| self.ty(p.size_or_type).ok())
                .and_then(|t| self.strip(t).ok())
                .is_some_and(|t| matches!(t.kind, KIND_ENUM | KIND_ENUM64))
        })
    }

    /// Number of arguments a BTF tracepoint passes (from the kernel's
    /// `btf_trace_<name>` typedef, the leading context pointer excluded), or
    /// `None` when the kernel has no such tracepoint.
    pub fn tracepoint_args(&self, name: &str) -> Option<usize> {
        let (_, mut ty) = self
            .named_kind(&format!("btf_trace_{name}"), &[KIND_TYPEDEF])
            .next()?;
        for _ in 0..4 {
            ty = match ty.kind {
                KIND_FUNC_PROTO => return ty.vlen.checked_sub(1),
                KIND_TYPEDEF | KIND_PTR | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT
                | KIND_TYPE_TAG => self.ty(ty.size_or_type).ok()?,
                _ => return None,
            };
        }
        None
    }
}

/// Every offset the kernel programs read, from this kernel's BTF.
pub fn kernel_offsets(btf: &KernelBtf) -> Result<KernelOffsets> {
    let off = |s: &str, p: &str| btf.member_offset(s, p);
    Ok(KernelOffsets {
        task_files: off("task_struct", "files")?,
        files_fdt: off("files_struct", "fdt")?,
        fdtable_max_fds: off("fdtable", "max_fds")?,
        fdtable_fd: off("fdtable", "fd")?,
        file_private_data: off("file", "private_data")?,
        socket_type: off("socket", "type")?,
        socket_sk: off("socket", "sk")?,
        sock_protocol: off("sock", "sk_protocol")?,
        skc_daddr: off("sock_common", "skc_daddr")?,
        skc_rcv_saddr: off("sock_common", "skc_rcv_saddr")?,
        skc_dport: off("sock_common", "skc_dport")?,
        skc_num: off("sock_common", "skc_num")?,
        skc_family: off("sock_common", "skc_family")?,
        skc_net: off("sock_common", "skc_net")?,
        skc_v6_daddr: off("sock_common", "skc_v6_daddr")?,
        skc_v6_rcv_saddr: off("sock_common", "skc_v6_rcv_saddr")?,
        net_ns_inum: off("net", "ns.inum")?,
        skb_head: off("sk_buff", "head")?,
        skb_network_header: off("sk_buff", "network_header")?,
        skb_transport_header: off("sk_buff", "transport_header")?,
        sk_err: off("sock", "sk_err")?,
        tcp_total_retrans: off("tcp_sock", "total_retrans")?,
        inet_sport: off("inet_sock", "inet_sport")?,
        tcp_segs_out: off("tcp_sock", "segs_out")?,
        skc_state: off("sock_common", "skc_state")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The running kernel's BTF: every supported build host and every VM of
    /// the matrix has one.
    fn host_btf() -> KernelBtf {
        KernelBtf::from_sys().expect("kernel BTF")
    }

    #[test]
    fn resolves_every_offset_on_this_kernel() {
        let btf = host_btf();
        let o = kernel_offsets(&btf).expect("offsets");
        // sock_common starts with the address pair; skc_num follows skc_dport.
        assert_eq!(o.skc_daddr, 0);
        assert_eq!(o.skc_rcv_saddr, 4);
        assert_eq!(o.skc_num, o.skc_dport + 2);
        assert!(o.skc_v6_daddr > o.skc_family);
        assert!(o.net_ns_inum > 0 && o.task_files > 0);
    }

    #[test]
    fn function_params_and_enums() {
        let btf = host_btf();
        assert_eq!(btf.func_params("tcp_v4_connect"), Some(3));
        assert_eq!(btf.func_params("no_such_function_in_any_kernel"), None);
        // Drop reasons arrived in 5.17 (5.10 of the VM matrix has none).
        if !crate::kernel::release_before(5, 17) {
            let reasons = btf.enum_values("skb_drop_reason").expect("skb_drop_reason");
            assert!(reasons
                .iter()
                .any(|(n, _)| n == "SKB_DROP_REASON_NOT_SPECIFIED"));
        }
        assert!(btf.member_offset("sock_common", "no_such_member").is_err());
        assert!(btf.enum_values("no_such_enum").is_err());
    }

    /// A small BTF blob built by hand: the reader's lookups on it, without
    /// depending on any kernel's layout.
    fn tiny_btf() -> KernelBtf {
        let mut strs = vec![0u8];
        let mut name = |n: &str| -> u32 {
            let off = strs.len() as u32;
            strs.extend_from_slice(n.as_bytes());
            strs.push(0);
            off
        };
        let (int, s, u, a, b, c, f, e, en, fun, fp, td, tp, x, cst) = (
            name("int"),
            name("s"),
            name("u"),
            name("a"),
            name("b"),
            name("c"),
            name("flags"),
            name("e"),
            name("E_ONE"),
            name("fn"),
            name("x"),
            name("btf_trace_tp"),
            name("ctx"),
            name("y"),
            name("ci"),
        );
        let _ = (u, cst);
        let mut types: Vec<u32> = Vec::new();
        let mut ty = |name_off: u32, kind: u32, vlen: u32, kflag: bool, st: u32, extra: &[u32]| {
            types.extend([name_off, (u32::from(kflag) << 31) | (kind << 24) | vlen, st]);
            types.extend_from_slice(extra);
        };
        // 1: int; 2: const int; 3: anonymous union { int b; } at 0
        ty(int, KIND_INT, 0, false, 4, &[32]);
        ty(0, KIND_CONST, 0, false, 1, &[]);
        ty(0, KIND_UNION, 1, false, 4, &[b, 2, 0]);
        // 4: struct s { int a; union { int b; }; int c:3 (bitfield); int flags; }
        ty(
            s,
            KIND_STRUCT,
            4,
            true,
            16,
            &[a, 1, 0, 0, 3, 32, c, 1, (3 << 24) | 64, f, 2, 96],
        );
        // 5: enum e { E_ONE = 1 }; 6: proto int (int x, int y); 7: fn
        ty(e, KIND_ENUM, 1, false, 4, &[en, 1]);
        ty(0, KIND_FUNC_PROTO, 2, false, 5, &[fp, 1, x, 1]);
        ty(fun, KIND_FUNC, 1, false, 6, &[]);
        // 8: ptr to 9; 9: proto (ctx, x); 10: typedef btf_trace_tp -> 8
        ty(0, KIND_PTR, 0, false, 9, &[]);
        ty(0, KIND_FUNC_PROTO, 2, false, 0, &[tp, 1, fp, 1]);
        ty(td, KIND_TYPEDEF, 0, false, 8, &[]);
        let type_bytes: Vec<u8> = types.iter().flat_map(|w| w.to_le_bytes()).collect();
        let mut data = Vec::new();
        data.extend(BTF_MAGIC.to_le_bytes());
        data.extend([1u8, 0]);
        for w in [
            24u32,
            0,
            type_bytes.len() as u32,
            type_bytes.len() as u32,
            strs.len() as u32,
        ] {
            data.extend(w.to_le_bytes());
        }
        data.extend(&type_bytes);
        data.extend(&strs);
        KernelBtf::parse(data).expect("tiny BTF")
    }

    #[test]
    fn reads_a_hand_built_blob() {
        let btf = tiny_btf();
        assert_eq!(btf.member_offset("s", "a").unwrap(), 0);
        assert_eq!(
            btf.member_offset("s", "b").unwrap(),
            4,
            "through the anonymous union"
        );
        assert_eq!(
            btf.member_offset("s", "flags").unwrap(),
            12,
            "through const"
        );
        assert!(btf
            .member_offset("s", "c")
            .unwrap_err()
            .to_string()
            .contains("bitfield"));
        assert!(btf.member_offset("s", "zz").is_err());
        assert!(btf.member_offset("e", "a").is_err(), "not a struct");
        assert_eq!(btf.func_params("fn"), Some(2));
        assert!(btf.func_returns_enum("fn"));
        assert_eq!(btf.func_params("s"), None);
        assert_eq!(btf.enum_values("e").unwrap(), vec![("E_ONE".to_owned(), 1)]);
        assert_eq!(btf.tracepoint_args("tp"), Some(1));
        assert_eq!(btf.tracepoint_args("other"), None);
    }

    #[test]
    fn rejects_what_is_not_btf() {
        assert!(KernelBtf::parse(b"not btf at all, not at all".to_vec()).is_err());
        let mut blob = tiny_btf().data;
        blob.truncate(40);
        assert!(KernelBtf::parse(blob).is_err());
    }

    #[test]
    fn return_types_and_tracepoint_args() {
        let btf = host_btf();
        assert!(!btf.func_returns_enum("tcp_v4_connect"));
        // kfree_skb(skb, location, reason[, rx_sk]) on every kernel with
        // reasons (5.17+), kfree_skb(skb, location) before.
        let least = if crate::kernel::release_before(5, 17) {
            2
        } else {
            3
        };
        assert!(btf.tracepoint_args("kfree_skb").is_some_and(|n| n >= least));
        assert_eq!(btf.tracepoint_args("no_such_tracepoint"), None);
    }
}

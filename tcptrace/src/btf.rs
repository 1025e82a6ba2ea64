//! Reading the running kernel's BTF: struct member offsets, function
//! signatures. Nothing about kernel layout is frozen in tcptrace.

use std::path::Path;

use anyhow::{anyhow, bail, Context as _, Result};
use btf_rs::{Btf, Type};
use tcptrace_common::KernelOffsets;

pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

pub struct KernelBtf {
    btf: Btf,
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
        let btf = Btf::from_file(path)
            .map_err(|e| anyhow!("{e}"))
            .with_context(|| format!("reading BTF from {}", path.display()))?;
        Ok(Self { btf })
    }

    fn named(&self, name: &str) -> Vec<Type> {
        self.btf.resolve_types_by_name(name).unwrap_or_default()
    }

    /// Byte offset of `path` (dot-separated, e.g. `ns.inum`) inside struct
    /// `strukt`, looking through anonymous structs and unions.
    pub fn member_offset(&self, strukt: &str, path: &str) -> Result<u32> {
        let mut ty = self
            .named(strukt)
            .into_iter()
            .find(|t| matches!(t, Type::Struct(_)))
            .ok_or_else(|| anyhow!("struct {strukt} not found in kernel BTF"))?;
        let mut offset_bits = 0;
        for field in path.split('.') {
            let (bits, member_ty) = self
                .find_member(&ty, field)?
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
    fn find_member(&self, ty: &Type, field: &str) -> Result<Option<(u32, Type)>> {
        let members = match ty {
            Type::Struct(s) | Type::Union(s) => &s.members,
            _ => return Ok(None),
        };
        for m in members {
            let name = self.btf.resolve_name(m).unwrap_or_default();
            let member_ty = self.strip(
                self.btf
                    .resolve_chained_type(m)
                    .map_err(|e| anyhow!("{e}"))?,
            )?;
            if name == field {
                if m.bitfield_size().is_some_and(|s| s != 0) {
                    bail!("member {field} is a bitfield; tcptrace cannot read it");
                }
                return Ok(Some((m.bit_offset(), member_ty)));
            }
            if name.is_empty() {
                if let Some((bits, t)) = self.find_member(&member_ty, field)? {
                    return Ok(Some((m.bit_offset() + bits, t)));
                }
            }
        }
        Ok(None)
    }

    /// Follows typedefs and qualifiers down to the underlying type.
    fn strip(&self, mut ty: Type) -> Result<Type> {
        for _ in 0..16 {
            match &ty {
                Type::Typedef(_)
                | Type::Volatile(_)
                | Type::Const(_)
                | Type::Restrict(_)
                | Type::TypeTag(_) => {
                    let btf_ty = ty
                        .as_btf_type()
                        .ok_or_else(|| anyhow!("BTF type without a target"))?;
                    ty = self
                        .btf
                        .resolve_chained_type(btf_ty)
                        .map_err(|e| anyhow!("{e}"))?;
                }
                _ => return Ok(ty),
            }
        }
        bail!("BTF type chain too deep")
    }

    /// Number of parameters of kernel function `func`, or `None` when BTF
    /// has no such function (absent from this kernel).
    pub fn func_params(&self, func: &str) -> Option<usize> {
        self.named(func).into_iter().find_map(|t| match t {
            Type::Func(f) => match self.btf.resolve_chained_type(&f) {
                Ok(Type::FuncProto(p)) => Some(p.parameters.len()),
                _ => None,
            },
            _ => None,
        })
    }
}

impl KernelBtf {
    /// Name → value of every enumerator of `enum name` (e.g. `skb_drop_reason`),
    /// so values that move between kernels are never taken from a table.
    pub fn enum_values(&self, name: &str) -> Result<Vec<(String, u64)>> {
        for ty in self.named(name) {
            match ty {
                Type::Enum(e) => {
                    return e
                        .members
                        .iter()
                        .map(|m| {
                            Ok((
                                self.btf.resolve_name(m).map_err(|e| anyhow!("{e}"))?,
                                u64::from(m.val()),
                            ))
                        })
                        .collect();
                }
                Type::Enum64(e) => {
                    return e
                        .members
                        .iter()
                        .map(|m| {
                            Ok((
                                self.btf.resolve_name(m).map_err(|e| anyhow!("{e}"))?,
                                m.val(),
                            ))
                        })
                        .collect();
                }
                _ => {}
            }
        }
        bail!("enum {name} not found in kernel BTF")
    }
}

impl KernelBtf {
    /// Whether kernel function `func` returns an enum (6.12+ returns
    /// `enum skb_drop_reason` from functions that returned int before).
    pub fn func_returns_enum(&self, func: &str) -> bool {
        self.named(func).into_iter().any(|t| match t {
            Type::Func(f) => match self.btf.resolve_chained_type(&f) {
                Ok(Type::FuncProto(p)) => self
                    .btf
                    .resolve_type_by_id(p.return_type_id())
                    .ok()
                    .and_then(|t| self.strip(t).ok())
                    .is_some_and(|t| matches!(t, Type::Enum(_) | Type::Enum64(_))),
                _ => false,
            },
            _ => false,
        })
    }

    /// Number of arguments a BTF tracepoint passes (from the kernel's
    /// `btf_trace_<name>` typedef, the leading context pointer excluded), or
    /// `None` when the kernel has no such tracepoint.
    pub fn tracepoint_args(&self, name: &str) -> Option<usize> {
        let mut ty = self
            .named(&format!("btf_trace_{name}"))
            .into_iter()
            .find(|t| matches!(t, Type::Typedef(_)))?;
        for _ in 0..4 {
            ty = match ty {
                Type::FuncProto(p) => return p.parameters.len().checked_sub(1),
                other => self.btf.resolve_chained_type(other.as_btf_type()?).ok()?,
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
        _pad: 0,
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
        let reasons = btf.enum_values("skb_drop_reason").expect("skb_drop_reason");
        assert!(reasons
            .iter()
            .any(|(n, _)| n == "SKB_DROP_REASON_NOT_SPECIFIED"));
        assert!(btf.member_offset("sock_common", "no_such_member").is_err());
        assert!(btf.enum_values("no_such_enum").is_err());
    }

    #[test]
    fn return_types_and_tracepoint_args() {
        let btf = host_btf();
        assert!(!btf.func_returns_enum("tcp_v4_connect"));
        // kfree_skb(skb, location, reason[, rx_sk]) on every kernel with reasons.
        assert!(btf.tracepoint_args("kfree_skb").is_some_and(|n| n >= 3));
        assert_eq!(btf.tracepoint_args("no_such_tracepoint"), None);
    }
}

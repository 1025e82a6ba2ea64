//! Tracepoint record layouts from tracefs: each
//! `events/<category>/<name>/format` file lists the record's fields and
//! their byte offsets, which the programs of every family (SYN, PAWS/RST)
//! are handed at load time instead of offsets frozen from one kernel.

use std::{collections::HashMap, fs};

use anyhow::{anyhow, Result};

/// Where tracefs is mounted: its own mount point first, then the older
/// place under debugfs.
const ROOTS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// Field name → byte offset in the record, from the text of a format file:
/// its `field:<type> <name>[<n>];\toffset:<o>;\tsize:<s>;...` lines (other
/// lines are skipped; a name seen twice keeps its first offset).
pub fn parse(text: &str) -> HashMap<String, u32> {
    let mut fields = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        let Some(decl) = line.strip_prefix("field:") else {
            continue;
        };
        let Some(name) = decl
            .split(';')
            .next()
            .and_then(|d| d.split_whitespace().last())
            .and_then(|n| n.split('[').next())
            .map(|n| n.trim_start_matches('*'))
        else {
            continue;
        };
        let Some(offset) = line
            .split(';')
            .find_map(|p| p.trim().strip_prefix("offset:"))
            .and_then(|o| o.trim().parse().ok())
        else {
            continue;
        };
        fields.entry(name.to_owned()).or_insert(offset);
    }
    fields
}

/// The fields of tracepoint `category:name` on this host.
pub fn read(category: &str, name: &str) -> Result<HashMap<String, u32>> {
    let text = ROOTS
        .iter()
        .find_map(|root| fs::read_to_string(format!("{root}/events/{category}/{name}/format")).ok())
        .ok_or_else(|| anyhow!("no format for tracepoint {category}:{name} in tracefs"))?;
    Ok(parse(&text))
}

/// Byte offset of `field` in tracepoint `category:name`; `None` when the
/// tracepoint has no such field.
pub fn field_offset(category: &str, name: &str, field: &str) -> Result<Option<u32>> {
    Ok(read(category, name)?.get(field).copied())
}

/// Offsets of `fields` in tracepoint `category:name`, in order; an error
/// when any is missing.
pub fn field_offsets(category: &str, name: &str, fields: &[&str]) -> Result<Vec<u32>> {
    let map = read(category, name)?;
    fields
        .iter()
        .map(|f| {
            map.get(*f)
                .copied()
                .ok_or_else(|| anyhow!("{category}:{name} has no field {f}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kfree_skb_format() {
        let text = "name: kfree_skb\nformat:\n\
            \tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\n\
            \tfield:void * skbaddr;\toffset:8;\tsize:8;\tsigned:0;\n\
            \tfield:__u8 saddr[4];\toffset:30;\tsize:4;\tsigned:0;\n\
            \tfield:enum skb_drop_reason reason;\toffset:36;\tsize:4;\tsigned:0;\n";
        let m = parse(text);
        assert_eq!(m["skbaddr"], 8);
        assert_eq!(m["saddr"], 30);
        assert_eq!(m["reason"], 36);
        assert_eq!(m["common_type"], 0);
    }

    const SEND_RESET: &str = "name: tcp_send_reset\nID: 2280\nformat:\n\
        \tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
        \tfield:const void * skaddr;\toffset:16;\tsize:8;\tsigned:0;\n\
        \tfield:enum sk_rst_reason reason;\toffset:28;\tsize:4;\tsigned:0;\n\
        \tfield:__u8 saddr[28];\toffset:32;\tsize:28;\tsigned:0;\n";

    #[test]
    fn parses_tcp_send_reset_format() {
        let m = parse(SEND_RESET);
        assert_eq!(m.get("skaddr").copied(), Some(16));
        assert_eq!(m.get("reason").copied(), Some(28));
        assert_eq!(m.get("saddr").copied(), Some(32));
        assert_eq!(m.get("common_type").copied(), Some(0));
        assert_eq!(m.get("missing").copied(), None);
    }

    /// A pointer written against its name, and a name seen twice.
    #[test]
    fn star_names_and_first_offset_wins() {
        let m = parse(
            "\tfield:char *name;\toffset:8;\tsize:8;\tsigned:0;\n\
             \tfield:int x;\toffset:16;\tsize:4;\tsigned:1;\n\
             \tfield:int x;\toffset:20;\tsize:4;\tsigned:1;\n\
             \tprint fmt: \"x=%d\", REC->x\n",
        );
        assert_eq!(m.get("name").copied(), Some(8));
        assert_eq!(m.get("x").copied(), Some(16));
        assert_eq!(m.len(), 2);
    }
}

//! Text from the traced system, made safe to print on a terminal.
//!
//! Task names, /proc contents, names stored in a recording: anyone on the
//! host chooses them (`prctl(PR_SET_NAME)` takes any bytes but NUL), and a
//! control character written raw to the operator's terminal is a command to
//! it (clear the screen, move the cursor, rewrite the title, ring the bell).
//! Every text rendering of such a string goes through [`Escaped`]. JSON
//! needs nothing more: serde already escapes control characters there.
//! HTML (the report) needs [`Html`]: the same controls escaped, then the
//! characters markup gives a meaning to (`& < > " '`) as entities, so a
//! name cannot open a tag, close an attribute or start a script.

use std::fmt;

/// Displays a string with its C0 controls, DEL and C1 controls written as
/// Rust-style escapes (`\n`, `\t`, `\x1b`, `\u{9b}`), and backslashes
/// doubled so an escaped name cannot pass for a plain one. Honours width
/// and alignment (`{:<16}`) like `str` does.
pub struct Escaped<'a>(pub &'a str);

/// Characters a terminal may act upon. C1 controls matter too: a UTF-8
/// terminal takes U+009B as CSI, the start of an escape sequence.
fn needs_escape(c: char) -> bool {
    c.is_control() || c == '\\'
}

fn push_escaped(out: &mut impl fmt::Write, s: &str) -> fmt::Result {
    for c in s.chars() {
        match c {
            '\\' => out.write_str("\\\\")?,
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_str("\\t")?,
            c if u32::from(c) < 0x80 && c.is_control() => write!(out, "\\x{:02x}", u32::from(c))?,
            c if c.is_control() => write!(out, "\\u{{{:x}}}", u32::from(c))?,
            c => out.write_char(c)?,
        }
    }
    Ok(())
}

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.0.chars().any(needs_escape) {
            return f.pad(self.0);
        }
        if f.width().is_none() && f.precision().is_none() {
            return push_escaped(f, self.0);
        }
        let mut s = String::with_capacity(self.0.len() + 8);
        push_escaped(&mut s, self.0)?;
        f.pad(&s)
    }
}

/// The escaped form as a `String`, for text assembled before printing.
pub fn escaped(s: &str) -> String {
    Escaped(s).to_string()
}

/// Displays a string for HTML text or a quoted attribute value: controls
/// escaped as [`Escaped`] does, then `& < > " '` as character references.
pub struct Html<'a>(pub &'a str);

impl fmt::Display for Html<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut plain = String::with_capacity(self.0.len());
        push_escaped(&mut plain, self.0)?;
        for c in plain.chars() {
            match c {
                '&' => f.write_str("&amp;")?,
                '<' => f.write_str("&lt;")?,
                '>' => f.write_str("&gt;")?,
                '"' => f.write_str("&quot;")?,
                '\'' => f.write_str("&#39;")?,
                c => fmt::Write::write_char(f, c)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_unchanged() {
        assert_eq!(escaped("nginx: worker"), "nginx: worker");
        assert_eq!(escaped("données ✓"), "données ✓");
        assert_eq!(escaped(""), "");
    }

    #[test]
    fn controls_are_escaped() {
        assert_eq!(
            escaped("\x1b[31mEVIL\x1b[2J\x07"),
            r"\x1b[31mEVIL\x1b[2J\x07"
        );
        assert_eq!(escaped("a\nb\rc\td\0e"), r"a\nb\rc\td\x00e");
        assert_eq!(escaped("del\x7f"), r"del\x7f");
        // C1: CSI and NEL.
        assert_eq!(escaped("x\u{9b}2J\u{85}"), r"x\u{9b}2J\u{85}");
        assert_eq!(escaped(r"C:\x1b"), r"C:\\x1b");
    }

    #[test]
    fn escaped_output_holds_no_control_character() {
        let all: String = (0u32..0x100).filter_map(char::from_u32).collect();
        let out = escaped(&all);
        assert!(!out.chars().any(char::is_control), "{out:?}");
    }

    #[test]
    fn width_and_alignment_apply_to_the_escaped_form() {
        assert_eq!(format!("[{:<6}]", Escaped("ab")), "[ab    ]");
        assert_eq!(format!("[{:<6}]", Escaped("a\x07")), r"[a\x07 ]");
        assert_eq!(format!("[{:>4}]", Escaped("\t")), r"[  \t]");
    }

    #[test]
    fn html_takes_markup_characters_out() {
        let comm = "<script>alert(1)</script>\"&'";
        assert_eq!(
            Html(comm).to_string(),
            "&lt;script&gt;alert(1)&lt;/script&gt;&quot;&amp;&#39;"
        );
        assert_eq!(Html("a\x1b[2Jb").to_string(), r"a\x1b[2Jb");
        assert_eq!(Html("nginx: worker").to_string(), "nginx: worker");
        let all: String = (0u32..0x100).filter_map(char::from_u32).collect();
        let out = Html(&all).to_string();
        assert!(!out.chars().any(|c| c.is_control() || "<>\"'".contains(c)));
    }
}

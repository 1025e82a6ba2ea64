//! Sections of BENCHMARKS.md that a bench run of its own rewrites alone
//! (`--only cost`, `--scrape-only`, `--soak`): each spans from its `## `
//! heading to the next, and the rest of the report is kept as it was.

use std::path::Path;

use anyhow::{Context as _, Result};

/// Where the section under `heading` starts and ends in `report`.
fn span(report: &str, heading: &str) -> Option<(usize, usize)> {
    let start = report.find(heading)?;
    let after = start + heading.len();
    let end = report[after..]
        .find("\n## ")
        .map_or(report.len(), |i| after + i + 1);
    Some((start, end))
}

/// The section under `heading`, if the report has one.
pub fn find<'a>(report: &'a str, heading: &str) -> Option<&'a str> {
    span(report, heading).map(|(s, e)| &report[s..e])
}

/// `report` with the section under `heading` replaced by `section` (which
/// starts with that heading, blank lines before it aside), or `section`
/// put before the raw numbers (or at the end) when it has none.
pub fn splice(report: &str, heading: &str, section: &str) -> String {
    let body = format!("{}\n", section.trim_matches('\n'));
    if let Some((start, end)) = span(report, heading) {
        let rest = &report[end..];
        let gap = if rest.is_empty() { "" } else { "\n" };
        return format!("{}{body}{gap}{rest}", &report[..start]);
    }
    match report.find("\n## Raw numbers") {
        Some(at) => format!("{}{body}\n{}", &report[..at + 1], &report[at + 1..]),
        None if report.is_empty() => body,
        None => format!("{}\n\n{body}", report.trim_end_matches('\n')),
    }
}

/// [`splice`] into the report file at `path`.
pub fn write(path: &Path, heading: &str, section: &str) -> Result<()> {
    let report = std::fs::read_to_string(path).unwrap_or_default();
    std::fs::write(path, splice(&report, heading, section))
        .with_context(|| format!("writing {}", path.display()))?;
    eprintln!("bench: wrote \"{heading}\" in {}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "## Cost";

    #[test]
    fn a_section_is_replaced_alone_or_added_before_the_raw_numbers() {
        let without = "# B\n\n## A\n\na\n\n## Raw numbers\n\nraw\n";
        let added = splice(without, H, "\n## Cost\n\nnew\n");
        assert_eq!(
            added,
            "# B\n\n## A\n\na\n\n## Cost\n\nnew\n\n## Raw numbers\n\nraw\n"
        );
        let again = splice(&added, H, "## Cost\n\nnewer");
        assert_eq!(
            again,
            "# B\n\n## A\n\na\n\n## Cost\n\nnewer\n\n## Raw numbers\n\nraw\n"
        );
        assert_eq!(find(&again, H), Some("## Cost\n\nnewer\n\n"));
        assert_eq!(
            splice("# B\n", H, "## Cost\n\nx\n"),
            "# B\n\n## Cost\n\nx\n"
        );
        let last = splice("# B\n\n## Cost\n\nold\n", H, "## Cost\n\nx\n");
        assert_eq!(last, "# B\n\n## Cost\n\nx\n");
        assert_eq!(find("# B\n", H), None);
    }
}

//! The two text formats of `/metrics`: OpenMetrics (what prometheus-client
//! writes, served when the scraper asks for it, as Prometheus does) and the
//! Prometheus text format 0.0.4 (everyone else: curl, promtool).
//!
//! The second is derived from the first: the families are the same, only
//! counter and info families are named by their sample names, and the
//! `# UNIT` and `# EOF` lines go.

use prometheus_client::{encoding::text::encode, registry::Registry};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Prometheus,
    OpenMetrics,
}

impl Format {
    /// OpenMetrics when the Accept header lists it with a non-zero q.
    pub fn negotiate(accept: Option<&str>) -> Self {
        let wants = accept.is_some_and(|a| {
            a.split(',').any(|part| {
                let mut fields = part.split(';').map(str::trim);
                let media = fields.next().unwrap_or_default();
                let q_zero = fields.any(|f| {
                    f.strip_prefix("q=")
                        .and_then(|q| q.parse::<f64>().ok())
                        .is_some_and(|q| q <= 0.0)
                });
                media.eq_ignore_ascii_case("application/openmetrics-text") && !q_zero
            })
        });
        if wants {
            Self::OpenMetrics
        } else {
            Self::Prometheus
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// The exposition of `registry` in `format`.
pub fn render(registry: &Registry, format: Format) -> Result<String, std::fmt::Error> {
    let mut om = String::with_capacity(16 << 10);
    encode(&mut om, registry)?;
    Ok(match format {
        Format::OpenMetrics => om,
        Format::Prometheus => to_prometheus_text(&om),
    })
}

/// OpenMetrics text → Prometheus text 0.0.4.
pub fn to_prometheus_text(om: &str) -> String {
    let mut out = String::with_capacity(om.len());
    // prometheus-client writes HELP before TYPE: hold it until the type
    // says what the family is called.
    let mut help: Option<(&str, &str)> = None;
    for line in om.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
            help = Some((name, text));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let (name, kind) = match kind {
                "counter" => (format!("{name}_total"), "counter"),
                "info" => (format!("{name}_info"), "gauge"),
                other => (name.to_owned(), other),
            };
            if let Some((_, text)) = help.take() {
                out.push_str(&format!("# HELP {name} {text}\n"));
            }
            out.push_str(&format!("# TYPE {name} {kind}\n"));
            continue;
        }
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_asks_for_openmetrics_and_curl_gets_text() {
        let prom = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(prom)), Format::OpenMetrics);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Prometheus);
        assert_eq!(Format::negotiate(None), Format::Prometheus);
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text; q=0, text/plain")),
            Format::Prometheus
        );
    }

    #[test]
    fn counters_and_infos_are_named_by_their_samples_in_text() {
        let om =
            "# HELP t_drops SYNs dropped.\n# TYPE t_drops counter\nt_drops_total{cause=\"x\"} 3\n\
                  # HELP t_build Version.\n# TYPE t_build info\nt_build_info{version=\"1\"} 1\n\
                  # HELP t_q Queue.\n# TYPE t_q gauge\n# UNIT t_q seconds\nt_q 2\n# EOF\n";
        assert_eq!(
            to_prometheus_text(om),
            "# HELP t_drops_total SYNs dropped.\n# TYPE t_drops_total counter\nt_drops_total{cause=\"x\"} 3\n\
             # HELP t_build_info Version.\n# TYPE t_build_info gauge\nt_build_info{version=\"1\"} 1\n\
             # HELP t_q Queue.\n# TYPE t_q gauge\nt_q 2\n"
        );
    }
}

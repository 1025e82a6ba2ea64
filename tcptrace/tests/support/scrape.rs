//! Reading tcptrace's metrics in a scenario: through a real Prometheus
//! server where one is installed (the host), else by scraping `/metrics`
//! directly with the tests' own HTTP client (the VMs have no Prometheus).
//! The same selectors and expected values work with both, so the metrics
//! assertions run on every kernel.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use super::{
    have,
    prometheus::{http_get, Prometheus},
};

/// Labels of one series (without Prometheus's `job` and `instance`).
pub type LabelSet = BTreeMap<String, String>;

/// One sample of the text exposition.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: LabelSet,
    pub value: f64,
}

/// Parses the Prometheus text format (what tcptrace serves without an
/// `Accept` header): comments skipped, label values unescaped.
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| parse_line(l).unwrap_or_else(|| panic!("bad exposition line {l:?}")))
        .collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let (name, rest) = match line.find(['{', ' ']) {
        Some(i) => line.split_at(i),
        None => return None,
    };
    let mut labels = LabelSet::new();
    let rest = if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices();
        let mut key = String::new();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '}' => break i,
                ',' => {}
                '=' => {
                    if chars.next()?.1 != '"' {
                        return None;
                    }
                    let mut val = String::new();
                    loop {
                        match chars.next()?.1 {
                            '"' => break,
                            '\\' => match chars.next()?.1 {
                                'n' => val.push('\n'),
                                c => val.push(c),
                            },
                            c => val.push(c),
                        }
                    }
                    labels.insert(std::mem::take(&mut key), val);
                }
                c => key.push(c),
            }
        };
        &body[end + 1..]
    } else {
        rest
    };
    let value = match rest.split_whitespace().next()? {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// Every sample tcptrace serves on `127.0.0.1:port` now.
pub fn scrape(port: u16) -> Vec<Sample> {
    let (status, _, body) = http_get(port, "/metrics", &[]);
    assert_eq!(status, 200, "GET /metrics: {body}");
    parse(&body)
}

/// Where a scenario reads the metrics.
pub enum Metrics {
    /// A real Prometheus server scraping tcptrace every second.
    Server(Prometheus),
    /// tcptrace's endpoint, scraped at each query.
    Direct(u16),
}

fn matches(labels: &LabelSet, want: &[(&str, &str)]) -> bool {
    want.iter()
        .all(|(k, v)| labels.get(*k).is_some_and(|have| have == v))
}

impl Metrics {
    /// Prometheus (with the rule file `rules`) scraping `127.0.0.1:target`
    /// where it is installed, else direct scrapes; either way, returns once
    /// the target answers (Prometheus: `up` is 1).
    pub fn start(target: u16, rules: &str) -> Metrics {
        if have("prometheus") {
            let prom = Prometheus::start(target, rules);
            assert_eq!(
                prom.wait_for("up{job=\"tcptrace\"}", 1.0, Duration::from_secs(20)),
                Some(1.0),
                "Prometheus scrapes tcptrace"
            );
            Metrics::Server(prom)
        } else {
            eprintln!("no Prometheus here: scraping tcptrace's /metrics directly");
            let (status, _, body) = http_get(target, "/healthz", &[]);
            assert_eq!(status, 200, "/healthz: {body}");
            Metrics::Direct(target)
        }
    }

    /// The Prometheus server, where there is one.
    pub fn server(&self) -> Option<&Prometheus> {
        match self {
            Metrics::Server(p) => Some(p),
            Metrics::Direct(_) => None,
        }
    }

    /// Every series of `name` whose labels include `want`.
    pub fn series(&self, name: &str, want: &[(&str, &str)]) -> Vec<(LabelSet, f64)> {
        match self {
            Metrics::Direct(port) => scrape(*port)
                .into_iter()
                .filter(|s| s.name == name && matches(&s.labels, want))
                .map(|s| (s.labels, s.value))
                .collect(),
            Metrics::Server(prom) => {
                let sel: Vec<String> = want
                    .iter()
                    .map(|(k, v)| {
                        format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
                    })
                    .collect();
                prom.query(&format!("{name}{{{}}}", sel.join(",")))
                    .into_iter()
                    .map(|(m, v)| {
                        let labels = m
                            .as_object()
                            .into_iter()
                            .flatten()
                            .filter(|(k, _)| !matches!(k.as_str(), "__name__" | "job" | "instance"))
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                            .collect();
                        (labels, v)
                    })
                    .collect()
            }
        }
    }

    /// The value of the only series of `name` with labels `want`, None
    /// without any.
    pub fn value(&self, name: &str, want: &[(&str, &str)]) -> Option<f64> {
        let s = self.series(name, want);
        assert!(s.len() <= 1, "{name} {want:?}: {s:?}");
        s.first().map(|(_, v)| *v)
    }

    /// The sum over every series of `name` with labels `want` (0 without).
    pub fn sum(&self, name: &str, want: &[(&str, &str)]) -> f64 {
        self.series(name, want).iter().map(|(_, v)| v).sum()
    }

    /// Waits until `read` returns `want` (the scrape after the event, then
    /// Prometheus's ingestion of it), or gives up and returns what it read
    /// last.
    pub fn wait<T: PartialEq + Clone>(&self, want: T, mut read: impl FnMut(&Self) -> T) -> T {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let v = read(self);
            if v == want || Instant::now() > deadline {
                return v;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// [`Metrics::wait`] for one series.
    pub fn wait_value(&self, name: &str, want_labels: &[(&str, &str)], want: f64) -> Option<f64> {
        self.wait(Some(want), |m| m.value(name, want_labels))
    }

    /// [`Metrics::wait`] for a sum of series.
    pub fn wait_sum(&self, name: &str, want_labels: &[(&str, &str)], want: f64) -> f64 {
        self.wait(want, |m| m.sum(name, want_labels))
    }
}

//! One line per hook: what the selftest found it sees on this kernel.

use std::fmt;

use serde::Serialize;

use crate::hooks::{HookStatus, Mechanism};

/// What the selftest concluded for one hook.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", content = "detail", rename_all = "snake_case")]
pub enum Verdict {
    /// Its events matched what was injected and the kernel's counters.
    Exact(String),
    /// It saw what it can without a hook it depends on, which is missing.
    Partial(String),
    /// It is attached and saw less (or other) than the kernel did.
    Missed(String),
    /// It could not attach on this kernel: why.
    Unavailable(String),
    /// Attached, but no reproduction exercises it.
    Unverified(String),
    /// The reproduction for it failed, so nothing could be compared.
    Error(String),
}

impl Verdict {
    /// Whether this verdict fails the selftest.
    pub fn fails(&self) -> bool {
        matches!(self, Self::Missed(_) | Self::Error(_))
    }

    /// One verdict for a hook exercised by two reproductions: exact when
    /// both are, else the worst of them (an error, then a miss), with both
    /// details.
    pub fn both(a: Verdict, b: Verdict) -> Verdict {
        let what = format!("{}; {}", a.detail(), b.detail());
        match (&a, &b) {
            (Self::Error(_), _) | (_, Self::Error(_)) => Self::Error(what),
            (Self::Missed(_), _) | (_, Self::Missed(_)) => Self::Missed(what),
            (Self::Exact(_), Self::Exact(_)) => Self::Exact(what),
            _ => Self::Partial(what),
        }
    }

    fn label(&self) -> &'static str {
        match self {
            Self::Exact(_) => "exact",
            Self::Partial(_) => "partial",
            Self::Missed(_) => "MISSED",
            Self::Unavailable(_) => "unavailable",
            Self::Unverified(_) => "unverified",
            Self::Error(_) => "ERROR",
        }
    }

    fn detail(&self) -> &str {
        match self {
            Self::Exact(d)
            | Self::Partial(d)
            | Self::Missed(d)
            | Self::Unavailable(d)
            | Self::Unverified(d)
            | Self::Error(d) => d,
        }
    }
}

/// A hook with its verdict.
#[derive(Debug, Serialize)]
pub struct HookVerdict {
    pub hook: &'static str,
    pub mechanism: Option<Mechanism>,
    #[serde(flatten)]
    pub verdict: Verdict,
}

impl HookVerdict {
    pub fn new(status: &HookStatus, verdict: Verdict) -> Self {
        Self {
            hook: status.hook,
            mechanism: status.mechanism,
            verdict,
        }
    }
}

impl fmt::Display for HookVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mechanism = self
            .mechanism
            .map_or_else(|| "-".to_owned(), |m| m.to_string());
        write!(
            f,
            "{:<w$} {:<11} {:<11} {}",
            self.hook,
            mechanism,
            self.verdict.label(),
            self.verdict.detail(),
            w = crate::loader::HOOK_COLUMN
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_json_name_the_verdict() {
        let v = HookVerdict {
            hook: "syn_drop",
            mechanism: Some(Mechanism::Fentry),
            verdict: Verdict::Missed("3 events, ListenOverflows +5".into()),
        };
        let line = v.to_string();
        assert!(line.starts_with("syn_drop "), "{line}");
        assert!(
            line.contains(" fentry ") && line.contains(" MISSED "),
            "{line}"
        );
        assert!(line.ends_with("3 events, ListenOverflows +5"), "{line}");
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["hook"], "syn_drop");
        assert_eq!(json["mechanism"], "fentry");
        assert_eq!(json["verdict"], "missed");
        assert_eq!(json["detail"], "3 events, ListenOverflows +5");
        assert!(v.verdict.fails());
        assert!(!Verdict::Partial(String::new()).fails());
        assert!(!Verdict::Unavailable(String::new()).fails());
    }

    #[test]
    fn a_hook_of_two_reproductions_is_exact_only_when_both_are() {
        let exact = || Verdict::Exact("a".into());
        assert_eq!(
            Verdict::both(exact(), exact()),
            Verdict::Exact("a; a".into())
        );
        assert!(matches!(
            Verdict::both(exact(), Verdict::Missed("b".into())),
            Verdict::Missed(_)
        ));
        assert!(matches!(
            Verdict::both(Verdict::Missed("a".into()), Verdict::Error("b".into())),
            Verdict::Error(_)
        ));
    }
}

//! What the rules know of tcptrace's own hooks: which ones attached, and
//! which programs run behind each, so that a finding never blames a hook
//! that was attached and can say how often the kernel skipped the programs
//! behind it (the summary's `missed`, per program: recursion misses).

use crate::summary::json::SummaryJson;

/// One hook as the rules see it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HookState {
    pub name: String,
    pub attached: bool,
    /// Every program the hook may run (names as in the summary's `missed`).
    pub programs: Vec<String>,
}

/// The hooks of this run. Empty when unknown (a saved JSON stream).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HookSet(pub Vec<HookState>);

impl HookSet {
    /// Whether `name` attached; `None` when this run's hooks are unknown.
    pub fn attached(&self, name: &str) -> Option<bool> {
        self.0.iter().find(|h| h.name == name).map(|h| h.attached)
    }

    /// Of `names`, those known not to have attached.
    pub fn not_attached<'n>(&self, names: &[&'n str]) -> Vec<&'n str> {
        names
            .iter()
            .copied()
            .filter(|n| self.attached(n) == Some(false))
            .collect()
    }

    /// Kernel skips of the programs behind `names`, from the summary's
    /// `missed` object; `None` when the hooks or the summary are unknown.
    pub fn skipped(&self, names: &[&str], summary: Option<&SummaryJson>) -> Option<u64> {
        let missed = summary?.missed.as_ref()?;
        let mut known = false;
        let mut total = 0u64;
        for h in self.0.iter().filter(|h| names.contains(&h.name.as_str())) {
            // Programs unknown (an older recording): so are the skips.
            if h.programs.is_empty() {
                return None;
            }
            known = true;
            for p in &h.programs {
                let n = missed.get(p).copied().unwrap_or(0);
                total = total.saturating_add(n);
            }
        }
        known.then_some(total)
    }
}

/// `a`, `a/b`: hook names as one word.
fn joined(names: &[&str]) -> String {
    names.join("/")
}

impl HookSet {
    /// Why a finding rests on counters instead of events, naming only the
    /// hooks among `names` that did not attach — never an attached one.
    /// `what`: the events missing ("these overflows").
    pub fn counters_advice(&self, names: &[&str], skipped: Option<u64>, what: &str) -> String {
        let off = self.not_attached(names);
        let ss = "meanwhile `ss -lnt` shows Recv-Q (waiting) against Send-Q (accept queue size)";
        if !off.is_empty() {
            let (hook, attach) = if off.len() == 1 {
                ("hook", "it attaches")
            } else {
                ("hooks", "they attach")
            };
            return format!(
                "The {} {hook} did not attach on this kernel (`tcptrace check` says why), so {what} were seen only as counters: run tcptrace where {attach} to name the listener and peers; {ss}.",
                joined(&off)
            );
        }
        let all_known = names.iter().all(|n| self.attached(n).is_some());
        if !all_known {
            return format!(
                "`tcptrace check` shows whether the {} hooks attach on this kernel: they name the listener and peers of {what}; {ss}.",
                joined(names)
            );
        }
        match skipped {
            Some(n) if n > 0 => format!(
                "The {} hooks were attached, but the kernel skipped their programs {n} times (another BPF program was running on that CPU), so {what} were lost before they became events; {ss}.",
                joined(names)
            ),
            _ => format!(
                "The {} hooks were attached and reported none of {what} in this namespace; {ss}.",
                joined(names)
            ),
        }
    }
}

/// Advice when the kernel skipped the programs behind a finding: its
/// counts are lower bounds.
pub fn skip_advice(names: &[&str], skipped: u64) -> String {
    format!(
        "The kernel skipped the programs of the {} hooks {skipped} times (another BPF program was running on that CPU: plain tracepoint and kprobe programs share one per-CPU guard), so the counts here are lower bounds; the TcpExt counters are exact. Stop the other tracer, or run where tcptrace attaches through fentry or tp_btf, which that guard does not skip.",
        joined(names)
    )
}

/// "N" or "at least N" when programs were skipped.
pub fn at_least(n: u64, skipped: Option<u64>) -> String {
    if skipped.unwrap_or(0) > 0 {
        format!("at least {n}")
    } else {
        n.to_string()
    }
}

impl From<&[crate::record::format::HookInfo]> for HookSet {
    fn from(hooks: &[crate::record::format::HookInfo]) -> Self {
        Self(
            hooks
                .iter()
                .map(|h| HookState {
                    name: h.hook.clone(),
                    attached: h.mechanism.is_some(),
                    programs: h.programs.clone(),
                })
                .collect(),
        )
    }
}

impl From<&[crate::hooks::HookStatus]> for HookSet {
    fn from(statuses: &[crate::hooks::HookStatus]) -> Self {
        Self(
            statuses
                .iter()
                .map(|s| HookState {
                    name: s.hook.to_owned(),
                    attached: s.attached(),
                    programs: s.programs.iter().map(|p| (*p).to_owned()).collect(),
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set() -> HookSet {
        HookSet(vec![
            HookState {
                name: "syn_drop".into(),
                attached: false,
                programs: vec!["conn_request4_fentry".into()],
            },
            HookState {
                name: "listen_overflow".into(),
                attached: true,
                programs: vec!["kfree_skb_listen_overflow".into(), "x".into()],
            },
        ])
    }

    #[test]
    fn attached_and_skips() {
        let h = set();
        assert_eq!(h.attached("syn_drop"), Some(false));
        assert_eq!(h.attached("listen_overflow"), Some(true));
        assert_eq!(h.attached("rst"), None);
        assert_eq!(
            h.not_attached(&["syn_drop", "listen_overflow", "rst"]),
            ["syn_drop"]
        );
        let s = crate::diagnose::tests::summary(
            &json!({"missed": {"kfree_skb_listen_overflow": 5, "x": 2, "conn_request4_fentry": 1, "other": 9}}),
        );
        assert_eq!(h.skipped(&["listen_overflow"], Some(&s)), Some(7));
        assert_eq!(
            h.skipped(&["syn_drop", "listen_overflow"], Some(&s)),
            Some(8)
        );
        assert_eq!(h.skipped(&["rst"], Some(&s)), None);
        assert_eq!(h.skipped(&["listen_overflow"], None), None);
        assert_eq!(
            h.skipped(
                &["listen_overflow"],
                Some(&crate::diagnose::tests::summary(&json!({"missed": {}})))
            ),
            Some(0)
        );
        assert_eq!(HookSet::default().skipped(&["syn_drop"], Some(&s)), None);
    }

    #[test]
    fn advice_blames_only_hooks_that_did_not_attach() {
        let names = ["syn_drop", "listen_overflow"];
        let a = set().counters_advice(&names, Some(0), "these overflows");
        assert!(a.starts_with("The syn_drop hook did not attach"), "{a}");
        assert!(!a.contains("listen_overflow"), "{a}");
        // Both attached: no hook is blamed; skips explain the gap.
        let mut both = set();
        both.0[0].attached = true;
        let a = both.counters_advice(&names, Some(4), "these overflows");
        assert!(!a.contains("did not attach"), "{a}");
        assert!(a.contains("skipped their programs 4 times"), "{a}");
        let a = both.counters_advice(&names, Some(0), "these overflows");
        assert!(a.contains("were attached and reported none"), "{a}");
        // Both off.
        let mut off = set();
        off.0[1].attached = false;
        let a = off.counters_advice(&names, None, "these overflows");
        assert!(
            a.starts_with("The syn_drop/listen_overflow hooks did not attach"),
            "{a}"
        );
        // Unknown (a saved stream): nothing is claimed.
        let a = HookSet::default().counters_advice(&names, None, "these overflows");
        assert!(a.starts_with("`tcptrace check` shows whether"), "{a}");
        assert!(!a.contains("did not attach"), "{a}");
        assert_eq!(at_least(5, Some(2)), "at least 5");
        assert_eq!(at_least(5, Some(0)), "5");
        assert_eq!(at_least(5, None), "5");
    }
}

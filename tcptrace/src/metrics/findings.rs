//! Findings as metrics: which rules the diagnosis holds now, and how many
//! occurrences stand behind each, so an alert rule can fire on them.

use std::collections::{BTreeMap, HashMap};

use crate::diagnose::Finding;

/// Per (rule, severity): active now, and occurrences since the start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FindingsView {
    pub rules: BTreeMap<(&'static str, &'static str), (bool, u64)>,
    /// Highest count seen per (rule, subject): a finding the diagnosis
    /// drops later keeps its occurrences, so the counter never goes back.
    counts: HashMap<(&'static str, String), (&'static str, u64)>,
}

impl FindingsView {
    /// The findings of the latest evaluation.
    pub fn update(&mut self, findings: &[Finding]) {
        for f in findings {
            let severity = f.severity.name();
            let e = self
                .counts
                .entry((f.id, f.subject.clone()))
                .or_insert((severity, 0));
            e.0 = severity;
            e.1 = e.1.max(f.count);
        }
        let mut rules: BTreeMap<(&'static str, &'static str), (bool, u64)> = BTreeMap::new();
        for ((id, _), (severity, n)) in &self.counts {
            rules.entry((id, severity)).or_default().1 += n;
        }
        for f in findings {
            if let Some(r) = rules.get_mut(&(f.id, f.severity.name())) {
                r.0 = true;
            }
        }
        self.rules = rules;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::Severity;

    fn finding(id: &'static str, subject: &str, count: u64) -> Finding {
        Finding {
            id,
            severity: Severity::Critical,
            subject: subject.into(),
            summary: String::new(),
            evidence: serde_json::Map::new(),
            advice: Vec::new(),
            count,
            first_seen: None,
            last_seen: None,
        }
    }

    #[test]
    fn occurrences_add_up_over_subjects_and_never_go_back() {
        let mut v = FindingsView::default();
        v.update(&[finding("a", "x", 3), finding("a", "y", 2)]);
        assert_eq!(v.rules[&("a", "critical")], (true, 5));
        // "y" is no longer held: still counted, and the rule stays active
        // through "x".
        v.update(&[finding("a", "x", 4)]);
        assert_eq!(v.rules[&("a", "critical")], (true, 6));
        v.update(&[]);
        assert_eq!(v.rules[&("a", "critical")], (false, 6));
    }
}

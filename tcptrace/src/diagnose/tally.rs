//! Bounded tallies for the rules: how often something was seen and when
//! (first and last), capped maps, and the top entries of a count map.

use std::collections::BTreeMap;

use crate::event::json::Stamp;

/// How many times something was seen, and when first and last.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Span {
    pub count: u64,
    pub first: Option<Stamp>,
    pub last: Option<Stamp>,
}

impl Span {
    pub fn add(&mut self, at: Option<&Stamp>) {
        self.count += 1;
        if let Some(at) = at {
            self.widen(at, at);
        }
    }

    fn widen(&mut self, first: &Stamp, last: &Stamp) {
        if self
            .first
            .as_ref()
            .is_none_or(|f| first.unix_ns < f.unix_ns)
        {
            self.first = Some(first.clone());
        }
        if self.last.as_ref().is_none_or(|l| last.unix_ns > l.unix_ns) {
            self.last = Some(last.clone());
        }
    }

    /// Both spans together.
    pub fn merge(&self, other: &Span) -> Span {
        let mut out = self.clone();
        out.count += other.count;
        if let (Some(f), Some(l)) = (&other.first, &other.last) {
            out.widen(f, l);
        }
        out
    }
}

/// Inserts into a map unless it already holds `cap` keys; says whether the
/// key is (now) present.
pub fn capped_insert<K: Ord, V: Default>(
    m: &mut BTreeMap<K, V>,
    k: K,
    cap: usize,
) -> Option<&mut V> {
    if m.len() >= cap && !m.contains_key(&k) {
        return None;
    }
    Some(m.entry(k).or_default())
}

/// The `n` largest entries of a count map, largest first.
pub fn top<K: Clone + Ord>(m: &BTreeMap<K, u64>, n: usize) -> Vec<(K, u64)> {
    let mut v: Vec<(K, u64)> = m.iter().map(|(k, c)| (k.clone(), *c)).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v.truncate(n);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_keep_first_and_last() {
        let mut s = Span::default();
        let t = |x: &str| Stamp::parse(x).unwrap();
        s.add(Some(&t("2026-01-01T00:00:02Z")));
        s.add(Some(&t("2026-01-01T00:00:01Z")));
        s.add(None);
        assert_eq!(s.count, 3);
        assert_eq!(s.first.as_ref().unwrap().text(), "2026-01-01T00:00:01Z");
        assert_eq!(s.last.as_ref().unwrap().text(), "2026-01-01T00:00:02Z");
        let mut o = Span::default();
        o.add(Some(&t("2026-01-01T00:00:03Z")));
        let m = s.merge(&o);
        assert_eq!(m.count, 4);
        assert_eq!(m.last.unwrap().text(), "2026-01-01T00:00:03Z");
    }
}

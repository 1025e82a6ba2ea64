//! Bounded label sets: which listeners (or peers) get series of their own,
//! and the folding of the rest into one `other` series so totals stay
//! exact.
//!
//! A key admitted once keeps its series for the whole run: a counter that
//! moved between its own series and `other` would go backwards in one of
//! them, which Prometheus reads as a reset. At each scrape the newcomers
//! with the most activity take the free places, until there are none.

use std::collections::{BTreeMap, HashSet};

/// Keys with series of their own, at most `limit`.
#[derive(Debug)]
pub struct Admission<K> {
    admitted: HashSet<K>,
    limit: usize,
}

impl<K: Ord + Clone + std::hash::Hash> Admission<K> {
    pub fn new(limit: usize) -> Self {
        Self {
            admitted: HashSet::new(),
            limit,
        }
    }

    /// Admits the most active keys not admitted yet while there is room
    /// (ties: the smaller key first, so a scrape is reproducible).
    pub fn admit<'a>(&mut self, candidates: impl IntoIterator<Item = (&'a K, u64)>)
    where
        K: 'a,
    {
        let room = self.limit.saturating_sub(self.admitted.len());
        if room == 0 {
            return;
        }
        let mut new: Vec<(&K, u64)> = candidates
            .into_iter()
            .filter(|(k, n)| *n > 0 && !self.admitted.contains(*k))
            .collect();
        new.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        new.dedup_by(|a, b| a.0 == b.0);
        for (k, _) in new.into_iter().take(room) {
            self.admitted.insert(k.clone());
        }
    }

    pub fn has(&self, k: &K) -> bool {
        self.admitted.contains(k)
    }
}

/// Values that add up into `other`.
pub trait Tally: Clone {
    fn zero() -> Self;
    fn add(&mut self, other: &Self);
    fn is_zero(&self) -> bool;
}

impl Tally for u64 {
    fn zero() -> Self {
        0
    }
    fn add(&mut self, other: &Self) {
        *self = self.saturating_add(*other);
    }
    fn is_zero(&self) -> bool {
        *self == 0
    }
}

impl<const N: usize> Tally for [u64; N] {
    fn zero() -> Self {
        [0; N]
    }
    fn add(&mut self, other: &Self) {
        for (a, b) in self.iter_mut().zip(other) {
            *a = a.saturating_add(*b);
        }
    }
    fn is_zero(&self) -> bool {
        self.iter().all(|n| *n == 0)
    }
}

/// One metric's rows after folding.
#[derive(Debug, PartialEq, Eq)]
pub struct Folded<K, V> {
    /// Admitted keys, in key order.
    pub own: Vec<(K, V)>,
    /// The sum of every other key, `None` when no key was folded.
    pub other: Option<V>,
    /// How many keys with a non-zero value were folded.
    pub folded: u64,
}

/// Splits `rows` into admitted keys and the sum of the rest; rows of one
/// key add up.
pub fn fold<K: Ord + Clone + std::hash::Hash, V: Tally>(
    rows: impl IntoIterator<Item = (K, V)>,
    admission: &Admission<K>,
) -> Folded<K, V> {
    let mut own: BTreeMap<K, V> = BTreeMap::new();
    let mut other: Option<V> = None;
    let mut folded = HashSet::new();
    for (k, v) in rows {
        if v.is_zero() {
            continue;
        }
        if admission.has(&k) {
            own.entry(k).or_insert_with(V::zero).add(&v);
        } else {
            other.get_or_insert_with(V::zero).add(&v);
            folded.insert(k);
        }
    }
    Folded {
        own: own.into_iter().collect(),
        other,
        folded: folded.len() as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_active_newcomers_fill_free_places_and_keep_them() {
        let mut a = Admission::new(2);
        a.admit([(&"b", 5), (&"a", 1), (&"c", 9), (&"z", 0)]);
        assert!(a.has(&"c") && a.has(&"b") && !a.has(&"a"));
        // "a" grows past both later: the places are taken for good.
        a.admit([(&"a", 100)]);
        assert!(!a.has(&"a"));
        let f = fold([("a", 100u64), ("b", 5), ("c", 9), ("d", 1)], &a);
        assert_eq!(f.own, vec![("b", 5), ("c", 9)]);
        assert_eq!(f.other, Some(101));
        assert_eq!(f.folded, 2);
    }

    #[test]
    fn thousands_of_keys_fold_into_k_plus_other_with_exact_totals() {
        let mut a = Admission::new(64);
        let rows: Vec<(u32, [u64; 2])> = (0..5000u32)
            .map(|k| (k, [u64::from(k % 7) + 1, 1]))
            .collect();
        a.admit(rows.iter().map(|(k, v)| (k, v[0] + v[1])));
        let f = fold(rows.clone(), &a);
        assert_eq!(f.own.len(), 64);
        assert_eq!(f.folded, 5000 - 64);
        let mut total = [0u64; 2];
        for (_, v) in &f.own {
            total.add(v);
        }
        total.add(&f.other.unwrap());
        let want: u64 = rows.iter().map(|(_, v)| v[0]).sum();
        assert_eq!(total, [want, 5000]);
        // The most active keys (k % 7 == 6) got the places.
        assert!(f.own.iter().all(|(k, _)| k % 7 == 6));
    }
}

//! The duplicate-delivery window: which deliveries a sink has already committed.
//!
//! Firehose resends a batch with the same request id when it did not see our 200 (a
//! timeout, a reset connection). Remembering committed ids lets the sink answer such a
//! retry with 200 without storing the batch twice. Memory is bounded two ways: entries
//! older than the window are forgotten, and past `capacity` entries the oldest go
//! first. A retry that arrives after its id was forgotten is stored again (Firehose's
//! at-least-once contract still holds; only the duplicate is not suppressed).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// Committed delivery keys with the time they were committed.
#[derive(Debug)]
pub struct DedupWindow {
    committed: HashMap<Arc<str>, u64>,
    /// Keys in commit order, for eviction.
    order: VecDeque<(u64, Arc<str>)>,
    window_ms: u64,
    capacity: usize,
}

impl DedupWindow {
    /// A window remembering keys for `window_ms` milliseconds, at most `capacity` keys.
    #[must_use]
    pub fn new(window_ms: u64, capacity: usize) -> Self {
        Self {
            committed: HashMap::new(),
            order: VecDeque::new(),
            window_ms,
            capacity,
        }
    }

    /// Whether `key` was committed within the window before `now_ms`.
    pub fn contains(&mut self, key: &str, now_ms: u64) -> bool {
        self.evict(now_ms);
        self.committed.contains_key(key)
    }

    /// Records `key` as committed at `at_ms`.
    pub fn insert(&mut self, key: &str, at_ms: u64) {
        if self.capacity == 0 || self.committed.contains_key(key) {
            return;
        }
        let key: Arc<str> = Arc::from(key);
        self.committed.insert(Arc::clone(&key), at_ms);
        self.order.push_back((at_ms, key));
        while self.order.len() > self.capacity {
            self.pop_oldest();
        }
    }

    /// Number of keys remembered.
    #[must_use]
    pub fn len(&self) -> usize {
        self.committed.len()
    }

    /// Whether no key is remembered.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.committed.is_empty()
    }

    /// The remembered keys with their commit times, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.order.iter().map(|(at, key)| (key.as_ref(), *at))
    }

    fn evict(&mut self, now_ms: u64) {
        let horizon = now_ms.saturating_sub(self.window_ms);
        while self.order.front().is_some_and(|(at, _)| *at < horizon) {
            self.pop_oldest();
        }
    }

    fn pop_oldest(&mut self) {
        if let Some((_, key)) = self.order.pop_front() {
            self.committed.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_within_the_window_and_forgets_after() {
        let mut window = DedupWindow::new(1_000, 10);
        window.insert("a", 5_000);
        assert!(window.contains("a", 5_500));
        assert!(window.contains("a", 6_000));
        assert!(!window.contains("a", 6_001));
        assert!(window.is_empty());
    }

    #[test]
    fn capacity_evicts_the_oldest() {
        let mut window = DedupWindow::new(u64::MAX, 2);
        window.insert("a", 1);
        window.insert("b", 2);
        window.insert("c", 3);
        assert_eq!(window.len(), 2);
        assert!(!window.contains("a", 3));
        assert!(window.contains("b", 3));
        assert!(window.contains("c", 3));
    }

    #[test]
    fn inserting_twice_keeps_one_entry() {
        let mut window = DedupWindow::new(u64::MAX, 2);
        window.insert("a", 1);
        window.insert("a", 2);
        window.insert("b", 3);
        assert!(window.contains("a", 3) && window.contains("b", 3));
        assert_eq!(window.iter().collect::<Vec<_>>(), [("a", 1), ("b", 3)]);
    }

    #[test]
    fn zero_capacity_remembers_nothing() {
        let mut window = DedupWindow::new(u64::MAX, 0);
        window.insert("a", 1);
        assert!(!window.contains("a", 1));
    }
}

//! Bounded memory of event ids already stored, so a redelivery is answered without a publish.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use crate::event::EventId;

/// Remembers the last `capacity` stored event ids; the oldest is forgotten first.
#[derive(Debug)]
pub struct Dedup {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    seen: HashSet<u128>,
    order: VecDeque<u128>,
}

impl Dedup {
    /// A window of `capacity` ids; 0 remembers nothing.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// True when `id` was stored by this process and not yet forgotten.
    pub fn contains(&self, id: EventId) -> bool {
        self.lock().seen.contains(&id.as_u128())
    }

    /// Records `id` as stored; call only after the broker confirmed it.
    pub fn remember(&self, id: EventId) {
        if self.capacity == 0 {
            return;
        }
        let mut inner = self.lock();
        if !inner.seen.insert(id.as_u128()) {
            return;
        }
        inner.order.push_back(id.as_u128());
        while inner.order.len() > self.capacity {
            if let Some(old) = inner.order.pop_front() {
                inner.seen.remove(&old);
            }
        }
    }

    /// How many ids are remembered now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().order.len()
    }

    /// True when nothing is remembered.
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the set and queue inconsistent in a
        // way that matters (worst case one id is forgotten early), so poisoning is ignored.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> EventId {
        EventId::derive("a", "2", &n.to_string())
    }

    #[test]
    fn remembers_up_to_capacity_then_forgets_the_oldest() {
        let d = Dedup::new(2);
        d.remember(id(1));
        d.remember(id(2));
        d.remember(id(2));
        assert!(d.contains(id(1)) && d.contains(id(2)));
        d.remember(id(3));
        assert!(!d.contains(id(1)));
        assert!(d.contains(id(2)) && d.contains(id(3)));
        assert_eq!(d.len(), 2);
    }

    #[test]
    fn zero_capacity_remembers_nothing() {
        let d = Dedup::new(0);
        d.remember(id(1));
        assert!(!d.contains(id(1)));
        assert!(d.is_empty());
    }
}

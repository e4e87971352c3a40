//! Duplicate suppression on the receiving client: a message id seen before (a redelivery
//! after a lost acknowledgement, a replay) is dropped. Remembers the last `capacity` ids.

use std::collections::{HashSet, VecDeque};

/// The ids seen lately.
#[derive(Debug, Clone)]
pub struct Seen {
    capacity: usize,
    order: VecDeque<(String, String)>,
    set: HashSet<(String, String)>,
}

impl Seen {
    /// Remembers up to `capacity` ids.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            order: VecDeque::new(),
            set: HashSet::new(),
        }
    }

    /// The remembered (sender, id) pairs, oldest first (to keep them across runs).
    pub fn entries(&self) -> impl Iterator<Item = (&str, &str)> {
        self.order.iter().map(|(s, i)| (s.as_str(), i.as_str()))
    }

    /// Whether message `id` from `sender` was recorded (without recording it).
    pub fn contains(&self, sender: &str, id: &str) -> bool {
        self.set.contains(&(sender.to_owned(), id.to_owned()))
    }

    /// Whether message `id` from `sender` is new; records it.
    pub fn first_time(&mut self, sender: &str, id: &str) -> bool {
        let key = (sender.to_owned(), id.to_owned());
        if self.set.contains(&key) {
            return false;
        }
        if self.order.len() == self.capacity
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        self.order.push_back(key.clone());
        self.set.insert(key);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_dropped_and_old_ids_forgotten() {
        let mut seen = Seen::new(2);
        assert!(seen.first_time("alice/1", "m1"));
        assert!(!seen.first_time("alice/1", "m1"));
        assert!(seen.contains("alice/1", "m1") && !seen.contains("alice/1", "m9"));
        assert!(seen.first_time("bob/1", "m1"), "ids are per sender");
        assert!(seen.first_time("alice/1", "m2"));
        assert!(seen.first_time("alice/1", "m1"), "forgotten after capacity");
        assert_eq!(
            seen.entries().collect::<Vec<_>>(),
            [("alice/1", "m2"), ("alice/1", "m1")]
        );
    }
}

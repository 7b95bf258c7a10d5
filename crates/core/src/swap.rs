//! A value replaced whole while it is being read: the rule data a reload swaps in (issue #26).
//!
//! Owns: one `Arc<T>` behind a lock held only to clone or replace the pointer.
//! Never does: merge, validate or load anything; the rulebook decides what goes in.
//! Invariant: a reader sees either the old value or the new one, never a mix, and keeps the one
//! it took for as long as it needs it (a request or a tracker pass decides under one set of rules).

use std::sync::{Arc, RwLock};

pub struct Swap<T>(Arc<RwLock<Arc<T>>>);

impl<T> Clone for Swap<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> std::fmt::Debug for Swap<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Swap(..)")
    }
}

impl<T> Swap<T> {
    pub fn new(value: T) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(value))))
    }

    /// The value in force now.
    pub fn current(&self) -> Arc<T> {
        self.0
            .read()
            .map(|g| g.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Put `value` in force; readers holding the old one finish with it.
    pub fn replace(&self, value: T) {
        let value = Arc::new(value);
        match self.0.write() {
            Ok(mut g) => *g = value,
            Err(p) => *p.into_inner() = value,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_keeps_the_value_it_took_across_a_replace() {
        let s = Swap::new(1);
        let held = s.current();
        s.replace(2);
        assert_eq!((*held, *s.current()), (1, 2));
        let other = s.clone();
        other.replace(3);
        assert_eq!(*s.current(), 3, "clones share one value");
    }
}

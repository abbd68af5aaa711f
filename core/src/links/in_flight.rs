//! [`InFlight`]: at most one task at a time per key (an attempt's logs and
//! outputs are brought home by one task, however many reports of its end
//! arrive: the StartJob answer and the job stream may both carry it).

use std::collections::HashSet;
use std::sync::Mutex;

/// The keys being worked on now.
#[derive(Default)]
pub struct InFlight(Mutex<HashSet<String>>);

/// Held while `key` is worked on; frees it when dropped.
pub struct Claim<'a> {
    set: &'a InFlight,
    key: String,
}

impl InFlight {
    /// A claim on `key`, or `None` when another task holds it.
    pub fn claim(&self, key: &str) -> Option<Claim<'_>> {
        let fresh = self.0.lock().expect("not poisoned").insert(key.to_owned());
        fresh.then(|| Claim {
            set: self,
            key: key.to_owned(),
        })
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.set.0.lock().expect("not poisoned").remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_claim_per_key_until_dropped() {
        let set = InFlight::default();
        let a = set.claim("a").expect("free");
        assert!(set.claim("a").is_none());
        let b = set.claim("b");
        assert!(b.is_some());
        drop(a);
        assert!(set.claim("a").is_some());
    }
}

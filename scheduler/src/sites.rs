//! The site table: every site name seen (described by gantryd or only named
//! by a job) gets a small key, so a million jobs pinned to `gpu` share one
//! copy of the name.

use std::collections::HashMap;
use std::sync::Arc;

use crate::domain::{FlavorSpec, SiteSpec};
use crate::slots::SiteKey;

/// One site name and, once gantryd described it, its description.
#[derive(Debug, Clone)]
pub(crate) struct Site {
    /// The name.
    pub name: Arc<str>,
    /// The description; `None` while only jobs name it.
    pub spec: Option<SiteSpec>,
}

/// The table of sites.
#[derive(Debug, Default)]
pub(crate) struct Sites {
    entries: Vec<Site>,
    by_name: HashMap<Arc<str>, SiteKey>,
}

/// The parts of a flavor that decide whether a job could ever run on it.
fn shape(f: &FlavorSpec) -> (&str, crate::domain::Resources, u64, bool) {
    (&f.name, f.capacity, f.max_walltime_seconds, f.available)
}

impl Sites {
    /// The key of site `name`, adding the name if new.
    pub fn intern(&mut self, name: &str) -> SiteKey {
        if let Some(&key) = self.by_name.get(name) {
            return key;
        }
        let name: Arc<str> = name.into();
        let key = SiteKey::try_from(self.entries.len()).expect("fewer than 4 billion sites");
        self.entries.push(Site {
            name: name.clone(),
            spec: None,
        });
        self.by_name.insert(name, key);
        key
    }

    /// The site with `key`.
    pub fn get(&self, key: SiteKey) -> &Site {
        &self.entries[key as usize]
    }

    /// The description of site `key`, if gantryd gave one.
    pub fn spec(&self, key: SiteKey) -> Option<&SiteSpec> {
        self.entries[key as usize].spec.as_ref()
    }

    /// Every described site.
    pub fn described(&self) -> impl Iterator<Item = (SiteKey, &SiteSpec)> {
        self.entries
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.spec.as_ref().map(|spec| (i as SiteKey, spec)))
    }

    /// Store a site's description. Returns true when what jobs could ever
    /// run there changed (the site is new or its flavors' shapes changed),
    /// or why a site without flavors has none (the reason quotes it), so
    /// satisfiability must be checked again.
    pub fn update(&mut self, spec: SiteSpec) -> bool {
        let key = self.intern(&spec.name);
        let entry = &mut self.entries[key as usize];
        let changed = match &entry.spec {
            None => true,
            Some(old) => {
                !old.flavors
                    .iter()
                    .map(shape)
                    .eq(spec.flavors.iter().map(shape))
                    || (spec.flavors.is_empty() && old.health_message != spec.health_message)
            }
        };
        entry.spec = Some(spec);
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Resources;

    fn spec(healthy: bool, cpus: u32) -> SiteSpec {
        SiteSpec {
            name: "a".into(),
            healthy,
            flavors: vec![FlavorSpec {
                name: "f".into(),
                capacity: Resources {
                    cpus,
                    ..Default::default()
                },
                price_per_hour: 0.0,
                max_partitions: 1,
                max_walltime_seconds: 0,
                available: true,
                is_default: false,
                unavailable_reason: String::new(),
            }],
            elastic: false,
            idle_timeout_seconds: 0,
            health_message: String::new(),
        }
    }

    #[test]
    fn only_shape_changes_ask_for_a_recheck() {
        let mut sites = Sites::default();
        let key = sites.intern("a");
        assert!(sites.spec(key).is_none());
        assert!(sites.update(spec(true, 4)));
        assert!(
            !sites.update(spec(false, 4)),
            "health alone changes nothing"
        );
        assert!(sites.update(spec(false, 8)));
        let said = |message: &str| SiteSpec {
            health_message: message.into(),
            ..spec(false, 8)
        };
        assert!(!sites.update(said("refused")), "it has flavors");
        let bare = |message: &str| SiteSpec {
            flavors: Vec::new(),
            ..said(message)
        };
        assert!(sites.update(bare("not contacted yet")));
        assert!(
            sites.update(bare("refused")),
            "why a site has no flavors is in its jobs' reason"
        );
        assert!(!sites.update(bare("refused")));
        assert_eq!(sites.described().count(), 1);
        assert_eq!(&*sites.get(key).name, "a");
        assert_eq!(sites.intern("a"), key);
    }
}

//! What gantryd knows about each gate right now: its description and health,
//! and the flavors it lately could not provision. Links write it; the API and
//! the scheduler link read it.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use gantry_proto::v1::{DescribeResponse, Flavor};
use tokio::sync::watch;

/// One gate's last known description and health.
#[derive(Debug, Clone, Default)]
pub struct SiteInfo {
    /// Whether the gate answered recently.
    pub healthy: bool,
    /// Why not, for people.
    pub message: String,
    /// Its last description (empty until it answered once).
    pub description: Option<DescribeResponse>,
    /// Idle timeout for elastic partitions.
    pub idle_timeout_seconds: u64,
    /// Flavors whose last partition the gate could not provision for want
    /// of capacity or quota (RESOURCE_EXHAUSTED): unavailable until then.
    pub exhausted: BTreeMap<String, Exhausted>,
}

/// A flavor held back after a capacity or quota error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exhausted {
    /// When the flavor may be tried again.
    pub until: Instant,
    /// What the gate said, for people.
    pub why: String,
}

impl SiteInfo {
    /// Its flavors as the gate describes them, those held back after a
    /// capacity or quota error marked unavailable with the gate's reason.
    pub fn flavors(&self) -> Vec<Flavor> {
        let described = self.description.as_ref().map(|d| d.flavors.as_slice());
        let mut flavors = described.unwrap_or(&[]).to_vec();
        for f in &mut flavors {
            if let Some(held) = self.exhausted.get(&f.name) {
                f.available = false;
                f.unavailable_reason = format!("out of capacity: {}", held.why);
            }
        }
        flavors
    }

    /// Whether the gate passes secret environment variables to jobs.
    pub fn can_pass_secrets(&self) -> bool {
        self.description
            .as_ref()
            .and_then(|d| d.capabilities.as_ref())
            .is_some_and(|c| c.secret_env)
    }

    /// Whether the gate forwards connections to jobs' ports (ForwardPort).
    pub fn can_forward_ports(&self) -> bool {
        self.capabilities().is_some_and(|c| c.port_forward)
    }

    /// Whether the gate provisions machines on demand.
    pub fn is_elastic(&self) -> bool {
        self.capabilities().is_some_and(|c| c.elastic)
    }

    fn capabilities(&self) -> Option<&gantry_proto::v1::Capabilities> {
        self.description
            .as_ref()
            .and_then(|d| d.capabilities.as_ref())
    }

    /// Whether the gate can stage files.
    pub fn can_stage(&self) -> bool {
        self.description
            .as_ref()
            .and_then(|d| d.capabilities.as_ref())
            .is_some_and(|c| c.staging)
    }
}

/// Every configured site, with a version counter that ticks on each change.
#[derive(Debug)]
pub struct Sites {
    sites: RwLock<BTreeMap<String, SiteInfo>>,
    version: watch::Sender<u64>,
}

impl Sites {
    /// A registry of `names`, all unhealthy until their gate answers.
    pub fn new(names: impl IntoIterator<Item = (String, u64)>) -> Self {
        let sites = names
            .into_iter()
            .map(|(name, idle)| {
                let info = SiteInfo {
                    message: "not contacted yet".into(),
                    idle_timeout_seconds: idle,
                    ..SiteInfo::default()
                };
                (name, info)
            })
            .collect();
        Self {
            sites: RwLock::new(sites),
            version: watch::channel(0).0,
        }
    }

    /// A copy of every site.
    pub fn all(&self) -> BTreeMap<String, SiteInfo> {
        self.sites.read().expect("sites lock").clone()
    }

    /// `f` of every configured site, without copying them.
    pub fn with_all<T>(&self, f: impl FnOnce(&BTreeMap<String, SiteInfo>) -> T) -> T {
        f(&self.sites.read().expect("sites lock"))
    }

    /// A copy of one site.
    pub fn get(&self, name: &str) -> Option<SiteInfo> {
        self.sites.read().expect("sites lock").get(name).cloned()
    }

    /// Change one site; ticks the version when something changed.
    pub fn update(&self, name: &str, f: impl FnOnce(&mut SiteInfo)) {
        let changed = {
            let mut sites = self.sites.write().expect("sites lock");
            let Some(site) = sites.get_mut(name) else {
                return;
            };
            let seen = |s: &SiteInfo| {
                let held: Vec<String> = s.exhausted.keys().cloned().collect();
                (s.healthy, s.message.clone(), s.description.clone(), held)
            };
            let before = seen(site);
            f(site);
            before != seen(site)
        };
        if changed {
            self.version.send_modify(|v| *v += 1);
        }
    }

    /// Hold `flavor` of site `name` back for `hold` after the gate could not
    /// provision it (capacity or quota), so that the scheduler tries the next
    /// fitting flavor or site; it becomes available again by itself.
    pub fn exhaust(self: &Arc<Self>, name: &str, flavor: &str, why: &str, hold: Duration) {
        let until = Instant::now() + hold;
        let held = Exhausted {
            until,
            why: why.to_string(),
        };
        self.update(name, |s| {
            s.exhausted.insert(flavor.to_string(), held);
        });
        let (sites, name, flavor) = (Arc::clone(self), name.to_string(), flavor.to_string());
        tokio::spawn(async move {
            tokio::time::sleep_until(until.into()).await;
            sites.update(&name, |s| {
                if s.exhausted
                    .get(&flavor)
                    .is_some_and(|h| h.until <= Instant::now())
                {
                    s.exhausted.remove(&flavor);
                }
            });
        });
    }

    /// Subscribe to changes.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flavor(name: &str) -> Flavor {
        Flavor {
            name: name.into(),
            available: true,
            ..Flavor::default()
        }
    }

    #[tokio::test]
    async fn a_flavor_out_of_capacity_is_held_back_until_its_hold_ends() {
        let sites = Arc::new(Sites::new([("aws".to_string(), 0)]));
        sites.update("aws", |s| {
            s.description = Some(DescribeResponse {
                flavors: vec![flavor("small"), flavor("large")],
                ..DescribeResponse::default()
            })
        });
        let mut changes = sites.watch();
        changes.borrow_and_update();

        let why = "EC2 RunInstances: InsufficientInstanceCapacity";
        sites.exhaust("aws", "small", why, Duration::from_millis(100));
        assert!(changes.has_changed().unwrap(), "the scheduler hears of it");
        changes.borrow_and_update();
        let held = sites.get("aws").unwrap().flavors();
        assert!(!held[0].available);
        assert_eq!(
            held[0].unavailable_reason,
            format!("out of capacity: {why}")
        );
        assert!(held[1].available, "other flavors stay available");

        tokio::time::timeout(Duration::from_secs(5), changes.changed())
            .await
            .expect("the hold ends by itself")
            .unwrap();
        assert!(sites.get("aws").unwrap().flavors()[0].available);
    }
}

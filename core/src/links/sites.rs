//! What gantryd knows about each gate right now: its description and health.
//! Links write it; the API and the scheduler link read it.

use std::collections::BTreeMap;
use std::sync::RwLock;

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
}

impl SiteInfo {
    /// Its flavors.
    pub fn flavors(&self) -> &[Flavor] {
        self.description
            .as_ref()
            .map(|d| d.flavors.as_slice())
            .unwrap_or(&[])
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
                    ..Default::default()
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
            let before = (site.healthy, site.message.clone(), site.description.clone());
            f(site);
            before != (site.healthy, site.message.clone(), site.description.clone())
        };
        if changed {
            self.version.send_modify(|v| *v += 1);
        }
    }

    /// Subscribe to changes.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }
}

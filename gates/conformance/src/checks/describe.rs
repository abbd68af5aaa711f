//! Describe: who the gate is, which API versions it speaks, what it offers.

use std::collections::HashSet;

use gantry_proto::API_VERSION;

use crate::report::Outcome;
use crate::run::Run;

/// The name is the one in the gate's certificate; provider and version are set.
pub async fn identity(run: &Run) -> Outcome {
    let d = &run.describe;
    if d.name != run.target.name {
        return Outcome::fail(format!(
            "name {:?}, but its certificate names gate/{}",
            d.name, run.target.name
        ));
    }
    if d.provider.is_empty() || d.version.is_empty() {
        return Outcome::fail(format!(
            "provider {:?} and version {:?} must both be set",
            d.provider, d.version
        ));
    }
    Outcome::Pass(format!("{} {} {}", d.name, d.provider, d.version))
}

/// `api_versions` includes the one gantryd speaks.
pub async fn api_versions(run: &Run) -> Outcome {
    let versions = &run.describe.api_versions;
    if versions.iter().any(|v| v == API_VERSION) {
        Outcome::Pass(format!("{versions:?}"))
    } else {
        Outcome::fail(format!("{versions:?} does not include {API_VERSION}"))
    }
}

/// At least one flavor; names unique; each holds a CPU; an unavailable
/// one says why; the flavor the run uses is available.
pub async fn flavors(run: &Run) -> Outcome {
    let flavors = &run.describe.flavors;
    if flavors.is_empty() {
        return Outcome::fail("no flavors: gantryd cannot place anything");
    }
    let mut names = HashSet::new();
    for f in flavors {
        if f.name.is_empty() || !names.insert(&f.name) {
            return Outcome::fail(format!("flavor name {:?} is empty or repeated", f.name));
        }
        let cpus = f.capacity.as_ref().map_or(0, |c| c.cpus);
        if cpus == 0 {
            return Outcome::fail(format!("flavor {:?} offers no CPU", f.name));
        }
        if !f.available && f.unavailable_reason.is_empty() {
            return Outcome::fail(format!(
                "flavor {:?} is unavailable and says not why",
                f.name
            ));
        }
    }
    match &run.flavor {
        Some(f) if f.available => Outcome::Pass(format!(
            "{} flavors; the run uses {:?}",
            flavors.len(),
            f.name
        )),
        Some(f) => Outcome::fail(format!(
            "the flavor to use, {:?}, is unavailable: {}",
            f.name, f.unavailable_reason
        )),
        None => Outcome::fail("no available flavor (or none of the name given with --flavor)"),
    }
}

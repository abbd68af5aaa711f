//! Running the gate conformance kit (`gantry-gate-conformance`) from a
//! test: a PKI for it and the gate, and its verdicts read from `--json`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use gantry_proto::identity::Principal;
use gantry_proto::pki::Pki;

use crate::{bin_dir, run};

/// A PKI for installation `e2e` with the core, the scheduler and `gate/<site>`.
pub fn pki(dir: &Path, site: &str) -> String {
    let pki = Pki::init(&dir.join("pki"), "e2e").expect("pki");
    for p in [
        Principal::Core,
        Principal::Scheduler,
        Principal::Gate(site.into()),
    ] {
        pki.issue(&p, &[]).expect("issue");
    }
    dir.join("pki").display().to_string()
}

/// Run the kit with `--json`: its exit code, each check's result and
/// detail, and its stderr.
pub fn conformance(args: &[&str]) -> (i32, BTreeMap<String, (String, String)>, String) {
    let (code, out, err) = run(Command::new(bin_dir().join("gantry-gate-conformance"))
        .args(args)
        .arg("--json"));
    let rows = out
        .lines()
        .map(|line| {
            let row: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            let field = |name: &str| row[name].as_str().expect("a string").to_string();
            (field("check"), (field("result"), field("detail")))
        })
        .collect();
    (code, rows, err)
}

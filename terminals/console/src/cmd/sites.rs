//! `gantry sites`: where jobs can run.

use clap::Args;
use gantry_client::{Flavor, Site};

use crate::cmd::Ctx;
use crate::output;

/// Arguments of `gantry sites`.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  gantry sites\n  gantry sites --json | jq '.[] | select(.healthy)'\n\n\
                  JOBS RUN AS: the Unix account jobs run as there: `each owner` (a job runs\n\
                  as its owner's own account) or the one account every job runs as.\n\n\
                  While gantryd itself accepts no changes (its database disk is full or\n\
                  failing), a first line says so and why (on stderr with --json)."
)]
pub struct SitesArgs {}

/// Run `gantry sites`. While gantryd refuses changes (its database cannot
/// write), a line saying so and why comes first (on stderr with `--json`).
pub async fn run(ctx: &Ctx, _args: SitesArgs) -> anyhow::Result<i32> {
    let overview = ctx.connect().await?.overview().await?;
    let sites = overview.sites;
    if let Some(core) = overview.core.filter(|c| !c.accepting_changes) {
        let line = format!(
            "gantryd: NOT ACCEPTING CHANGES (submit, cancel, hold, release): {}",
            core.message
        );
        if ctx.json {
            eprintln!("{line}");
        } else {
            crate::out!("{line}");
        }
    }
    if ctx.json {
        let views: Vec<_> = sites.iter().map(output::SiteView::from).collect();
        output::print_json(&views)?;
    } else {
        print_table(&sites);
    }
    Ok(0)
}

/// One line per flavor: `host: 8 cpus, 15.5 GiB, 0 gpus, free`, or
/// `short (default): 8 cpus, 15.5 GiB, 0 gpus, free, limit 2m, default 1m`.
pub fn flavor_line(f: &Flavor) -> String {
    let c = f.capacity.unwrap_or_default();
    let price = if f.price_per_hour == 0.0 {
        "free".to_string()
    } else {
        format!("{} {}/h", f.price_per_hour, f.currency)
    };
    let default = if f.is_default { " (default)" } else { "" };
    let mut line = format!(
        "{}{default}: {} cpus, {}, {} gpus, {price}",
        f.name,
        c.cpus,
        output::bytes(c.memory_bytes),
        c.gpus
    );
    if c.nodes > 1 {
        line.push_str(&format!(", {} nodes", c.nodes));
    }
    let time = |s: u64| humantime::format_duration(std::time::Duration::from_secs(s));
    if f.max_walltime_seconds > 0 {
        line.push_str(&format!(", limit {}", time(f.max_walltime_seconds)));
    }
    if f.default_walltime_seconds > 0 {
        line.push_str(&format!(", default {}", time(f.default_walltime_seconds)));
    }
    if !f.available {
        line.push_str(&format!(" (unavailable: {})", f.unavailable_reason));
    }
    line
}

fn print_table(sites: &[Site]) {
    let mut table = output::table(&[
        "NAME",
        "PROVIDER",
        "HEALTH",
        "FLAVORS",
        "PARTITIONS",
        "ACTIVE JOBS",
        "JOBS RUN AS",
    ]);
    for site in sites {
        let health = if site.healthy {
            "ok".to_string()
        } else {
            format!("down: {}", output::truncate(&site.health_message, 40))
        };
        let flavors: Vec<String> = site.flavors.iter().map(flavor_line).collect();
        table.add_row(vec![
            site.name.clone(),
            site.provider.clone(),
            health,
            if flavors.is_empty() {
                "-".into()
            } else {
                flavors.join("\n")
            },
            site.partitions.to_string(),
            site.active_jobs.to_string(),
            output::run_as(site),
        ]);
    }
    crate::out!("{table}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_client::Capacity;

    #[test]
    fn flavor_lines() {
        let f = Flavor {
            name: "c5.xlarge".into(),
            capacity: Some(Capacity {
                cpus: 4,
                memory_bytes: 8 << 30,
                gpus: 0,
                nodes: 1,
            }),
            price_per_hour: 0.17,
            currency: "USD".into(),
            available: true,
            ..Default::default()
        };
        assert_eq!(
            flavor_line(&f),
            "c5.xlarge: 4 cpus, 8 GiB, 0 gpus, 0.17 USD/h"
        );
    }
}

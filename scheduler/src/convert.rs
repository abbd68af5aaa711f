//! The edge: `gantry.v1` messages into validated domain types and plans back
//! into messages. Nothing past this file sees a prost type.

use gantry_proto::v1 as pb;

use crate::domain::{
    Batch, FlavorSpec, JobChange, JobId, JobSpec, PartitionPhase, PartitionSpec, PartitionUpdate,
    Plan, Resources, SiteSpec,
};
use crate::error::InvalidField;

fn non_empty(field: String, value: String, example: &str) -> Result<String, InvalidField> {
    if value.is_empty() {
        Err(InvalidField::new(
            field,
            format!("must not be empty; give e.g. \"{example}\""),
        ))
    } else {
        Ok(value)
    }
}

fn resources(field: String, capacity: Option<pb::Capacity>) -> Result<Resources, InvalidField> {
    let c = capacity.ok_or_else(|| {
        InvalidField::new(
            field,
            "is missing; give cpus, memory_bytes, gpus and nodes (e.g. {cpus: 4, memory_bytes: 8589934592, nodes: 1})",
        )
    })?;
    Ok(Resources {
        cpus: c.cpus,
        memory_bytes: c.memory_bytes,
        gpus: c.gpus,
        nodes: c.nodes,
    })
}

/// A flavor's or partition's capacity; `nodes: 0` is read as one machine.
fn capacity(field: String, c: Option<pb::Capacity>) -> Result<Resources, InvalidField> {
    let r = resources(field, c)?;
    Ok(Resources {
        nodes: r.nodes.max(1),
        ..r
    })
}

fn flavor(field: &str, f: pb::Flavor) -> Result<FlavorSpec, InvalidField> {
    if !f.price_per_hour.is_finite() || f.price_per_hour < 0.0 {
        return Err(InvalidField::new(
            format!("{field}.price_per_hour"),
            format!(
                "{} is not a price; use a finite number >= 0",
                f.price_per_hour
            ),
        ));
    }
    Ok(FlavorSpec {
        name: non_empty(format!("{field}.name"), f.name, "c5.xlarge")?,
        capacity: capacity(format!("{field}.capacity"), f.capacity)?,
        price_per_hour: f.price_per_hour,
        max_partitions: f.max_partitions,
        max_walltime_seconds: f.max_walltime_seconds,
        available: f.available,
        is_default: f.is_default,
        unavailable_reason: f.unavailable_reason,
    })
}

fn site(field: &str, s: pb::SchedSite) -> Result<SiteSpec, InvalidField> {
    let name = non_empty(format!("{field}.name"), s.name, "local")?;
    let mut flavors: Vec<FlavorSpec> = Vec::with_capacity(s.flavors.len());
    for (i, f) in s.flavors.into_iter().enumerate() {
        let f = flavor(&format!("{field}.flavors[{i}]"), f)?;
        if flavors.iter().any(|g| g.name == f.name) {
            return Err(InvalidField::new(
                format!("{field}.flavors[{i}].name"),
                format!(
                    "flavor `{}` appears twice; flavor names are unique within a site",
                    f.name
                ),
            ));
        }
        flavors.push(f);
    }
    Ok(SiteSpec {
        name,
        healthy: s.healthy,
        flavors,
        elastic: s.elastic,
        idle_timeout_seconds: s.idle_timeout_seconds,
        health_message: s.health_message,
    })
}

fn partition(field: &str, p: pb::SchedPartition) -> Result<PartitionUpdate, InvalidField> {
    let id = non_empty(
        format!("{field}.partition_id"),
        p.partition_id,
        "0199c3a2-7d1e-7000-8000-000000000000",
    )?;
    let phase = match pb::SchedPartitionState::try_from(p.state) {
        Ok(pb::SchedPartitionState::Creating) => PartitionPhase::Creating,
        Ok(pb::SchedPartitionState::Ready) => PartitionPhase::Ready,
        Ok(pb::SchedPartitionState::Gone) => return Ok(PartitionUpdate { id, spec: None }),
        _ => {
            return Err(InvalidField::new(
                format!("{field}.state"),
                format!(
                    "{} is not a partition state; use CREATING, READY or GONE",
                    p.state
                ),
            ));
        }
    };
    Ok(PartitionUpdate {
        id,
        spec: Some(PartitionSpec {
            site: non_empty(format!("{field}.site"), p.site, "local")?,
            flavor: non_empty(format!("{field}.flavor"), p.flavor, "host")?,
            phase,
            capacity: capacity(format!("{field}.capacity"), p.capacity)?,
            queue: match p.queue {
                Some(q) => capacity(format!("{field}.queue"), Some(q))?,
                None => Resources::default(),
            },
        }),
    })
}

fn job(field: &str, j: pb::SchedJob) -> Result<crate::domain::JobUpdate, InvalidField> {
    let id = JobId(j.job_id);
    let state = pb::SchedJobState::try_from(j.state).unwrap_or(pb::SchedJobState::Unspecified);
    if state == pb::SchedJobState::Gone {
        return Ok(crate::domain::JobUpdate {
            id,
            change: JobChange::Gone,
        });
    }
    if state == pb::SchedJobState::Unspecified {
        return Err(InvalidField::new(
            format!("{field}.state"),
            format!("{} is not a job state; use QUEUED, ACTIVE or GONE", j.state),
        ));
    }
    let spec = JobSpec {
        priority: j.priority,
        resources: resources(format!("{field}.resources"), j.resources)?,
        walltime_seconds: j.walltime_seconds,
        site: (!j.site.is_empty()).then_some(j.site),
    };
    let change = if state == pb::SchedJobState::Queued {
        JobChange::Queued(spec)
    } else {
        if j.start_time_ms < 0 {
            return Err(InvalidField::new(
                format!("{field}.start_time_ms"),
                format!("{} is before 1970; use Unix milliseconds", j.start_time_ms),
            ));
        }
        JobChange::Active {
            spec,
            partition: non_empty(
                format!("{field}.partition_id"),
                j.partition_id,
                "the id of the partition the job is placed on",
            )?,
            start_ms: j.start_time_ms,
        }
    };
    Ok(crate::domain::JobUpdate { id, change })
}

impl TryFrom<pb::SessionRequest> for Batch {
    type Error = InvalidField;

    fn try_from(r: pb::SessionRequest) -> Result<Self, InvalidField> {
        if r.now_ms < 0 {
            return Err(InvalidField::new(
                "now_ms",
                format!("{} is before 1970; use Unix milliseconds", r.now_ms),
            ));
        }
        Ok(Batch {
            seq: r.seq,
            reset: r.reset,
            snapshot_done: r.snapshot_done,
            sites: r
                .sites
                .into_iter()
                .enumerate()
                .map(|(i, s)| site(&format!("sites[{i}]"), s))
                .collect::<Result<_, _>>()?,
            partitions: r
                .partitions
                .into_iter()
                .enumerate()
                .map(|(i, p)| partition(&format!("partitions[{i}]"), p))
                .collect::<Result<_, _>>()?,
            jobs: r
                .jobs
                .into_iter()
                .enumerate()
                .map(|(i, j)| job(&format!("jobs[{i}]"), j))
                .collect::<Result<_, _>>()?,
            now_ms: r.now_ms,
        })
    }
}

impl From<Plan> for pb::SessionResponse {
    fn from(plan: Plan) -> Self {
        pb::SessionResponse {
            based_on_seq: plan.based_on_seq,
            create_partitions: plan
                .create_partitions
                .into_iter()
                .map(|c| pb::CreatePartitionDecision {
                    partition_id: c.partition_id,
                    site: c.site,
                    flavor: c.flavor,
                })
                .collect(),
            start_jobs: plan
                .start_jobs
                .into_iter()
                .map(|s| pb::StartJobDecision {
                    job_id: s.job_id.0,
                    partition_id: s.partition_id,
                })
                .collect(),
            delete_partitions: plan
                .delete_partitions
                .into_iter()
                .map(|partition_id| pb::DeletePartitionDecision { partition_id })
                .collect(),
            pending_reasons: plan
                .pending
                .into_iter()
                .map(|p| pb::PendingReason {
                    job_id: p.job_id.0,
                    reason: p.reason,
                    unsatisfiable: p.unsatisfiable,
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap() -> Option<pb::Capacity> {
        Some(pb::Capacity {
            cpus: 4,
            memory_bytes: 1 << 30,
            gpus: 0,
            nodes: 1,
        })
    }

    #[test]
    fn converts_a_full_request() {
        let req = pb::SessionRequest {
            seq: 3,
            reset: true,
            snapshot_done: true,
            sites: vec![pb::SchedSite {
                name: "local".into(),
                healthy: true,
                flavors: vec![pb::Flavor {
                    name: "host".into(),
                    capacity: cap(),
                    max_partitions: 1,
                    available: true,
                    ..Default::default()
                }],
                elastic: false,
                idle_timeout_seconds: 0,
                health_message: String::new(),
            }],
            partitions: vec![pb::SchedPartition {
                partition_id: "p".into(),
                site: "local".into(),
                flavor: "host".into(),
                state: pb::SchedPartitionState::Ready as i32,
                capacity: cap(),
                queue: None,
            }],
            jobs: vec![
                pb::SchedJob {
                    job_id: 1,
                    state: pb::SchedJobState::Active as i32,
                    resources: cap(),
                    partition_id: "p".into(),
                    start_time_ms: 5,
                    ..Default::default()
                },
                pb::SchedJob {
                    job_id: 2,
                    state: pb::SchedJobState::Gone as i32,
                    ..Default::default()
                },
            ],
            now_ms: 10,
        };
        let batch = Batch::try_from(req).unwrap();
        assert_eq!(batch.sites[0].flavors[0].capacity.cpus, 4);
        assert_eq!(
            batch.partitions[0].spec.as_ref().unwrap().phase,
            PartitionPhase::Ready
        );
        assert!(matches!(
            batch.jobs[0].change,
            JobChange::Active { start_ms: 5, .. }
        ));
        assert_eq!(batch.jobs[1].change, JobChange::Gone);
    }

    #[test]
    fn names_the_bad_field() {
        let req = pb::SessionRequest {
            jobs: vec![pb::SchedJob {
                job_id: 1,
                state: pb::SchedJobState::Queued as i32,
                resources: None,
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(Batch::try_from(req).unwrap_err().field, "jobs[0].resources");
        let req = pb::SessionRequest {
            partitions: vec![pb::SchedPartition {
                partition_id: "p".into(),
                state: 0,
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(
            Batch::try_from(req).unwrap_err().field,
            "partitions[0].state"
        );
        let req = pb::SessionRequest {
            sites: vec![pb::SchedSite {
                name: "s".into(),
                flavors: vec![
                    pb::Flavor {
                        name: "a".into(),
                        capacity: cap(),
                        ..Default::default()
                    },
                    pb::Flavor {
                        name: "a".into(),
                        capacity: cap(),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(
            Batch::try_from(req).unwrap_err().field,
            "sites[0].flavors[1].name"
        );
    }

    #[test]
    fn active_job_needs_its_partition() {
        let req = pb::SessionRequest {
            jobs: vec![pb::SchedJob {
                job_id: 1,
                state: pb::SchedJobState::Active as i32,
                resources: cap(),
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(
            Batch::try_from(req).unwrap_err().field,
            "jobs[0].partition_id"
        );
    }
}

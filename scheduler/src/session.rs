//! One session with gantryd, without the network: batches in, plans out.
//! It keeps the view, knows whether the full picture is complete, and keeps
//! gantryd's clock running between messages.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::domain::{Batch, Plan};
use crate::error::{Result, SessionError};
use crate::policy::{PolicyConfig, pass};
use crate::view::View;

/// gantryd's clock, advanced by the local monotonic clock between messages.
#[derive(Debug, Clone)]
struct Clock {
    base_ms: i64,
    at: Instant,
    last_ms: i64,
}

impl Clock {
    fn new() -> Self {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        Self {
            base_ms: wall,
            at: Instant::now(),
            last_ms: 0,
        }
    }

    /// gantryd said it is `now_ms` (0: it did not say).
    fn observe(&mut self, now_ms: i64) {
        if now_ms > 0 {
            self.base_ms = now_ms;
            self.at = Instant::now();
        }
    }

    /// Now on gantryd's clock; never goes back.
    fn now(&mut self) -> i64 {
        let elapsed = i64::try_from(self.at.elapsed().as_millis()).unwrap_or(i64::MAX);
        self.last_ms = self.last_ms.max(self.base_ms.saturating_add(elapsed));
        self.last_ms
    }
}

/// The state of one Session stream.
#[derive(Debug)]
pub struct Session {
    view: View,
    config: PolicyConfig,
    clock: Clock,
    started: bool,
    complete: bool,
    last_seq: u64,
    passes: PassStats,
}

/// How long passes took, logged every [`PassStats::EVERY`] at info level.
#[derive(Debug)]
struct PassStats {
    since: std::time::Instant,
    count: u64,
    slowest_ms: f64,
    /// Queued jobs at the slowest pass.
    queued: usize,
}

impl PassStats {
    const EVERY: std::time::Duration = std::time::Duration::from_secs(10);

    fn new() -> Self {
        Self {
            since: std::time::Instant::now(),
            count: 0,
            slowest_ms: 0.0,
            queued: 0,
        }
    }

    fn record(&mut self, ms: f64, queued: usize) {
        self.count += 1;
        if ms >= self.slowest_ms {
            self.slowest_ms = ms;
            self.queued = queued;
        }
        if self.since.elapsed() >= Self::EVERY {
            tracing::info!(
                passes = self.count,
                slowest_ms = self.slowest_ms,
                queued = self.queued,
                "scheduling passes in the last 10 s"
            );
            *self = Self::new();
        }
    }
}

/// A plan to send, and whether another pass should follow at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// The plan; never empty.
    pub plan: Option<Plan>,
    /// The pass stopped at its size limit: plan again without waiting.
    pub more: bool,
}

impl Session {
    /// A session that has seen nothing yet.
    pub fn new(config: PolicyConfig) -> Self {
        Self {
            view: View::default(),
            config,
            clock: Clock::new(),
            started: false,
            complete: false,
            last_seq: 0,
            passes: PassStats::new(),
        }
    }

    /// Apply one message. The first must have `reset`; a `reset` forgets
    /// everything (also this scheduler's unconfirmed plans).
    pub fn apply(&mut self, batch: Batch) -> Result<()> {
        if batch.reset {
            self.view = View::default();
            self.started = true;
            self.complete = false;
        } else if !self.started {
            return Err(SessionError::NoReset);
        }
        self.clock.observe(batch.now_ms);
        self.last_seq = batch.seq;
        let done = batch.snapshot_done;
        self.view.apply(batch);
        self.complete |= done;
        Ok(())
    }

    /// Whether the full picture is complete (planning is allowed).
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// Whether passes should also run on a timer.
    pub fn needs_timer(&self) -> bool {
        self.complete && self.view.needs_timer()
    }

    /// The view, for inspection.
    pub fn view(&self) -> &View {
        &self.view
    }

    /// Run a pass now (nothing while the full picture is incomplete).
    pub fn plan(&mut self) -> Planned {
        if !self.complete {
            return Planned {
                plan: None,
                more: false,
            };
        }
        let now_ms = self.clock.now();
        let started = std::time::Instant::now();
        let out = pass(&mut self.view, now_ms, &self.config);
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        let queued = self.view.queued_count();
        if ms >= 50.0 {
            tracing::info!(queued, ms, "slow scheduling pass");
        } else {
            tracing::debug!(queued, ms, "scheduling pass");
        }
        self.passes.record(ms, queued);
        metrics::histogram!("gantry_scheduler_pass_seconds").record(ms / 1000.0);
        metrics::gauge!("gantry_scheduler_queued_jobs").set(queued as f64);
        let mut plan = out.plan;
        plan.based_on_seq = self.last_seq;
        Planned {
            plan: (!plan.is_empty()).then_some(plan),
            more: out.more,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{FlavorSpec, JobChange, JobId, JobSpec, JobUpdate, Resources, SiteSpec};

    fn site() -> SiteSpec {
        SiteSpec {
            name: "local".into(),
            healthy: true,
            flavors: vec![FlavorSpec {
                name: "host".into(),
                capacity: Resources {
                    cpus: 4,
                    memory_bytes: 1 << 30,
                    gpus: 0,
                    nodes: 1,
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

    fn queued(id: u64) -> JobUpdate {
        JobUpdate {
            id: JobId(id),
            change: JobChange::Queued(JobSpec {
                priority: 0,
                resources: Resources {
                    cpus: 1,
                    memory_bytes: 1 << 20,
                    gpus: 0,
                    nodes: 1,
                },
                walltime_seconds: 0,
                site: None,
            }),
        }
    }

    #[test]
    fn first_message_must_reset() {
        let mut s = Session::new(PolicyConfig::default());
        assert_eq!(s.apply(Batch::default()), Err(SessionError::NoReset));
    }

    #[test]
    fn no_plan_until_the_snapshot_is_done_then_based_on_last_seq() {
        let mut s = Session::new(PolicyConfig::default());
        s.apply(Batch {
            seq: 1,
            reset: true,
            sites: vec![site()],
            jobs: vec![queued(1)],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(s.plan().plan, None);
        s.apply(Batch {
            seq: 2,
            snapshot_done: true,
            ..Default::default()
        })
        .unwrap();
        let plan = s.plan().plan.expect("a plan");
        assert_eq!(plan.based_on_seq, 2);
        assert_eq!(plan.start_jobs.len(), 1);
        assert_eq!(plan.create_partitions.len(), 1);
        assert!(s.needs_timer());
    }

    #[test]
    fn reset_forgets_everything() {
        let mut s = Session::new(PolicyConfig::default());
        let full = Batch {
            seq: 1,
            reset: true,
            snapshot_done: true,
            sites: vec![site()],
            jobs: vec![queued(1)],
            ..Default::default()
        };
        s.apply(full.clone()).unwrap();
        assert!(s.plan().plan.is_some());
        s.apply(Batch { seq: 5, ..full }).unwrap();
        assert_eq!(s.view().job_count(), 1);
        let plan = s.plan().plan.expect("planned again after reset");
        assert_eq!(plan.start_jobs[0].job_id, JobId(1));
        assert_eq!(plan.based_on_seq, 5);
    }

    #[test]
    fn clock_follows_gantryd_and_never_goes_back() {
        let mut c = Clock::new();
        c.observe(1_000_000);
        let a = c.now();
        assert!((1_000_000..1_010_000).contains(&a));
        c.observe(500);
        assert_eq!(c.now(), a.max(c.now()));
        assert!(c.now() >= a);
    }
}

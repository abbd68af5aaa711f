//! Whether the gate's provider answers: said in the gate's own log (once per
//! reason) and served as the standard gRPC health service, `gantry.v1.Gate`
//! NOT_SERVING from a call that found the provider unavailable (Slurm's
//! controller down, a login node unreachable) until it answers again.

use std::sync::{Mutex, OnceLock};

use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// The service name the health service reports on.
pub const SERVICE: &str = "gantry.v1.Gate";

/// What the gate last said about its provider not answering.
#[derive(Debug, Default)]
struct Unanswered {
    /// The last reason said; empty while the provider answers.
    last: String,
}

impl Unanswered {
    /// Whether `reason` is news: a provider that keeps failing the same
    /// way is said once, not on every call that meets it.
    fn is_news(&mut self, reason: &str) -> bool {
        if self.last == reason {
            return false;
        }
        self.last = reason.to_string();
        true
    }

    /// The provider answered; whether it had been failing.
    fn answered(&mut self) -> bool {
        !std::mem::take(&mut self.last).is_empty()
    }
}

static UNANSWERED: Mutex<Unanswered> = Mutex::new(Unanswered {
    last: String::new(),
});
static REPORTER: OnceLock<HealthReporter> = OnceLock::new();

/// Serve the provider's health through `reporter` (SERVING until a call
/// finds it unavailable). A process serves one gate: the first reporter
/// installed is the one kept up to date.
pub(crate) async fn install(reporter: HealthReporter) {
    reporter
        .set_service_status(SERVICE, ServingStatus::Serving)
        .await;
    let _ = REPORTER.set(reporter);
}

/// A call found the provider unavailable for `reason`.
pub(crate) fn unavailable(reason: &str) {
    let news = UNANSWERED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .is_news(reason);
    if news {
        tracing::warn!(reason, "the provider does not answer");
        report(ServingStatus::NotServing);
    }
}

/// The provider answered (Describe succeeded).
pub(crate) fn answered() {
    let was_failing = UNANSWERED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .answered();
    if was_failing {
        tracing::info!("the provider answers again");
        report(ServingStatus::Serving);
    }
}

/// Ask `provider` for its description once, as the gate starts, so that a
/// provider it cannot reach (a wrong slurm.conf, a login node down) is
/// said in the gate's own log at once, not only when gantryd first asks.
pub(crate) async fn check_at_start<P: crate::Provider>(provider: &P) {
    match provider.describe().await {
        Ok(description) => {
            answered();
            tracing::info!(
                provider = %description.provider,
                flavors = description.flavors.len(),
                "the provider answers"
            );
        }
        Err(crate::GateError::Unavailable(reason)) => unavailable(&reason),
        Err(e) => tracing::warn!(error = %e, "the provider could not be described"),
    }
}

fn report(status: ServingStatus) {
    if let (Some(reporter), Ok(runtime)) = (REPORTER.get(), tokio::runtime::Handle::try_current()) {
        let reporter = reporter.clone();
        runtime.spawn(async move { reporter.set_service_status(SERVICE, status).await });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_provider_failing_the_same_way_is_said_once_until_it_answers() {
        let mut said = Unanswered::default();
        assert!(said.is_news("sinfo: slurmctld does not answer"));
        assert!(!said.is_news("sinfo: slurmctld does not answer"));
        assert!(said.is_news("ssh: connection refused"));
        assert!(said.answered());
        assert!(!said.answered(), "said once");
        assert!(
            said.is_news("ssh: connection refused"),
            "a new outage is news"
        );
    }
}

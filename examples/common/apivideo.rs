//! The session the api.video examples share (`quickstart` through a tower stack, `reqwest`
//! through reqwest-middleware): against the mock, one revocation of every token halfway; its
//! report and the rows of its summary.

use std::future::Future;
use std::io::Write;
use std::time::Duration;

use tower::BoxError;
use tower_bearer::{Stats, TokenCache};
use tower_bearer_mock::apivideo::MockServer;

use super::load::{self, Call, Finished, Plan, Progress, Revocations};
use super::summary::Summary;

/// The progress line: `  1.0s   54 ok  0 failed  token #1 (1.0 s left)  401s retried 0`.
const PROGRESS: Progress = Progress {
    ok_width: 3,
    time_left: true,
    refusals: "401s",
};

/// How it went.
#[derive(Debug, Default)]
pub(crate) struct Report {
    pub(crate) ok: u64,
    pub(crate) failed: u64,
    /// Videos created.
    pub(crate) created: usize,
    /// Of those, the ones that could not be deleted again (real API only).
    pub(crate) left_behind: Vec<String>,
    /// API-key logins and refresh-token grants the server saw (mock only).
    pub(crate) logins: u64,
    pub(crate) refreshes: u64,
    /// Requests sent again after a 401.
    pub(crate) retried: u64,
    /// Requests the server saw with an expired token (mock only): should be 0.
    pub(crate) expired_sent: u64,
    pub(crate) revoked: bool,
    /// Whether the server was the mock.
    mock: bool,
}

impl Report {
    /// Every call succeeded, and nothing was left behind.
    pub(crate) fn success(&self) -> bool {
        self.failed == 0 && self.ok > 0 && self.left_behind.is_empty()
    }

    /// The summary's rows: calls, the mock's logins and refresh grants, tokens, 401s, latency,
    /// and, on the mock, the calls it saw with an expired token.
    pub(crate) fn summary(&self, finished: &Finished, stats: &Stats) -> Summary {
        let mut summary = Summary::new(finished, 14);
        let (ok, failed) = (self.ok, self.failed);
        summary.row("requests", format_args!("{ok} ok, {failed} failed"));
        let (logins, refreshes) = (self.logins, self.refreshes);
        if self.mock {
            summary.row(
                "auth server",
                format_args!("{logins} logins with the API key, {refreshes} refresh-token grants"),
            );
        }
        let by_reason: Vec<String> = stats
            .refreshes_by_reason()
            .map(|(reason, counts)| format!("{reason} {}", counts.succeeded))
            .collect();
        let tokens = stats.total().succeeded;
        summary.row(
            "tokens",
            format_args!("{tokens} obtained ({})", by_reason.join(", ")),
        );
        let (unauthorized, retried) = (stats.unauthorized, self.retried);
        summary.row(
            "401s",
            format_args!("{unauthorized} answered, {retried} recovered by a retry"),
        );
        summary.latency(finished);
        if self.mock {
            let expired = self.expired_sent;
            summary.line(format_args!("sent with an expired token: {expired}"));
        }
        summary
    }
}

/// Sends `plan`'s calls, each one `call`, printing progress to `out`. With the mock `server`
/// (tokens that live `ttl`), it revokes every token once, when half the calls are done.
pub(crate) async fn session<C, F>(
    plan: Plan,
    call: C,
    cache: &TokenCache,
    server: Option<(&MockServer, Duration)>,
    out: &mut dyn Write,
) -> Result<(Report, Finished), BoxError>
where
    C: Fn(Call) -> F + Clone + Send + 'static,
    F: Future<Output = Result<(), String>> + Send + 'static,
{
    let mut revocations = match server {
        Some((_, ttl)) => Revocations::at(ttl, [plan.requests / 2]),
        None => Revocations::none(),
    };
    let revoke = |moment: &load::Moment| {
        let (server, _) = server?;
        if !revocations.due(moment) {
            return None;
        }
        server.revoke_all();
        Some("the server revoked every token".to_owned())
    };
    let finished = load::run(plan, call, &[cache], PROGRESS, revoke, out).await?;

    let mut report = Report {
        ok: finished.tally.ok(),
        failed: finished.tally.failed(),
        retried: cache.stats().retried,
        revoked: revocations.made > 0,
        mock: server.is_some(),
        ..Report::default()
    };
    if let Some((server, _)) = server {
        let counters = server.counters();
        report.logins = counters.api_key_logins;
        report.refreshes = counters.refreshes;
        report.expired_sent = counters.expired_token_requests;
    }
    Ok((report, finished))
}

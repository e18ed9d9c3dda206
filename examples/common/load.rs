//! The load a session example sends: tasks that pace their calls, a progress line each second,
//! and a watch through which the example acts while they run (revoking every token, say).

use std::future::Future;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior, interval, sleep};
use tower::BoxError;
use tower_bearer::{Stats, TokenCache};

use super::tally::{Tally, secs};

/// What a session sends.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plan {
    /// Calls, shared out among the tasks as evenly as they go.
    pub(crate) requests: usize,
    /// Concurrent tasks.
    pub(crate) tasks: usize,
    /// The pause between a task's calls; zero: back to back.
    pub(crate) pace: Duration,
}

impl Plan {
    /// The calls task `task` makes.
    pub(crate) fn calls_of(&self, task: usize) -> usize {
        self.requests / self.tasks + usize::from(task < self.requests % self.tasks)
    }
}

/// Which call: its task, and its place among the task's calls.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Call {
    pub(crate) task: usize,
    pub(crate) n: usize,
}

/// How an example's progress line reads:
/// `  1.0s   54 ok  0 failed  token #2 (1.0 s left)  401s retried 0`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Progress {
    /// The columns of the count of calls that succeeded.
    pub(crate) ok_width: usize,
    /// Whether it shows the time left on the current token.
    pub(crate) time_left: bool,
    /// What it calls a refusal of the token (`401s`, `UNAUTHENTICATED`).
    pub(crate) refusals: &'static str,
}

impl Progress {
    /// With several caches (one per key of a `KeyedAuthLayer`), each one's token, and their
    /// retries summed.
    fn line(&self, started: Instant, tally: &Tally, caches: &[&TokenCache]) -> String {
        let stats: Vec<Stats> = caches.iter().map(|cache| cache.stats()).collect();
        let time_left = match (self.time_left, stats.first().and_then(|s| s.expires_in)) {
            (true, left) => format!(" ({:.1} s left)", left.unwrap_or_default().as_secs_f64()),
            (false, _) => String::new(),
        };
        let noun = if stats.len() > 1 { "tokens" } else { "token" };
        let generations: Vec<String> = stats.iter().map(|s| format!("#{}", s.generation)).collect();
        format!(
            "{:>5.1}s  {:>width$} ok  {} failed  {noun} {}{time_left}  {} retried {}",
            secs(started),
            tally.ok(),
            tally.failed(),
            generations.join(" "),
            self.refusals,
            stats.iter().map(|s| s.retried).sum::<u64>(),
            width = self.ok_width,
        )
    }
}

/// What the watch sees, every 10 ms while the calls run.
pub(crate) struct Moment {
    pub(crate) elapsed: Duration,
    /// Calls ended, well or not.
    pub(crate) done: u64,
    /// The first cache's (the examples that watch have one).
    pub(crate) stats: Stats,
}

/// A session that has ended: how long it took, and what its calls recorded.
pub(crate) struct Finished {
    pub(crate) elapsed: Duration,
    pub(crate) tally: Arc<Tally>,
}

/// Sends `plan`'s calls, each one `call`, and prints to `out` a progress line each second and
/// one at the end, with the tokens of `caches` (at least one). `watch` is asked every 10 ms
/// whether something happened: its answer is printed with the time.
pub(crate) async fn run<C, F>(
    plan: Plan,
    call: C,
    caches: &[&TokenCache],
    progress: Progress,
    mut watch: impl FnMut(&Moment) -> Option<String>,
    out: &mut dyn Write,
) -> Result<Finished, BoxError>
where
    C: Fn(Call) -> F + Clone + Send + 'static,
    F: Future<Output = Result<(), String>> + Send + 'static,
{
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for task in 0..plan.tasks {
        tasks.spawn(paced(plan, task, call.clone(), tally.clone()));
    }

    let mut each_second = interval(Duration::from_secs(1));
    each_second.tick().await;
    let mut watch_tick = interval(Duration::from_millis(10));
    loop {
        tokio::select! {
            joined = tasks.join_next() => match joined {
                Some(result) => result?,
                None => break,
            },
            _ = each_second.tick() => {
                writeln!(out, "{}", progress.line(started, &tally, caches))?;
            }
            _ = watch_tick.tick() => {
                let moment = Moment {
                    elapsed: started.elapsed(),
                    done: tally.ok() + tally.failed(),
                    stats: caches[0].stats(),
                };
                if let Some(event) = watch(&moment) {
                    writeln!(out, "{:>5.1}s  {event}", secs(started))?;
                }
            }
        }
    }
    let elapsed = started.elapsed();
    writeln!(out, "{}", progress.line(started, &tally, caches))?;
    Ok(Finished { elapsed, tally })
}

/// One task's calls, one every `plan.pace`.
async fn paced<C, F>(plan: Plan, task: usize, call: C, tally: Arc<Tally>)
where
    C: Fn(Call) -> F,
    F: Future<Output = Result<(), String>>,
{
    let pace = plan.pace;
    if !pace.is_zero() {
        // Tasks start spread over one pace, so that calls arrive evenly.
        sleep(pace * task as u32 / plan.tasks as u32).await;
    }
    let mut ticks = interval(pace.max(Duration::from_nanos(1)));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    for n in 0..plan.calls_of(task) {
        if !pace.is_zero() {
            ticks.tick().await;
        }
        let started = Instant::now();
        let result = call(Call { task, n }).await;
        tally.record(started, result);
    }
}

/// When a mock revokes every token: as the calls done reach each mark, at the first moment
/// after it that the current token is well into its life.
pub(crate) struct Revocations {
    /// Calls done, one mark per revocation.
    marks: Vec<u64>,
    ttl: Duration,
    /// Revocations made.
    pub(crate) made: u64,
}

impl Revocations {
    /// Revocations of tokens that live `ttl`, one as the calls done reach each of `marks`.
    pub(crate) fn at(ttl: Duration, marks: impl IntoIterator<Item = usize>) -> Self {
        Revocations {
            marks: marks.into_iter().map(|mark| mark as u64).collect(),
            ttl,
            made: 0,
        }
    }

    /// None: a real server's tokens are not the example's to revoke.
    pub(crate) fn none() -> Self {
        Revocations::at(Duration::ZERO, [])
    }

    /// Whether to revoke now; if so, counts it made.
    pub(crate) fn due(&mut self, moment: &Moment) -> bool {
        let Some(&mark) = self.marks.get(self.made as usize) else {
            return false;
        };
        // A refusal replaces only a token past its minimum age (a tenth of its life), and a
        // revocation while a refresh is in flight is another story: revoke when the current
        // token is well into its life.
        let stats = &moment.stats;
        let settled = !stats.refreshing
            && stats.age.is_some_and(|age| age >= self.ttl / 4)
            && stats.expires_in.is_some_and(|left| left >= self.ttl / 3);
        let due = moment.done >= mark && settled;
        self.made += u64::from(due);
        due
    }
}

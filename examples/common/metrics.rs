//! The session examples' metrics: with `METRICS_ADDR=127.0.0.1:PORT`, Prometheus text at
//! `http://127.0.0.1:PORT/metrics` while they run, and for `METRICS_LINGER_S` seconds
//! (default 0) after the summary, for a scraper or a `curl` to read.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusBuilder;
use tower::BoxError;

/// The exporter serving, and how long it keeps serving after the session.
pub(crate) struct Exporter {
    addr: SocketAddr,
    linger: Duration,
}

/// Installs the Prometheus exporter if `METRICS_ADDR` says where; before any cache is built,
/// so that it hears their metrics' descriptions.
pub(crate) fn from_env() -> Result<Option<Exporter>, BoxError> {
    let Some(addr) = std::env::var("METRICS_ADDR").ok().filter(|a| !a.is_empty()) else {
        return Ok(None);
    };
    let addr: SocketAddr = addr
        .parse()
        .map_err(|error| format!("METRICS_ADDR={addr}: {error}"))?;
    let linger = match std::env::var("METRICS_LINGER_S") {
        Ok(seconds) if !seconds.is_empty() => seconds
            .parse()
            .map_err(|error| format!("METRICS_LINGER_S={seconds}: {error}"))?,
        _ => 0,
    };
    PrometheusBuilder::new()
        .with_http_listener(addr)
        // Refresh durations as a histogram (rather than a summary), in seconds.
        .set_buckets(&[
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ])?
        .install()
        .map_err(|error| format!("serving metrics at {addr}: {error}"))?;
    Ok(Some(Exporter {
        addr,
        linger: Duration::from_secs(linger),
    }))
}

impl Exporter {
    pub(crate) fn announce(&self, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(out, "metrics: http://{}/metrics", self.addr)
    }

    /// Keeps serving for `METRICS_LINGER_S` seconds.
    pub(crate) async fn linger(&self, out: &mut dyn Write) {
        if self.linger.is_zero() {
            return;
        }
        let _ = writeln!(
            out,
            "metrics: serving http://{}/metrics for {} s more",
            self.addr,
            self.linger.as_secs()
        );
        tokio::time::sleep(self.linger).await;
    }
}

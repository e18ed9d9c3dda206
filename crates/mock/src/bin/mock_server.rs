//! A mock api.video server to point any client (or curl) at.
//!
//! ```text
//! cargo run --example mock_server -- [--addr 127.0.0.1:8080] [--api-key KEY] [--ttl SECS]
//! ```
//!
//! Prints `listening on http://ADDR` once it accepts connections, then the API key it accepts
//! and two curl lines to try (log in, then list with the token), a blank line, and one line
//! per answered request (`METHOD PATH STATUS`), until Ctrl-C:
//!
//! ```text
//! listening on http://127.0.0.1:8080
//! api key: mock-api-key
//! log in:  curl -s -X POST http://127.0.0.1:8080/auth/api-key -H 'content-type: application/json' -d '{"apiKey":"mock-api-key"}'
//! list:    curl -s http://127.0.0.1:8080/videos -H "authorization: Bearer $ACCESS_TOKEN"
//!          (ACCESS_TOKEN: the login's "access_token")
//! ```

use std::fmt;
use std::future::Future;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tower_bearer_mock::apivideo::{DEFAULT_API_KEY, MockServer, RequestLog};

const USAGE: &str = "\
usage: mock_server [--addr ADDR] [--api-key KEY] [--ttl SECS]

Serves a mock api.video (POST /auth/api-key, POST /auth/refresh, GET and POST /videos)
until Ctrl-C.

options:
  --addr ADDR     address to listen on (default 127.0.0.1:0: a free port, printed at start)
  --api-key KEY   the API key to accept (default mock-api-key)
  --ttl SECS      access-token lifetime in seconds, fractions allowed (default 3600)
  -h, --help      print this help and exit
";

/// What the command line asks for. (`pub(crate)` items are used by `tests/mock_server.rs`,
/// which compiles this file as a module.)
#[derive(Debug, PartialEq)]
pub(crate) enum Command {
    Serve(Options),
    Help,
}

/// The server's settings; `None` means the mock's default.
#[derive(Default, PartialEq)]
pub(crate) struct Options {
    pub(crate) addr: Option<SocketAddr>,
    pub(crate) api_key: Option<String>,
    pub(crate) ttl: Option<Duration>,
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("addr", &self.addr)
            .field("api_key", &self.api_key.as_ref().map(|_| "[REDACTED]"))
            .field("ttl", &self.ttl)
            .finish()
    }
}

/// Parses the arguments after the program name. Accepts `--flag value` and `--flag=value`;
/// a repeated flag's last value wins.
pub(crate) fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut options = Options::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline_value) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                (flag.to_owned(), Some(value.to_owned()))
            }
            _ => (arg, None),
        };
        let mut value = || {
            inline_value
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--addr" => {
                let raw = value()?;
                let addr = raw.parse().map_err(|_| {
                    format!("--addr: '{raw}' is not an address like 127.0.0.1:8080")
                })?;
                options.addr = Some(addr);
            }
            "--api-key" => {
                let key = value()?;
                if key.is_empty() {
                    return Err("--api-key must not be empty".to_owned());
                }
                options.api_key = Some(key);
            }
            "--ttl" => options.ttl = Some(parse_ttl(&value()?)?),
            _ => return Err(format!("unknown argument '{flag}'")),
        }
    }
    Ok(Command::Serve(options))
}

fn parse_ttl(raw: &str) -> Result<Duration, String> {
    raw.parse::<f64>()
        .ok()
        .and_then(|seconds| Duration::try_from_secs_f64(seconds).ok())
        .ok_or_else(|| format!("--ttl: '{raw}' is not a number of seconds (such as 3600 or 1.5)"))
}

/// Runs a server with `options`, writing its lines to `out`, until `stop` resolves.
pub(crate) async fn serve<W>(
    options: Options,
    out: W,
    stop: impl Future<Output = ()>,
) -> io::Result<()>
where
    W: Write + Send + 'static,
{
    let out = Arc::new(Mutex::new(out));
    let log = Arc::clone(&out);
    let api_key = options
        .api_key
        .unwrap_or_else(|| DEFAULT_API_KEY.to_owned());
    let mut builder =
        MockServer::builder()
            .api_key(api_key.clone())
            .on_request(move |request: &RequestLog| {
                // A closed stdout is no reason to stop serving.
                let _ = write_line(
                    &log,
                    format_args!("{} {} {}", request.method, request.path, request.status),
                );
            });
    if let Some(addr) = options.addr {
        builder = builder.addr(addr);
    }
    if let Some(ttl) = options.ttl {
        builder = builder.token_ttl(ttl);
    }
    let server = builder.start().await?;
    let base = server.uri();
    write_line(&out, format_args!("listening on {base}"))?;
    // The key is printed on purpose: it is the mock's, and the curl lines need it.
    write_line(&out, format_args!("api key: {api_key}"))?;
    let login_body = serde_json::json!({ "apiKey": api_key }).to_string();
    write_line(
        &out,
        format_args!(
            "log in:  curl -s -X POST {base}/auth/api-key -H 'content-type: application/json' -d '{login_body}'"
        ),
    )?;
    write_line(
        &out,
        format_args!(
            "list:    curl -s {base}/videos -H \"authorization: Bearer $ACCESS_TOKEN\"\n         (ACCESS_TOKEN: the login's \"access_token\")\n"
        ),
    )?;
    stop.await;
    server.shutdown().await;
    Ok(())
}

/// One whole line, flushed at once, so a reader waiting on a pipe sees it immediately.
fn write_line<W: Write>(out: &Mutex<W>, line: fmt::Arguments<'_>) -> io::Result<()> {
    let mut out = out.lock().unwrap_or_else(PoisonError::into_inner);
    writeln!(out, "{line}")?;
    out.flush()
}

async fn ctrl_c() {
    if let Err(error) = tokio::signal::ctrl_c().await {
        eprintln!("mock_server: cannot listen for Ctrl-C ({error}); serving until killed");
        std::future::pending::<()>().await;
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match parse_args(std::env::args().skip(1)) {
        Ok(Command::Help) => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Ok(Command::Serve(options)) => match serve(options, io::stdout(), ctrl_c()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("mock_server: {error}");
                ExitCode::FAILURE
            }
        },
        Err(message) => {
            eprintln!("mock_server: {message}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

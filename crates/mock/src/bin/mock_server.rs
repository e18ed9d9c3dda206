//! A mock api.video server to point any client (or curl) at.
//!
//! ```text
//! cargo run -p tower-bearer-mock --bin mock_server -- [--addr 127.0.0.1:8080] [--api-key KEY] [--ttl SECS]
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

#[cfg(test)]
mod tests {
    //! The argument parser and the serving loop, in-process.

    use std::io::{self, Write};
    use std::net::SocketAddr;
    use std::time::Duration;

    use bytes::Bytes;
    use http::header::AUTHORIZATION;
    use http::{Request, StatusCode};
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    use serde_json::Value;
    use tokio::sync::mpsc;
    use tokio::time::timeout;

    use super::*;

    /// How long anything the server does may take before the test fails rather than hangs.
    const PROMPTLY: Duration = Duration::from_secs(5);

    fn args(line: &str) -> Result<Command, String> {
        parse_args(line.split_whitespace().map(str::to_owned))
    }

    #[test]
    fn arguments_are_parsed_and_the_api_key_is_not_printed() {
        assert_eq!(args(""), Ok(Command::Serve(Options::default())));
        assert_eq!(args("--help"), Ok(Command::Help));
        assert_eq!(args("--ttl 5 -h"), Ok(Command::Help));
        assert_eq!(
            args("--addr 127.0.0.1:8080 --api-key k --ttl=1.5"),
            Ok(Command::Serve(Options {
                addr: Some("127.0.0.1:8080".parse().unwrap()),
                api_key: Some("k".to_owned()),
                ttl: Some(Duration::from_millis(1500)),
            }))
        );
        for (bad, says) in [
            ("--addr", "--addr needs a value"),
            ("--addr localhost", "not an address"),
            ("--ttl -1", "not a number of seconds"),
            ("--ttl soon", "not a number of seconds"),
            ("--api-key=", "must not be empty"),
            ("--port 80", "unknown argument '--port'"),
            ("serve", "unknown argument 'serve'"),
        ] {
            let error = args(bad).unwrap_err();
            assert!(error.contains(says), "{bad}: {error}");
        }
        let debug = format!("{:?}", args("--api-key hunter2").unwrap());
        assert!(!debug.contains("hunter2"), "{debug}");
    }

    /// Forwards each complete line written to it.
    struct Lines {
        pending: Vec<u8>,
        lines: mpsc::UnboundedSender<String>,
    }

    impl Write for Lines {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.pending.extend_from_slice(buf);
            while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                let _ = self
                    .lines
                    .send(String::from_utf8_lossy(&line[..end]).into_owned());
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn it_prints_listening_then_one_line_per_request() {
        let (lines, mut read) = mpsc::unbounded_channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let options = match args("--api-key example-key --ttl 60").unwrap() {
            Command::Serve(options) => options,
            Command::Help => unreachable!(),
        };
        let serving = tokio::spawn(serve(
            options,
            Lines {
                pending: Vec::new(),
                lines,
            },
            async {
                let _ = stopped.await;
            },
        ));
        let mut next_line = async || timeout(PROMPTLY, read.recv()).await.unwrap().unwrap();

        let first = next_line().await;
        let addr: SocketAddr = first
            .strip_prefix("listening on http://")
            .expect(&first)
            .parse()
            .unwrap();
        // Then what a curl user needs: the key, a login and a list, and a blank line.
        assert_eq!(next_line().await, "api key: example-key");
        let login = next_line().await;
        assert!(
            login.contains(&format!("curl -s -X POST http://{addr}/auth/api-key"))
                && login.contains(r#"-d '{"apiKey":"example-key"}'"#),
            "{login}"
        );
        let list = next_line().await;
        assert!(
            list.contains(&format!("curl -s http://{addr}/videos"))
                && list.contains("Bearer $ACCESS_TOKEN"),
            "{list}"
        );
        assert!(next_line().await.contains("access_token"));
        assert_eq!(next_line().await, "");
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let login = Request::post(format!("http://{addr}/auth/api-key"))
            .body(Full::from(r#"{"apiKey":"example-key"}"#))
            .unwrap();
        let response = client.request(login).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value =
            serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes())
                .unwrap();
        assert_eq!(body["expires_in"], 60);
        let token = body["access_token"].as_str().unwrap();
        let list = Request::get(format!("http://{addr}/videos?pageSize=1"))
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .body(Full::default())
            .unwrap();
        assert_eq!(client.request(list).await.unwrap().status(), StatusCode::OK);

        assert_eq!(next_line().await, "POST /auth/api-key 200 OK");
        assert_eq!(next_line().await, "GET /videos 200 OK");
        stop.send(()).unwrap();
        timeout(PROMPTLY, serving).await.unwrap().unwrap().unwrap();
    }
}

//! A hyper server on 127.0.0.1 that gives every request the same answer, however hostile:
//! for the providers' hostile-answer tables.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the server answers, to every request.
#[derive(Clone)]
pub enum Answer {
    /// This status, these headers, this body.
    Full(StatusCode, Vec<(&'static str, String)>, Bytes),
    /// 200 with a `Content-Length` of twice `body`, then `body`, then the connection closes
    /// (written below HTTP, on the socket).
    Truncated(&'static str),
    /// Reads the request, then never answers.
    Silent,
}

impl Answer {
    /// This status and body, of this content type.
    pub fn full(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Self {
        Answer::Full(
            status,
            vec![(CONTENT_TYPE.as_str(), content_type.to_owned())],
            body.into(),
        )
    }

    /// The same answer with one more header.
    pub fn header(mut self, name: &'static str, value: &str) -> Self {
        if let Answer::Full(_, headers, _) = &mut self {
            headers.push((name, value.to_owned()));
        }
        self
    }
}

/// A hyper server on 127.0.0.1 answering every request with `answer`.
pub struct AnsweringServer {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
}

impl AnsweringServer {
    pub async fn start(answer: Answer) -> AnsweringServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let counted = requests.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (answer, counted) = (answer.clone(), counted.clone());
                if let Answer::Truncated(body) = answer {
                    // Below HTTP: hyper will not send a head whose body it then breaks.
                    tokio::spawn(truncate(stream, body, counted));
                    continue;
                }
                let handler = service_fn(move |request: Request<Incoming>| {
                    let (answer, counted) = (answer.clone(), counted.clone());
                    async move {
                        // The whole request, as a server would, before answering.
                        let _ = request.into_body().collect().await;
                        counted.fetch_add(1, Ordering::SeqCst);
                        respond(answer).await
                    }
                });
                tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), handler));
            }
        });
        AnsweringServer { addr, requests }
    }

    /// `http://127.0.0.1:PORT/`.
    pub fn uri(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// How many requests it has answered (or, for [`Answer::Silent`], read).
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// Reads one request, answers 200 with a `Content-Length` of twice `body`, sends `body`, and
/// closes the connection.
async fn truncate(mut stream: TcpStream, body: &'static str, counted: Arc<AtomicUsize>) {
    let mut request = Vec::new();
    let mut buf = [0; 4096];
    // The head, then as much body as it announces.
    let (head_end, length) = loop {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "the client hung up");
        request.extend_from_slice(&buf[..n]);
        if let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&request[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse::<usize>().unwrap());
            break (end + 4, length);
        }
    };
    while request.len() < head_end + length {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "the client hung up");
        request.extend_from_slice(&buf[..n]);
    }
    counted.fetch_add(1, Ordering::SeqCst);
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len() * 2
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body.as_bytes()).await.unwrap();
    stream.shutdown().await.unwrap();
}

type ServerBody = BoxBody<Bytes, std::io::Error>;

async fn respond(answer: Answer) -> Result<Response<ServerBody>, Infallible> {
    let response = match answer {
        Answer::Full(status, headers, body) => {
            let mut response = Response::builder().status(status);
            for (name, value) in headers {
                response = response.header(name, value);
            }
            response.body(Full::new(body).map_err(|never| match never {}).boxed())
        }
        Answer::Truncated(_) => unreachable!("answered below HTTP"),
        Answer::Silent => std::future::pending().await,
    };
    Ok(response.unwrap())
}

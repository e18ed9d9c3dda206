//! The server of the loopback benches (`loopback.rs`, `reqwest.rs`): hyper on 127.0.0.1, on a
//! thread and a current-thread runtime of its own, checking the token of every request as an
//! API would.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::thread;

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// A hyper server on 127.0.0.1 that answers 200 to a request carrying the expected token
/// (or none), and 401 otherwise. It stops when dropped.
pub struct Server {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Server {
    pub fn start(expected: HeaderValue) -> Server {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a server runtime");
            runtime.block_on(async move {
                let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                let accept = async {
                    loop {
                        let (stream, _) = listener.accept().await.expect("a connection");
                        stream.set_nodelay(true).unwrap();
                        let expected = expected.clone();
                        let service = hyper::service::service_fn(move |request| {
                            let expected = expected.clone();
                            async move { Ok::<_, Infallible>(answer(&request, &expected)) }
                        });
                        tokio::spawn(
                            hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service),
                        );
                    }
                };
                tokio::select! {
                    _ = accept => {}
                    _ = stopped => {}
                }
            });
        });
        Server {
            addr: addr_rx.recv().expect("the server's address"),
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

fn answer(request: &Request<Incoming>, expected: &HeaderValue) -> Response<Empty<Bytes>> {
    let status = match request.headers().get(AUTHORIZATION) {
        Some(value) if value != expected => StatusCode::UNAUTHORIZED,
        _ => StatusCode::OK,
    };
    let mut response = Response::new(Empty::new());
    *response.status_mut() = status;
    response
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop.take().map(|stop| stop.send(()));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

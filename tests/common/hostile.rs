//! The hostile-answer tables' harness: rows of what a token endpoint answers and what the
//! provider and the cache must make of it, each row against a server of its own.

use std::error::Error;
use std::future::Future;

use http::StatusCode;
use tower_bearer::{Token, TokenError};

use super::answering_server::Answer;

/// What a row must give.
pub enum Expect {
    /// A `TokenError` whose provider error's `Debug` starts with this.
    Error(&'static str),
    /// A token, cached, that passes this check.
    Token(&'static str, fn(&Token) -> bool),
}

pub struct Row {
    pub name: &'static str,
    pub answer: Answer,
    pub expect: Expect,
}

pub fn ok_json(body: impl Into<String>) -> Answer {
    Answer::full(StatusCode::OK, "application/json", body.into())
}

/// The provider's error, an `E`, in a cache error's chain.
pub fn provider_error<E: Error + 'static>(error: &TokenError) -> &E {
    let mut next: Option<&(dyn Error + 'static)> = error.refresher_error().map(|e| e as _);
    while let Some(error) = next {
        if let Some(found) = error.downcast_ref::<E>() {
            return found;
        }
        next = error.source();
    }
    panic!("no {} in {error:?}", std::any::type_name::<E>());
}

/// Runs every row at once (each has its own server, and a silent one waits out a timeout),
/// and prints the table of their outcomes under `header`.
pub async fn run_table<F, Fut>(rows: Vec<Row>, header: &str, run: F)
where
    F: Fn(Row) -> Fut,
    Fut: Future<Output = String> + Send + 'static,
{
    let count = rows.len();
    let mut table = vec![header.to_owned(), "| --- | --- |".to_owned()];
    let runs: Vec<_> = rows.into_iter().map(|row| tokio::spawn(run(row))).collect();
    for run in runs {
        table.push(run.await.expect("no panic"));
    }
    println!("{count} rows\n{}", table.join("\n"));
}

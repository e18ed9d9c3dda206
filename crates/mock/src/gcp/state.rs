//! What a running mock metadata server holds: its service accounts, the tokens it has handed
//! out (kept as GCP's metadata server keeps them), its faults and its counters.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use super::{Counters, Fault, SeenTokenRequest};
use crate::server::rng::{BASE64URL, SplitMix64};

/// A service account the server knows.
pub(super) struct Account {
    pub(super) email: String,
    pub(super) scopes: Vec<String>,
}

/// A token handed out, and until when it is handed out again.
struct Issued {
    access_token: String,
    expires_at: Instant,
}

/// A token answer: the token, and its lifetime left in whole seconds.
pub(super) struct Answer {
    pub(super) access_token: String,
    pub(super) expires_in: u64,
}

/// Everything that changes while the server runs, behind one lock (never held across an
/// `.await`).
pub(super) struct State {
    /// The first is `default`.
    pub(super) accounts: Vec<Account>,
    pub(super) token_ttl: Duration,
    pub(super) renew_before: Duration,
    /// Keyed by account email and the scopes asked, as given.
    issued: HashMap<(String, String), Issued>,
    faults: VecDeque<(u32, Fault)>,
    pub(super) counters: Counters,
    pub(super) per_account: HashMap<String, u64>,
    pub(super) seen: Vec<SeenTokenRequest>,
    /// The token last handed out for each account email, whatever the scopes.
    last_tokens: HashMap<String, String>,
    rng: SplitMix64,
}

impl State {
    pub(super) fn new(accounts: Vec<Account>, token_ttl: Duration, renew_before: Duration) -> Self {
        State {
            accounts,
            token_ttl,
            renew_before,
            issued: HashMap::new(),
            faults: VecDeque::new(),
            counters: Counters::default(),
            per_account: HashMap::new(),
            seen: Vec::new(),
            last_tokens: HashMap::new(),
            rng: SplitMix64::from_entropy(),
        }
    }

    /// The account a path names: `default` (the first) or an email, in any case (GCP
    /// compares emails without case).
    pub(super) fn account(&self, name: &str) -> Option<&Account> {
        if name == "default" {
            return self.accounts.first();
        }
        self.accounts
            .iter()
            .find(|account| account.email.eq_ignore_ascii_case(name))
    }

    pub(super) fn script(&mut self, count: u32, fault: Fault) {
        if count > 0 {
            self.faults.push_back((count, fault));
        }
    }

    /// The fault the next token request meets, if any.
    pub(super) fn next_fault(&mut self) -> Option<Fault> {
        let (remaining, fault) = self.faults.front_mut()?;
        let fault = *fault;
        *remaining -= 1;
        if *remaining == 0 {
            self.faults.pop_front();
        }
        self.counters.faults_injected += 1;
        Some(fault)
    }

    /// The token for `email` and `scopes` as GCP's metadata server hands it out: the one
    /// issued before, while more than `renew_before` of its life is left, else a new one.
    pub(super) fn token(&mut self, email: &str, scopes: &str) -> Answer {
        let now = Instant::now();
        let key = (email.to_owned(), scopes.to_owned());
        let renew_before = self.renew_before;
        let reusable = self
            .issued
            .get(&key)
            .filter(|issued| issued.expires_at.saturating_duration_since(now) > renew_before);
        let answer = match reusable {
            Some(issued) => {
                self.counters.tokens_reused += 1;
                Answer {
                    access_token: issued.access_token.clone(),
                    expires_in: issued.expires_at.saturating_duration_since(now).as_secs(),
                }
            }
            None => {
                let mut access_token = String::from("ya29.mock.");
                self.rng.push_chars(&mut access_token, BASE64URL, 160);
                self.issued.insert(
                    key,
                    Issued {
                        access_token: access_token.clone(),
                        expires_at: now + self.token_ttl,
                    },
                );
                self.counters.tokens_issued += 1;
                Answer {
                    access_token,
                    expires_in: self.token_ttl.as_secs(),
                }
            }
        };
        self.last_tokens
            .insert(email.to_owned(), answer.access_token.clone());
        answer
    }

    /// The token last handed out for `email`, any scopes.
    pub(super) fn last_token(&self, email: &str) -> Option<String> {
        self.last_tokens.get(email).cloned()
    }
}

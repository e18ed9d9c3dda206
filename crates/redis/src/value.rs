//! What a `RedisStore` keeps under its token key: the token's parts, in the clear or sealed.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;
use zeroize::Zeroizing;

use crate::RedisStore;
use tower_bearer::store::{SharedToken, StoreError};
use tower_bearer::{Token, TokenType};

/// A value prefix: the stored value is in the clear.
const PLAIN: &[u8] = b"p1";
/// A value prefix: the stored value is a nonce and an XChaCha20-Poly1305 ciphertext.
const SEALED: &[u8] = b"x1";
/// The last byte of a stored value: the token's type.
const BEARER: u8 = 0;
pub(super) const BOUND: u8 = 1;

pub(super) fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl RedisStore {
    pub(super) fn encode(&self, token: &Token, generation: u64) -> Result<Vec<u8>, StoreError> {
        let now = wall_ms();
        let expires = token.expiry().map_or(0, |at| {
            let left = at.saturating_duration_since(Instant::now());
            now.saturating_add(left.as_millis() as u64).max(1)
        });
        let access = token.expose_access_token().as_bytes();
        let refresh = token.expose_refresh_token().map(str::as_bytes);
        let mut plain = Vec::with_capacity(32 + access.len() + refresh.map_or(0, |r| r.len()));
        plain.extend_from_slice(&expires.to_be_bytes());
        plain.extend_from_slice(&now.to_be_bytes());
        plain.extend_from_slice(&(access.len() as u32).to_be_bytes());
        plain.extend_from_slice(access);
        match refresh {
            Some(refresh) => {
                plain.extend_from_slice(&(refresh.len() as u32).to_be_bytes());
                plain.extend_from_slice(refresh);
            }
            None => plain.extend_from_slice(&u32::MAX.to_be_bytes()),
        }
        // Last, so that a value written before token types were stored reads as a bearer
        // token.
        plain.push(match token.token_type() {
            TokenType::Bearer => BEARER,
            _ => {
                self.check_binding_key(token)?;
                BOUND
            }
        });
        self.seal(plain, generation)
    }

    /// A bound token is only worth sharing with replicas that hold its key: the store must
    /// have been given that key.
    fn check_binding_key(&self, token: &Token) -> Result<(), StoreError> {
        let ours = self.inner.binding_key.as_ref().map(|key| key.id());
        let its = token.binding_key().map(|key| key.id());
        if ours.is_some() && ours == its {
            return Ok(());
        }
        Err(StoreError::misconfigured(
            "a token is bound to a key this store was not given: build the RedisStore with \
             .binding_key(key), the same key in every replica",
        ))
    }

    #[cfg(feature = "encryption")]
    fn seal(&self, plain: Vec<u8>, generation: u64) -> Result<Vec<u8>, StoreError> {
        use chacha20poly1305::aead::{Aead, AeadCore, OsRng, Payload};
        let mut plain = Zeroizing::new(plain);
        let Some(cipher) = &self.inner.cipher else {
            let mut out = PLAIN.to_vec();
            out.append(&mut plain);
            return Ok(out);
        };
        let nonce = chacha20poly1305::XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let aad = self.aad(generation);
        let sealed = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: &plain,
                    aad: &aad,
                },
            )
            .map_err(|_| StoreError::msg("the token could not be encrypted"))?;
        let mut out = SEALED.to_vec();
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    #[cfg(not(feature = "encryption"))]
    fn seal(&self, mut plain: Vec<u8>, _generation: u64) -> Result<Vec<u8>, StoreError> {
        let mut out = PLAIN.to_vec();
        out.append(&mut plain);
        Ok(out)
    }

    /// Binds a sealed value to its key and generation: it cannot be replayed under another
    /// account or as another generation.
    #[cfg(feature = "encryption")]
    fn aad(&self, generation: u64) -> Vec<u8> {
        let mut aad = self.inner.keys.token.as_bytes().to_vec();
        aad.extend_from_slice(&generation.to_be_bytes());
        aad
    }

    #[cfg(feature = "encryption")]
    fn open(&self, stored: &[u8], generation: u64) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        use chacha20poly1305::aead::{Aead, Payload};
        match (&self.inner.cipher, stored.split_at_checked(2)) {
            (None, Some((PLAIN, plain))) => Ok(Zeroizing::new(plain.to_vec())),
            (Some(cipher), Some((SEALED, sealed))) if sealed.len() > 24 => {
                let (nonce, ciphertext) = sealed.split_at(24);
                cipher
                    .decrypt(
                        nonce.into(),
                        Payload {
                            msg: ciphertext,
                            aad: &self.aad(generation),
                        },
                    )
                    .map(Zeroizing::new)
                    .map_err(|_| {
                        StoreError::msg(
                            "the stored token could not be decrypted: do all replicas have the same encryption key?",
                        )
                    })
            }
            (Some(_), Some((PLAIN, _))) => Err(StoreError::msg(
                "the stored token is not encrypted, but this replica has an encryption key",
            )),
            (None, Some((SEALED, _))) => Err(StoreError::msg(
                "the stored token is encrypted, but this replica has no encryption key",
            )),
            _ => Err(StoreError::msg("the stored token is in an unknown format")),
        }
    }

    #[cfg(not(feature = "encryption"))]
    fn open(&self, stored: &[u8], _generation: u64) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        match stored.split_at_checked(2) {
            Some((PLAIN, plain)) => Ok(Zeroizing::new(plain.to_vec())),
            Some((SEALED, _)) => Err(StoreError::msg(
                "the stored token is encrypted, and this build has no `encryption` feature",
            )),
            _ => Err(StoreError::msg("the stored token is in an unknown format")),
        }
    }

    pub(super) fn decode(&self, stored: &[u8], generation: u64) -> Result<SharedToken, StoreError> {
        let plain = self.open(stored, generation)?;
        let malformed = || StoreError::msg("the stored token is malformed");
        let mut rest = &plain[..];
        let mut take = |n: usize| -> Result<&[u8], StoreError> {
            let (head, tail) = rest.split_at_checked(n).ok_or_else(malformed)?;
            rest = tail;
            Ok(head)
        };
        let u64_at = |b: &[u8]| u64::from_be_bytes(b.try_into().expect("8 bytes"));
        let u32_at = |b: &[u8]| u32::from_be_bytes(b.try_into().expect("4 bytes"));
        let expires = u64_at(take(8)?);
        let issued = u64_at(take(8)?);
        let access_len = u32_at(take(4)?) as usize;
        let access = std::str::from_utf8(take(access_len)?).map_err(|_| malformed())?;
        let refresh_len = u32_at(take(4)?);
        let refresh = match refresh_len {
            u32::MAX => None,
            len => Some(std::str::from_utf8(take(len as usize)?).map_err(|_| malformed())?),
        };
        let mut token = match rest.first() {
            None | Some(&BEARER) => Token::bearer(access).map_err(|_| malformed())?,
            Some(&BOUND) => self.bound_token(access)?,
            Some(_) => return Err(malformed()),
        };
        if let Some(refresh) = refresh {
            token = token.with_refresh_token(refresh);
        }
        let now = Instant::now();
        let wall = wall_ms();
        if expires != 0 {
            // Less the allowance (at most a tenth of the lifetime, so that a short-lived token
            // is still worth sharing): a clock behind the publisher's must not overrun it.
            let lifetime = Duration::from_millis(expires.saturating_sub(issued));
            let skew = self.inner.skew.min(lifetime / 10);
            let left = Duration::from_millis(expires.saturating_sub(wall)).saturating_sub(skew);
            token = token.expires_at(now + left);
        }
        let age = Duration::from_millis(wall.saturating_sub(issued));
        let obtained = now.checked_sub(age).unwrap_or(now);
        Ok(SharedToken {
            token,
            generation,
            obtained,
        })
    }
}

impl RedisStore {
    /// A stored bound token, bound to this store's key.
    fn bound_token(&self, access: &str) -> Result<Token, StoreError> {
        let Some(key) = &self.inner.binding_key else {
            return Err(StoreError::misconfigured(
                "the stored token is bound to a key, and this store has none: build the \
                 RedisStore with .binding_key(key), the same key in every replica",
            ));
        };
        Token::bound(access, &**key).map_err(|_| StoreError::msg("the stored token is malformed"))
    }
}

//! `security.basicAuth`: HTTP Basic credentials (RFC 7617) checked against configured users.
//!
//! bcrypt and argon2 are slow on purpose, so checking them on the runtime threads would stall
//! every connection; they run on the blocking pool, two at a time process-wide, and a success
//! is remembered for a while because browsers resend the same header on every request.

use crate::config::{BasicAuth, Password};
use crate::router::glob_match_case;
use argon2::{Argon2, PasswordHash, PasswordVerifier};
use base64::Engine;
use base64::engine::general_purpose::STANDARD_PAD_INDIFFERENT;
use http::HeaderValue;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// Longer Authorization values are refused unread (no real credentials come near it), which
/// also bounds what the success cache holds.
const MAX_HEADER_LEN: usize = 4096;
const CACHE_ENTRIES: usize = 1024;
const CACHE_TTL: Duration = Duration::from_secs(300);

/// Hash verifications running at once across all routes; a flood of wrong passwords then
/// costs at most two cores.
static HASHING: Semaphore = Semaphore::const_new(2);

const FALLBACK_CHALLENGE: &str = "Basic realm=\"Restricted\", charset=\"UTF-8\"";

#[derive(Clone)]
enum Secret {
    Plain(Arc<[u8]>),
    Bcrypt(Arc<str>),
    Argon2(Arc<PasswordHash>),
    /// A hash that does not parse (config loading should have refused it): matches nothing.
    Unusable,
}

pub struct BasicAuthCheck {
    users: HashMap<Box<[u8]>, Secret>,
    /// Checked, and its answer ignored, when the username is unknown, so that refusing an
    /// unknown user takes as long as refusing a known one with a wrong password. It is a
    /// configured user's own secret, so its cost matches exactly; with users of mixed kinds
    /// only those of the decoy's kind are hidden this way.
    decoy: Secret,
    exclude_paths: Vec<String>,
    challenge: HeaderValue,
    /// Authorization values that passed a hash check, and when.
    verified: Mutex<HashMap<Box<[u8]>, Instant>>,
    hash_checks: AtomicU64,
}

impl BasicAuthCheck {
    pub fn new(config: &BasicAuth) -> BasicAuthCheck {
        let users: HashMap<Box<[u8]>, Secret> = config
            .users
            .iter()
            .map(|u| (u.username.as_bytes().into(), Secret::new(&u.password)))
            .collect();
        let decoy = config
            .users
            .iter()
            .map(|u| Secret::new(&u.password))
            .find(Secret::is_hashed)
            .or_else(|| config.users.first().map(|u| Secret::new(&u.password)))
            .unwrap_or(Secret::Unusable);
        let challenge = format!("Basic realm=\"{}\", charset=\"UTF-8\"", config.realm);
        BasicAuthCheck {
            users,
            decoy,
            exclude_paths: config.exclude_paths.clone(),
            challenge: HeaderValue::from_str(&challenge)
                .unwrap_or_else(|_| HeaderValue::from_static(FALLBACK_CHALLENGE)),
            verified: Mutex::new(HashMap::new()),
            hash_checks: AtomicU64::new(0),
        }
    }

    /// Paths in excludePaths need no credentials (case-sensitive globs, as match.path).
    pub fn exempt(&self, path: &str) -> bool {
        self.exclude_paths.iter().any(|p| glob_match_case(p, path))
    }

    /// Whether the Authorization header carries a configured user's credentials.
    pub async fn verify(&self, authorization: Option<&HeaderValue>) -> bool {
        self.verify_at(authorization, Instant::now()).await
    }

    /// The WWW-Authenticate value: `Basic realm="<realm>", charset="UTF-8"`.
    pub fn challenge(&self) -> HeaderValue {
        self.challenge.clone()
    }

    async fn verify_at(&self, authorization: Option<&HeaderValue>, now: Instant) -> bool {
        let Some(raw) = authorization.map(HeaderValue::as_bytes) else {
            return false;
        };
        if raw.len() > MAX_HEADER_LEN {
            return false;
        }
        if self.recently_verified(raw, now) {
            return true;
        }
        let Some(decoded) = decode(raw) else {
            return false;
        };
        let mut parts = decoded.splitn(2, |&b| b == b':');
        let (Some(user), Some(password)) = (parts.next(), parts.next()) else {
            return false;
        };
        let (secret, known) = match self.users.get(user) {
            Some(secret) => (secret, true),
            None => (&self.decoy, false),
        };
        let matched = match secret {
            Secret::Plain(expected) => ct_eq(password, expected),
            Secret::Bcrypt(_) | Secret::Argon2(_) => {
                let matched = self.hash_check(secret.clone(), password.to_vec()).await;
                if matched && known {
                    self.remember(raw, now);
                }
                matched
            }
            Secret::Unusable => false,
        };
        matched && known
    }

    async fn hash_check(&self, secret: Secret, password: Vec<u8>) -> bool {
        let Ok(permit) = HASHING.acquire().await else {
            return false;
        };
        self.hash_checks.fetch_add(1, Ordering::Relaxed);
        // The permit moves into the job so it is held until the hashing ends, even when the
        // request that asked is dropped meanwhile.
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            secret.matches_hash(&password)
        })
        .await
        .unwrap_or(false)
    }

    fn recently_verified(&self, raw: &[u8], now: Instant) -> bool {
        let mut cache = self.cache();
        match cache.get(raw) {
            Some(&at) if now.saturating_duration_since(at) < CACHE_TTL => true,
            Some(_) => {
                cache.remove(raw);
                false
            }
            None => false,
        }
    }

    fn remember(&self, raw: &[u8], now: Instant) {
        let mut cache = self.cache();
        if cache.len() >= CACHE_ENTRIES && !cache.contains_key(raw) {
            cache.retain(|_, &mut at| now.saturating_duration_since(at) < CACHE_TTL);
            if cache.len() >= CACHE_ENTRIES {
                let oldest = cache
                    .iter()
                    .min_by_key(|&(_, &at)| at)
                    .map(|(k, _)| k.clone());
                if let Some(oldest) = oldest {
                    cache.remove(&oldest);
                }
            }
        }
        cache.insert(raw.into(), now);
    }

    fn cache(&self) -> MutexGuard<'_, HashMap<Box<[u8]>, Instant>> {
        self.verified.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Secret {
    fn new(password: &Password) -> Secret {
        match password {
            Password::Plain(p) => Secret::Plain(p.as_bytes().into()),
            Password::Bcrypt(h) => Secret::Bcrypt(h.as_str().into()),
            Password::Argon2(h) => match PasswordHash::new(h) {
                Ok(hash) => Secret::Argon2(Arc::new(hash)),
                Err(_) => Secret::Unusable,
            },
        }
    }

    fn is_hashed(&self) -> bool {
        matches!(self, Secret::Bcrypt(_) | Secret::Argon2(_))
    }

    fn matches_hash(&self, password: &[u8]) -> bool {
        match self {
            Secret::Bcrypt(hash) => bcrypt::verify(password, hash).unwrap_or(false),
            Secret::Argon2(hash) => Argon2::default()
                .verify_password(password, hash.as_ref())
                .is_ok(),
            Secret::Plain(_) | Secret::Unusable => false,
        }
    }
}

/// The bytes after `Basic `, base64-decoded. The scheme is case-insensitive (RFC 9110 §11.1).
fn decode(raw: &[u8]) -> Option<Vec<u8>> {
    let raw = raw.trim_ascii();
    let space = raw.iter().position(|&b| b == b' ' || b == b'\t')?;
    let (scheme, rest) = raw.split_at_checked(space)?;
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return None;
    }
    STANDARD_PAD_INDIFFERENT
        .decode(rest.trim_ascii_start())
        .ok()
}

/// Equality whose time depends only on the length of `given` (the client's bytes), so it
/// tells nothing about `expected`: no early exit on the first difference.
fn ct_eq(given: &[u8], expected: &[u8]) -> bool {
    let mut diff = given.len() ^ expected.len();
    for (a, b) in given.iter().zip(expected.iter().cycle()) {
        diff |= usize::from(a ^ b);
    }
    std::hint::black_box(diff) == 0
}

impl fmt::Debug for BasicAuthCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicAuthCheck")
            .field("users", &self.users.len())
            .field("exclude_paths", &self.exclude_paths)
            .field("challenge", &self.challenge)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BasicAuthUser;
    use argon2::password_hash::PasswordHasher;
    use argon2::{Algorithm, Params, Version};

    fn config() -> BasicAuth {
        let bcrypt = bcrypt::hash("bcrypt-pw", 4).unwrap();
        let argon2 = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(1024, 1, 1, None).unwrap(),
        )
        .hash_password_with_salt(b"argon2-pw", b"saltsaltsaltsalt")
        .unwrap()
        .to_string();
        let user = |name: &str, password| BasicAuthUser {
            username: name.into(),
            password,
        };
        BasicAuth {
            users: vec![
                user("plain", Password::Plain("plain-pw".into())),
                user("bc", Password::Bcrypt(bcrypt)),
                user("ar", Password::Argon2(argon2)),
            ],
            realm: "Staff only".into(),
            exclude_paths: vec!["/health".into(), "/public/*".into()],
        }
    }

    fn basic(credentials: &[u8]) -> HeaderValue {
        let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
        HeaderValue::from_str(&format!("Basic {encoded}")).unwrap()
    }

    async fn accepts(check: &BasicAuthCheck, credentials: &[u8]) -> bool {
        check.verify(Some(&basic(credentials))).await
    }

    #[tokio::test]
    async fn each_kind_accepts_the_right_password_only() {
        let check = BasicAuthCheck::new(&config());
        for (user, good) in [
            ("plain", "plain-pw"),
            ("bc", "bcrypt-pw"),
            ("ar", "argon2-pw"),
        ] {
            assert!(
                accepts(&check, format!("{user}:{good}").as_bytes()).await,
                "{user}"
            );
            let wrong = format!("{user}:{good}x");
            assert!(!accepts(&check, wrong.as_bytes()).await, "{user}");
            assert!(
                !accepts(&check, format!("{user}:").as_bytes()).await,
                "{user}"
            );
        }
        // Another user's password is not this user's.
        assert!(!accepts(&check, b"bc:plain-pw").await);
        assert!(!accepts(&check, b"ar:bcrypt-pw").await);
        assert!(!accepts(&check, b"plain:argon2-pw").await);
        assert!(!accepts(&check, b"nobody:plain-pw").await);
        assert!(!accepts(&check, b"Plain:plain-pw").await);
        // Only the first colon splits: the password may hold more.
        assert!(!accepts(&check, b"plain:plain-pw:").await);
    }

    #[tokio::test]
    async fn unknown_users_cost_a_hash_check() {
        let check = BasicAuthCheck::new(&config());
        assert!(!accepts(&check, b"nobody:bcrypt-pw").await);
        assert_eq!(check.hash_checks.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn malformed_headers_are_refused() {
        let check = BasicAuthCheck::new(&config());
        let refused = |v: &'static [u8]| HeaderValue::from_bytes(v).unwrap();
        for value in [
            refused(b""),
            refused(b"Basic"),
            refused(b"Basic "),
            refused(b"Basic !!!notbase64"),
            refused(b"Bearer cGxhaW46cGxhaW4tcHc="),
            refused(b"Basicc cGxhaW46cGxhaW4tcHc="),
            refused(b"Basic \xff\xfe"),
            basic(b"plainplain-pw"),
            basic(b""),
            basic(b"plain:plain-pw\xff"),
            basic(b"\xff:plain-pw"),
        ] {
            assert!(!check.verify(Some(&value)).await, "{value:?}");
        }
        assert!(!check.verify(None).await);
        let long = format!("Basic {}", "A".repeat(MAX_HEADER_LEN));
        assert!(
            !check
                .verify(Some(&HeaderValue::from_str(&long).unwrap()))
                .await
        );
    }

    #[tokio::test]
    async fn scheme_case_spaces_and_padding_are_tolerated() {
        let check = BasicAuthCheck::new(&config());
        // "plain:plain-pw" is 14 bytes: two padding characters.
        for value in [
            "basic cGxhaW46cGxhaW4tcHc=",
            "BASIC cGxhaW46cGxhaW4tcHc=",
            "  Basic   cGxhaW46cGxhaW4tcHc=  ",
            "Basic cGxhaW46cGxhaW4tcHc",
        ] {
            let value = HeaderValue::from_static(value);
            assert!(check.verify(Some(&value)).await, "{value:?}");
        }
    }

    #[tokio::test]
    async fn a_success_is_remembered_for_five_minutes() {
        let check = BasicAuthCheck::new(&config());
        let value = basic(b"bc:bcrypt-pw");
        let t0 = Instant::now();
        for _ in 0..5 {
            assert!(check.verify_at(Some(&value), t0).await);
        }
        assert_eq!(check.hash_checks.load(Ordering::Relaxed), 1);
        assert!(check.verify_at(Some(&value), t0 + CACHE_TTL / 2).await);
        assert_eq!(check.hash_checks.load(Ordering::Relaxed), 1);
        assert!(check.verify_at(Some(&value), t0 + CACHE_TTL).await);
        assert_eq!(check.hash_checks.load(Ordering::Relaxed), 2);
        // Failures are not remembered.
        let wrong = basic(b"bc:nope");
        assert!(!check.verify_at(Some(&wrong), t0).await);
        assert!(!check.verify_at(Some(&wrong), t0).await);
        assert_eq!(check.hash_checks.load(Ordering::Relaxed), 4);
    }

    #[tokio::test]
    async fn the_cache_stays_bounded() {
        let check = BasicAuthCheck::new(&config());
        let t0 = Instant::now();
        for n in 0..CACHE_ENTRIES as u64 + 10 {
            check.remember(&n.to_be_bytes(), t0 + Duration::from_millis(n));
        }
        assert_eq!(check.cache().len(), CACHE_ENTRIES);
        // The oldest went first.
        assert!(!check.recently_verified(&0u64.to_be_bytes(), t0));
        let newest = (CACHE_ENTRIES as u64 + 9).to_be_bytes();
        assert!(check.recently_verified(&newest, t0));
    }

    #[test]
    fn exempt_paths_are_case_sensitive_globs() {
        let check = BasicAuthCheck::new(&config());
        assert!(check.exempt("/health"));
        assert!(check.exempt("/public/logo.png"));
        assert!(!check.exempt("/Health"));
        assert!(!check.exempt("/healthz"));
        assert!(!check.exempt("/public"));
        assert!(!check.exempt("/"));
    }

    #[test]
    fn challenge_names_the_realm() {
        let check = BasicAuthCheck::new(&config());
        assert_eq!(
            check.challenge(),
            "Basic realm=\"Staff only\", charset=\"UTF-8\""
        );
    }

    #[test]
    fn verify_future_is_send() {
        fn assert_send<T: Send>(_: T) {}
        let check = BasicAuthCheck::new(&config());
        assert_send(check.verify(None));
    }

    #[test]
    fn constant_time_equality() {
        assert!(ct_eq(b"", b""));
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"abcabc"));
        assert!(!ct_eq(b"abcabc", b"abc"));
        assert!(!ct_eq(b"", b"a"));
        assert!(!ct_eq(b"a", b""));
    }
}

//! What lets a request through under `--web.config.file`: the rate limit
//! (`rate_limit`) and basic authentication (`basic_auth_users`), in the
//! exporter-toolkit's order and with its answers (web/handler.go): 429
//! past the rate, 401 with `WWW-Authenticate: Basic` for missing or wrong
//! credentials.
//!
//! A bcrypt check costs tens of milliseconds (cost 10), far too long for
//! the thread that serves every connection. So, as the toolkit does, each
//! (user, hash, password) checked is remembered, right or wrong (at most
//! [`CACHE`] of them, by SHA-256 digest: no password is kept), and a
//! Prometheus scraping with the same credentials is let through at once;
//! credentials not seen yet are checked on one worker thread while their
//! connection waits, at most [`MAX_CHECKS`] distinct ones at a time (503
//! beyond, so a flood of guesses cannot queue unbounded work). An unknown
//! user is checked against a fixed hash, so the time taken does not say
//! which users exist; bcrypt's own comparison is constant-time.

use std::os::fd::OwnedFd;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::http::Basic;

/// Credentials remembered, at most.
const CACHE: usize = 100;
/// Distinct credentials being checked at once, at most.
pub const MAX_CHECKS: usize = 32;
/// The toolkit's hash of "fakepassword", checked for unknown users.
const DUMMY_HASH: &str = "$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi";

/// Names one (user, hash, password): their SHA-256 digest.
pub type Key = [u8; 32];

/// Whether a request may go on.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// Over `rate_limit`: 429.
    Limited,
    /// Missing or wrong credentials: 401.
    Denied,
    /// Being checked: the connection waits for [`Gate::finished`].
    Checking(Key),
    /// Too many checks at once: 503.
    Busy,
}

/// `rate_limit`: a token bucket of `burst` tokens, one more every
/// `every` (Go's `rate.NewLimiter(rate.Every(interval), burst)`, full at
/// start; a burst of 0 lets nothing through, as in Go).
struct RateLimit {
    every: Duration,
    burst: u32,
    tokens: f64,
    last: Instant,
}

impl RateLimit {
    fn allow(&mut self, now: Instant) -> bool {
        let gained =
            now.saturating_duration_since(self.last).as_secs_f64() / self.every.as_secs_f64();
        self.tokens = (self.tokens + gained).min(f64::from(self.burst));
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A check for the worker: key, hash, password, and whether the user is
/// known.
type Job = (Key, String, String, bool);

/// The rate limit, the remembered verdicts and the bcrypt worker.
pub struct Gate {
    limit: Option<RateLimit>,
    cache: Vec<(Key, bool)>,
    /// Where the next verdict replaces an old one once the cache is full.
    next: usize,
    checking: Vec<Key>,
    /// The worker's queue, once a first check started it; before that,
    /// the descriptor it will wake the loop with.
    worker: Result<mpsc::Sender<Job>, Option<OwnedFd>>,
    done: Arc<Mutex<Vec<(Key, bool)>>>,
}

impl Gate {
    /// The worker starts with the first check; it writes a byte to `wake`
    /// after each one.
    pub fn new(rate_limit: Option<(Duration, u32)>, wake: OwnedFd) -> Gate {
        Gate {
            limit: rate_limit.map(|(every, burst)| RateLimit {
                every,
                burst,
                tokens: f64::from(burst),
                last: Instant::now(),
            }),
            cache: Vec::with_capacity(CACHE),
            next: 0,
            checking: Vec::new(),
            worker: Err(Some(wake)),
            done: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Queues a check, starting the worker if needed; `false` if it cannot.
    fn send(&mut self, job: Job) -> bool {
        if let Err(wake) = &mut self.worker {
            let Some(wake) = wake.take() else {
                return false;
            };
            let (jobs, queue) = mpsc::channel::<Job>();
            let done = Arc::clone(&self.done);
            let started = std::thread::Builder::new()
                .name("auth".into())
                .spawn(move || {
                    for (key, hash, password, known) in queue {
                        let ok = bcrypt::verify(&password, &hash).unwrap_or(false) && known;
                        done.lock().unwrap().push((key, ok));
                        let _ = rustix::io::write(&wake, b"a");
                    }
                });
            if started.is_err() {
                return false;
            }
            self.worker = Ok(jobs);
        }
        matches!(&self.worker, Ok(jobs) if jobs.send(job).is_ok())
    }

    /// Decides on a request with credentials `basic`, for `users` (none:
    /// no authentication).
    pub fn admit(
        &mut self,
        users: &[(String, String)],
        basic: Option<&Basic>,
        now: Instant,
    ) -> Verdict {
        if let Some(l) = &mut self.limit {
            if !l.allow(now) {
                return Verdict::Limited;
            }
        }
        if users.is_empty() {
            return Verdict::Pass;
        }
        let Some(basic) = basic else {
            return Verdict::Denied;
        };
        let found = users.iter().find(|(u, _)| *u == basic.user);
        let hash = found.map_or(DUMMY_HASH, |(_, h)| h.as_str());
        let key = key(&basic.user, hash, &basic.password);
        if let Some((_, ok)) = self.cache.iter().find(|(k, _)| *k == key) {
            return if *ok && found.is_some() {
                Verdict::Pass
            } else {
                Verdict::Denied
            };
        }
        if !self.checking.contains(&key) {
            if self.checking.len() >= MAX_CHECKS {
                return Verdict::Busy;
            }
            let job = (
                key,
                hash.to_string(),
                basic.password.clone(),
                found.is_some(),
            );
            if !self.send(job) {
                return Verdict::Busy;
            }
            self.checking.push(key);
        }
        Verdict::Checking(key)
    }

    /// The checks finished since the last call, remembered.
    pub fn finished(&mut self) -> Vec<(Key, bool)> {
        let done = std::mem::take(&mut *self.done.lock().unwrap());
        for &(key, ok) in &done {
            self.checking.retain(|k| *k != key);
            if self.cache.len() < CACHE {
                self.cache.push((key, ok));
            } else {
                self.cache[self.next] = (key, ok);
                self.next = (self.next + 1) % CACHE;
            }
        }
        done
    }
}

/// SHA-256 of the three, each preceded by its length (no two triples
/// give the same input).
fn key(user: &str, hash: &str, password: &str) -> Key {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in [user, hash, password] {
        ctx.update(&(part.len() as u64).to_le_bytes());
        ctx.update(part.as_bytes());
    }
    let mut key = [0u8; 32];
    key.copy_from_slice(ctx.finish().as_ref());
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wake() -> OwnedFd {
        rustix::pipe::pipe().unwrap().1
    }

    fn basic(user: &str, password: &str) -> Basic {
        Basic {
            user: user.into(),
            password: password.into(),
        }
    }

    /// Waits for the worker's verdict on `key`.
    fn verdict(g: &mut Gate, key: Key) -> bool {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some((_, ok)) = g.finished().into_iter().find(|(k, _)| *k == key) {
                return ok;
            }
            assert!(Instant::now() < until, "no verdict");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn credentials_are_checked_once_then_remembered() {
        let hash = bcrypt::hash("right", 4).unwrap();
        let users = vec![("alice".to_string(), hash)];
        let mut g = Gate::new(None, wake());
        let now = Instant::now();
        assert_eq!(g.admit(&users, None, now), Verdict::Denied);
        for (user, password, ok) in [
            ("alice", "right", true),
            ("alice", "wrong", false),
            ("mallory", "fakepassword", false),
        ] {
            let b = basic(user, password);
            let Verdict::Checking(k) = g.admit(&users, Some(&b), now) else {
                panic!("{user}: not checked")
            };
            // Asked again while it is checked: the same check.
            assert_eq!(g.admit(&users, Some(&b), now), Verdict::Checking(k));
            assert_eq!(verdict(&mut g, k), ok, "{user} {password}");
            let again = if ok { Verdict::Pass } else { Verdict::Denied };
            assert_eq!(g.admit(&users, Some(&b), now), again);
        }
        assert_eq!(g.admit(&[], None, now), Verdict::Pass);
    }

    #[test]
    fn too_many_checks_at_once_are_refused() {
        let users = vec![("alice".to_string(), bcrypt::hash("x", 4).unwrap())];
        let mut g = Gate::new(None, wake());
        let now = Instant::now();
        let verdicts: Vec<Verdict> = (0..MAX_CHECKS + 1)
            .map(|i| g.admit(&users, Some(&basic("alice", &i.to_string())), now))
            .collect();
        assert!(verdicts[..MAX_CHECKS]
            .iter()
            .all(|v| matches!(v, Verdict::Checking(_))));
        assert_eq!(verdicts[MAX_CHECKS], Verdict::Busy);
    }

    #[test]
    fn the_rate_limit_is_a_token_bucket() {
        let mut g = Gate::new(Some((Duration::from_secs(1), 2)), wake());
        let t = Instant::now();
        let at = |ms| t + Duration::from_millis(ms);
        let got: Vec<bool> = [0, 0, 0, 500, 1000, 1000, 3000, 3000, 3000]
            .into_iter()
            .map(|ms| g.admit(&[], None, at(ms)) == Verdict::Pass)
            .collect();
        assert_eq!(
            got,
            [true, true, false, false, true, false, true, true, false]
        );
        let mut none = Gate::new(Some((Duration::from_secs(1), 0)), wake());
        assert_eq!(none.admit(&[], None, at(5000)), Verdict::Limited);
    }
}

//! What lets a request through under `--web.config.file`: the rate limit
//! (`rate_limit`) and basic authentication (`basic_auth_users`), in the
//! exporter-toolkit's order and with its answers (web/handler.go): 429
//! past the rate, 401 with `WWW-Authenticate: Basic` for missing or wrong
//! credentials.
//!
//! The toolkit's rate limit is one bucket for the server, so one client
//! sending fast gets every other client 429s. Here each peer
//! (`conn::source_of`) has its own bucket of `burst` tokens and the same
//! rate, so a flood from one address costs only that address; the total
//! rate is then the configured one per peer. At most [`MAX_PEERS`] peers
//! have buckets (a full bucket is forgotten when room is needed); beyond,
//! new peers share one.
//!
//! A bcrypt check costs tens of milliseconds (cost 10), far too long for
//! the thread that serves every connection. So, as the toolkit does, each
//! (user, hash, password) checked is remembered by SHA-256 digest (no
//! password is kept), and a Prometheus scraping with the same credentials
//! is let through at once. Unlike the toolkit's one cache, credentials that
//! passed have their own ([`PASSED`] entries), which wrong guesses cannot
//! push out; wrong ones are remembered apart ([`FAILED`]).
//!
//! Credentials not seen yet are checked on one worker thread while their
//! connection waits, one at a time, taken from a queue of at most
//! [`MAX_CHECKS`] distinct ones so that a flood of guesses cannot queue
//! unbounded work. The next check is the oldest of the peer
//! (`conn::source_of`) with the fewest queued, and when the queue is full
//! a newcomer from a peer with fewer queued displaces the newest of the
//! peer with the most (503 for its connections). A guessing peer therefore
//! delays another peer's new credentials by one check at most.
//!
//! An unknown user is checked against the configured hash of the highest
//! cost, so that the time taken does not say which users exist (users
//! whose hashes have a lower cost are still told apart from the others by
//! time; give every user the same cost); bcrypt's own comparison is
//! constant-time, and it reads at most 72 bytes of a password: the
//! `bcrypt` crate's `verify` (0.19) ignores the rest, so two passwords
//! that share their first 72 bytes are the same password.

use std::collections::HashMap;
use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use foldhash::fast::RandomState;

use super::http::Basic;
use super::web::Web;

/// Credentials that passed, remembered, at most.
const PASSED: usize = 16;
/// Wrong credentials remembered, at most.
const FAILED: usize = 100;
/// Distinct credentials queued or being checked, at most.
pub const MAX_CHECKS: usize = 32;

/// Peers with a rate-limit bucket of their own, at most.
const MAX_PEERS: usize = 4096;

/// Names one (user, hash, password): their SHA-256 digest.
pub type Key = [u8; 32];

/// Whether a request may go on.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    fn new(every: Duration, burst: u32, now: Instant) -> RateLimit {
        RateLimit {
            every,
            burst,
            tokens: f64::from(burst),
            last: now,
        }
    }

    /// Whether the bucket is full again: it is then as good as a new one.
    fn full(&self, now: Instant) -> bool {
        let gained =
            now.saturating_duration_since(self.last).as_secs_f64() / self.every.as_secs_f64();
        self.tokens + gained >= f64::from(self.burst)
    }

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

/// `rate_limit` per peer: a bucket each, and one shared by the peers
/// beyond [`MAX_PEERS`].
struct Limits {
    peers: HashMap<IpAddr, RateLimit, RandomState>,
    shared: RateLimit,
}

impl Limits {
    fn allow(&mut self, source: IpAddr, now: Instant) -> bool {
        if let Some(b) = self.peers.get_mut(&source) {
            return b.allow(now);
        }
        if self.peers.len() >= MAX_PEERS {
            self.peers.retain(|_, b| !b.full(now));
        }
        if self.peers.len() >= MAX_PEERS {
            return self.shared.allow(now);
        }
        let mut b = RateLimit::new(self.shared.every, self.shared.burst, now);
        let allowed = b.allow(now);
        self.peers.insert(source, b);
        allowed
    }
}

/// A check for the worker: key, hash, password, and whether the user is
/// known.
type Job = (Key, String, String, bool);

/// A check not finished: queued (`job` is there) or with the worker.
struct Pending {
    key: Key,
    source: IpAddr,
    job: Option<Job>,
}

/// Verdicts remembered, replaced round-robin once full.
struct Remembered {
    keys: Vec<Key>,
    next: usize,
    max: usize,
}

impl Remembered {
    fn new(max: usize) -> Remembered {
        Remembered {
            keys: Vec::with_capacity(max),
            next: 0,
            max,
        }
    }

    fn contains(&self, key: &Key) -> bool {
        self.keys.contains(key)
    }

    fn add(&mut self, key: Key) {
        if self.keys.len() < self.max {
            self.keys.push(key);
        } else {
            self.keys[self.next] = key;
            self.next = (self.next + 1) % self.max;
        }
    }
}

/// The rate limit, the remembered verdicts, the queue of checks and the
/// bcrypt worker.
pub struct Gate {
    limit: Option<Limits>,
    passed: Remembered,
    failed: Remembered,
    /// Oldest first; at most one without its job (the worker's).
    pending: Vec<Pending>,
    /// The worker's queue, once a first check started it; before that,
    /// the descriptor it will wake the loop with.
    worker: Result<mpsc::Sender<Job>, Option<OwnedFd>>,
    done: Arc<Mutex<Vec<(Key, bool)>>>,
    /// Checks displaced from a full queue, to be answered 503.
    displaced: Vec<Key>,
}

impl Gate {
    /// The worker starts with the first check; it writes a byte to `wake`
    /// after each one.
    pub fn new(rate_limit: Option<(Duration, u32)>, wake: OwnedFd) -> Gate {
        Gate {
            limit: rate_limit.map(|(every, burst)| Limits {
                peers: HashMap::default(),
                shared: RateLimit::new(every, burst, Instant::now()),
            }),
            passed: Remembered::new(PASSED),
            failed: Remembered::new(FAILED),
            pending: Vec::new(),
            worker: Err(Some(wake)),
            done: Arc::new(Mutex::new(Vec::new())),
            displaced: Vec::new(),
        }
    }

    /// Hands the worker a job, starting it if needed; `false` if it cannot.
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

    /// Checks queued from `source`, the worker's included.
    fn queued(&self, source: IpAddr) -> usize {
        self.pending.iter().filter(|p| p.source == source).count()
    }

    /// The worker idle and checks queued: hands it the oldest of the peer
    /// with the fewest queued. `false` if the worker cannot run.
    fn next_check(&mut self) -> bool {
        if self.pending.iter().any(|p| p.job.is_none()) {
            return true;
        }
        let next =
            (0..self.pending.len()).min_by_key(|&i| (self.queued(self.pending[i].source), i));
        let Some(i) = next else {
            return true;
        };
        let job = self.pending[i].job.take().expect("queued");
        self.send(job)
    }

    /// Makes room in a full queue for a check from `source`: the newest
    /// queued check of the peer with the most, if it has more than
    /// `source` would.
    fn displace_for(&mut self, source: IpAddr) -> bool {
        let mine = self.queued(source) + 1;
        let victim = (0..self.pending.len())
            .filter(|&i| self.pending[i].job.is_some())
            .max_by_key(|&i| (self.queued(self.pending[i].source), i));
        match victim {
            Some(i) if self.queued(self.pending[i].source) > mine => {
                let p = self.pending.remove(i);
                self.displaced.push(p.key);
                true
            }
            _ => false,
        }
    }

    /// Decides on a request from `source` with credentials `basic`, under
    /// `web`'s users (none: no authentication).
    pub fn admit(
        &mut self,
        web: &Web,
        basic: Option<&Basic>,
        source: IpAddr,
        now: Instant,
    ) -> Verdict {
        if let Some(l) = &mut self.limit {
            if !l.allow(source, now) {
                return Verdict::Limited;
            }
        }
        if web.users.is_empty() {
            return Verdict::Pass;
        }
        let Some(basic) = basic else {
            return Verdict::Denied;
        };
        let found = web.users.iter().find(|(u, _)| *u == basic.user);
        let hash = found.map_or(web.dummy.as_str(), |(_, h)| h.as_str());
        let key = key(&basic.user, hash, &basic.password);
        if self.passed.contains(&key) && found.is_some() {
            return Verdict::Pass;
        }
        if self.failed.contains(&key) {
            return Verdict::Denied;
        }
        if self.pending.iter().any(|p| p.key == key) {
            return Verdict::Checking(key);
        }
        if self.pending.len() >= MAX_CHECKS && !self.displace_for(source) {
            return Verdict::Busy;
        }
        let job = (
            key,
            hash.to_string(),
            basic.password.clone(),
            found.is_some(),
        );
        self.pending.push(Pending {
            key,
            source,
            job: Some(job),
        });
        if !self.next_check() {
            self.pending.pop();
            return Verdict::Busy;
        }
        Verdict::Checking(key)
    }

    /// The checks finished (remembered) and displaced since the last call,
    /// with their verdicts; the next check goes to the worker.
    pub fn finished(&mut self) -> Vec<(Key, Verdict)> {
        let done = std::mem::take(&mut *self.done.lock().unwrap());
        let mut verdicts: Vec<(Key, Verdict)> = self
            .displaced
            .drain(..)
            .map(|k| (k, Verdict::Busy))
            .collect();
        for (key, ok) in done {
            self.pending.retain(|p| p.key != key);
            if ok {
                self.passed.add(key);
            } else {
                self.failed.add(key);
            }
            verdicts.push((key, if ok { Verdict::Pass } else { Verdict::Denied }));
        }
        if !self.next_check() {
            // The worker is gone: nothing queued will be checked.
            for p in self.pending.drain(..) {
                verdicts.push((p.key, Verdict::Busy));
            }
        }
        verdicts
    }

    /// Whether checks were displaced since the last [`Gate::finished`].
    pub fn displaced(&self) -> bool {
        !self.displaced.is_empty()
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

    fn web(users: &[(&str, &str)]) -> Web {
        let users: Vec<(String, String)> = users
            .iter()
            .map(|(u, p)| (u.to_string(), bcrypt::hash(p, 4).unwrap()))
            .collect();
        Web {
            tls: None,
            dummy: users.first().map(|u| u.1.clone()).unwrap_or_default(),
            users,
            headers: String::new(),
        }
    }

    fn from(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    /// Waits for the worker's verdict on `key`.
    fn verdict(g: &mut Gate, key: Key) -> Verdict {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some((_, v)) = g.finished().into_iter().find(|(k, _)| *k == key) {
                return v;
            }
            assert!(Instant::now() < until, "no verdict");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn credentials_are_checked_once_then_remembered() {
        let w = web(&[("alice", "right")]);
        let mut g = Gate::new(None, wake());
        let now = Instant::now();
        assert_eq!(g.admit(&w, None, from(1), now), Verdict::Denied);
        for (user, password, ok) in [
            ("alice", "right", true),
            ("alice", "wrong", false),
            ("mallory", "right", false),
        ] {
            let b = basic(user, password);
            let Verdict::Checking(k) = g.admit(&w, Some(&b), from(1), now) else {
                panic!("{user}: not checked")
            };
            // Asked again while it is checked: the same check.
            assert_eq!(g.admit(&w, Some(&b), from(1), now), Verdict::Checking(k));
            let again = if ok { Verdict::Pass } else { Verdict::Denied };
            assert_eq!(verdict(&mut g, k), again, "{user} {password}");
            assert_eq!(g.admit(&w, Some(&b), from(1), now), again);
        }
        assert_eq!(g.admit(&Web::plain(), None, from(1), now), Verdict::Pass);
    }

    /// Guesses fill the wrong verdicts' memory many times over: the right
    /// password stays remembered.
    #[test]
    fn guesses_never_push_out_credentials_that_passed() {
        let w = web(&[("alice", "right")]);
        let mut g = Gate::new(None, wake());
        let now = Instant::now();
        let right = basic("alice", "right");
        let Verdict::Checking(k) = g.admit(&w, Some(&right), from(1), now) else {
            panic!()
        };
        assert_eq!(verdict(&mut g, k), Verdict::Pass);
        for i in 0..3 * FAILED {
            // Remembered as wrong, one after the other.
            g.failed.add(key("alice", &w.users[0].1, &i.to_string()));
        }
        assert_eq!(g.admit(&w, Some(&right), from(1), now), Verdict::Pass);
    }

    /// One peer fills the queue; a newcomer from another peer displaces
    /// its newest check and is checked next.
    #[test]
    fn a_guessing_peer_cannot_take_the_queue() {
        let w = web(&[("alice", "right")]);
        let mut g = Gate::new(None, wake());
        let now = Instant::now();
        let guess = |g: &mut Gate, peer: u8, i: usize| {
            g.admit(
                &w,
                Some(&basic("alice", &format!("{peer}-{i}"))),
                from(peer),
                now,
            )
        };
        for i in 0..MAX_CHECKS {
            assert!(matches!(guess(&mut g, 1, i), Verdict::Checking(_)));
        }
        assert_eq!(guess(&mut g, 1, MAX_CHECKS), Verdict::Busy);
        let Verdict::Checking(mine) = guess(&mut g, 2, 0) else {
            panic!("no room made")
        };
        assert!(g.displaced());
        assert_eq!(g.pending.len(), MAX_CHECKS);
        // Answered after the check the worker had, and one more at most.
        let mut before = 0;
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let done = g.finished();
            if done.iter().any(|(k, _)| *k == mine) {
                break;
            }
            before += done.iter().filter(|(_, v)| *v == Verdict::Denied).count();
            assert!(Instant::now() < until, "never checked");
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(before <= 2, "checked after {before} guesses");
    }

    #[test]
    fn the_rate_limit_is_a_token_bucket() {
        let mut g = Gate::new(Some((Duration::from_secs(1), 2)), wake());
        let t = Instant::now();
        let at = |ms| t + Duration::from_millis(ms);
        let plain = Web::plain();
        let got: Vec<bool> = [0, 0, 0, 500, 1000, 1000, 3000, 3000, 3000]
            .into_iter()
            .map(|ms| g.admit(&plain, None, from(1), at(ms)) == Verdict::Pass)
            .collect();
        assert_eq!(
            got,
            [true, true, false, false, true, false, true, true, false]
        );
        let mut none = Gate::new(Some((Duration::from_secs(1), 0)), wake());
        assert_eq!(
            none.admit(&plain, None, from(1), at(5000)),
            Verdict::Limited
        );
        // Another peer has its own bucket, full.
        assert_eq!(g.admit(&plain, None, from(2), at(3000)), Verdict::Pass);
    }

    /// Past MAX_PEERS buckets, full ones are forgotten to make room; with
    /// none full, new peers share one bucket.
    #[test]
    fn rate_limit_buckets_are_bounded() {
        let t = Instant::now();
        let mut g = Gate::new(Some((Duration::from_secs(1), 1)), wake());
        let plain = Web::plain();
        let peer = |i: usize| IpAddr::from(std::net::Ipv6Addr::from((i as u128) << 64));
        for i in 0..MAX_PEERS {
            assert_eq!(g.admit(&plain, None, peer(i), t), Verdict::Pass);
        }
        // All empty: the newcomers share one bucket of one token.
        assert_eq!(g.admit(&plain, None, peer(MAX_PEERS), t), Verdict::Pass);
        assert_eq!(
            g.admit(&plain, None, peer(MAX_PEERS + 1), t),
            Verdict::Limited
        );
        // A second later every bucket is full again: room for new peers.
        let later = t + Duration::from_secs(1);
        assert_eq!(
            g.admit(&plain, None, peer(MAX_PEERS + 2), later),
            Verdict::Pass
        );
        assert_eq!(g.limit.as_ref().unwrap().peers.len(), 1);
    }
}

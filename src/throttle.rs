//! Saying a repeating error once: the policy for gathers that keep failing
//! in the long-running loops, per namespace.

use std::time::{Duration, Instant};

use crate::log::Logger;

/// How often a gather error that keeps repeating is said again.
const REMIND_EVERY: Duration = Duration::from_secs(300);

/// Says an error once, then a reminder with a count at most every
/// `REMIND_EVERY`, and an `I! ` line when gathers work again. Pure: returns
/// the line to log, so the policy is tested without a clock or stderr.
#[derive(Default)]
pub struct ErrorThrottle {
    failing: Option<Failing>,
}

struct Failing {
    message: String,
    count: u64,
    said: Instant,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Say {
    Error(String),
    Info(String),
}

impl ErrorThrottle {
    /// A failed gather; `context` says where (empty, or " in network
    /// namespace NAME").
    pub fn failed(&mut self, context: &str, message: String, now: Instant) -> Option<Say> {
        match &mut self.failing {
            Some(f) if f.message == message => {
                f.count += 1;
                if now.duration_since(f.said) < REMIND_EVERY {
                    return None;
                }
                f.said = now;
                Some(Say::Error(format!(
                    "gather failed{context}: {message} (still failing: {} gathers in a row)",
                    f.count
                )))
            }
            // A new error is said at once; the run of failures goes on.
            other => {
                let count = other.as_ref().map_or(0, |f| f.count) + 1;
                let say = Say::Error(format!("gather failed{context}: {message}"));
                self.failing = Some(Failing {
                    message,
                    count,
                    said: now,
                });
                Some(say)
            }
        }
    }

    pub fn succeeded(&mut self, context: &str) -> Option<Say> {
        let f = self.failing.take()?;
        Some(Say::Info(format!(
            "gather recovered{context} after {} failed gathers",
            f.count
        )))
    }
}

/// A warning about a lasting condition: said when it starts, then at most
/// every `REMIND_EVERY` while it lasts; reset it when the condition ends.
#[derive(Default)]
pub struct Reminder {
    said: Option<Instant>,
}

impl Reminder {
    /// Whether to say the warning now: when the condition is new, or
    /// `REMIND_EVERY` after it was last said.
    pub fn due(&mut self, now: Instant) -> bool {
        self.due_every(now, REMIND_EVERY)
    }

    /// The same, reminded every `period`.
    pub fn due_every(&mut self, now: Instant, period: Duration) -> bool {
        match self.said {
            Some(t) if now.duration_since(t) < period => false,
            _ => {
                self.said = Some(now);
                true
            }
        }
    }
}

pub fn say(log: &Logger, what: Option<Say>) {
    match what {
        Some(Say::Error(m)) => log.error(format_args!("{m}")),
        Some(Say::Info(m)) => log.info(format_args!("{m}")),
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_errors_are_said_once_then_reminded_with_a_count() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut t = ErrorThrottle::default();
        let e = |m: &str| Some(Say::Error(m.to_string()));
        assert_eq!(t.failed("", "boom".into(), t0), e("gather failed: boom"));
        assert_eq!(t.failed("", "boom".into(), t0 + s(10)), None);
        assert_eq!(t.failed("", "boom".into(), t0 + s(299)), None);
        assert_eq!(
            t.failed("", "boom".into(), t0 + s(300)),
            e("gather failed: boom (still failing: 4 gathers in a row)")
        );
        assert_eq!(t.failed("", "boom".into(), t0 + s(310)), None);
        // A different error is said at once.
        assert_eq!(
            t.failed("", "bang".into(), t0 + s(311)),
            e("gather failed: bang")
        );
        // Six failures in a row, whatever their messages.
        assert_eq!(
            t.succeeded(""),
            Some(Say::Info("gather recovered after 6 failed gathers".into()))
        );
        assert_eq!(t.succeeded(""), None);
    }

    #[test]
    fn lasting_warnings_are_said_then_reminded() {
        let t0 = Instant::now();
        let mut w = Reminder::default();
        assert!(w.due(t0));
        assert!(!w.due(t0 + Duration::from_secs(10)));
        assert!(w.due(t0 + REMIND_EVERY));
    }

    #[test]
    fn context_names_the_namespace() {
        let t0 = Instant::now();
        let mut t = ErrorThrottle::default();
        let ctx = " in network namespace blue";
        assert_eq!(
            t.failed(ctx, "boom".into(), t0),
            Some(Say::Error(
                "gather failed in network namespace blue: boom".into()
            ))
        );
        assert_eq!(
            t.succeeded(ctx),
            Some(Say::Info(
                "gather recovered in network namespace blue after 1 failed gathers".into()
            ))
        );
    }
}

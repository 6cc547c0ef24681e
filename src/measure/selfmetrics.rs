//! The self-metrics: how a gather went, printed after the rows in the
//! Prometheus format so a partial gather is visible to the scraper, not
//! only on stderr. All gauges.

use std::time::Duration;

use crate::metric::{Family, Native, Value};

const BUILD_INFO: Native = Native::gauge(
    "netstat_build_info",
    "A constant 1, labelled with the version of telegraf-netstat and the target it was built for.",
);

const GATHER_SUCCESS: Native = Native::gauge(
    "netstat_gather_success",
    "Whether the last gather counted this network namespace (1) or could not (0; the reason is in the log).",
);

const TCP_HASH_SHARED: Native = Native::gauge(
    "netstat_tcp_hash_shared",
    "Whether this network namespace shares the host's TCP established hash table (1), so that each of its TCP dumps walks all of it, or has one of its own (0; or it is the host's): net.ipv4.tcp_child_ehash_entries, set before a namespace is made, gives it its own.",
);

const SCAN_UNREADABLE: Native = Native::gauge(
    "netstat_scan_unreadable_processes",
    "Processes whose network namespace --all-netns could not look at (CAP_SYS_PTRACE missing); namespaces only they are in are not counted.",
);

const GATHER_DURATION: Native = Native::gauge(
    "netstat_gather_duration_seconds",
    "Wall time of the last gather, in seconds.",
);

/// Tags, each with a flag (how each namespace went).
pub type TaggedFlags<'a> = [(Vec<(&'static str, &'a str)>, bool)];

/// How one gather went.
#[derive(Debug, Clone, Copy)]
pub struct Status<'a> {
    /// Every namespace counted (`true`) or attempted and failed, with its
    /// own tags.
    pub outcomes: &'a TaggedFlags<'a>,
    /// Namespaces counted whose kernel says whether they share the host's
    /// TCP hash table (`true`), with their own tags.
    pub tcp_hash_shared: &'a TaggedFlags<'a>,
    /// `--all-netns`: processes whose namespace could not be looked at.
    pub unreadable: Option<u64>,
    pub duration: Duration,
}

/// The self-metrics' families, in the order they are printed; a family
/// without a sample is not printed.
pub fn families<'a>(s: &Status<'a>) -> Vec<Family<'a>> {
    let flags = |list: &'a TaggedFlags<'a>| -> Vec<(Vec<(&'static str, &'a str)>, Value)> {
        list.iter()
            .map(|(tags, ok)| (tags.clone(), Value::Int(u64::from(*ok))))
            .collect()
    };
    let build = vec![
        ("target", env!("TELEGRAF_NETSTAT_TARGET")),
        ("version", env!("CARGO_PKG_VERSION")),
    ];
    vec![
        Family {
            desc: BUILD_INFO,
            samples: vec![(build, Value::Int(1))],
        },
        Family {
            desc: GATHER_SUCCESS,
            samples: flags(s.outcomes),
        },
        Family {
            desc: TCP_HASH_SHARED,
            samples: flags(s.tcp_hash_shared),
        },
        Family {
            desc: SCAN_UNREADABLE,
            samples: s
                .unreadable
                .map(|n| (Vec::new(), Value::Int(n)))
                .into_iter()
                .collect(),
        },
        Family {
            desc: GATHER_DURATION,
            // Microseconds, at a fixed width below 10 s.
            samples: vec![(Vec::new(), Value::Fixed(s.duration.as_secs_f64()))],
        },
    ]
}

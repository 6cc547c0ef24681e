//! What a gather tells the operator: a collector's events (a fallback to
//! /proc, unknown states, caps hit) as log lines, throttled where they
//! would repeat every gather.

use std::time::Instant;

use crate::log::Logger;
use telegraf_netstat::collector::NoCgroups;
use telegraf_netstat::{Error, Event};

use crate::throttle::Reminder;

/// Where, for log lines: empty, or " in network namespace NAME".
pub(super) fn context(tag: Option<&str>) -> String {
    tag.map(|t| format!(" in network namespace {t}"))
        .unwrap_or_default()
}

/// An error that means the namespace went away between the scan and the
/// gather: `--all-netns` drops it without a word. (A named namespace
/// without a process, which the proc source cannot read, has not gone: it
/// is an error like any other.)
pub(super) fn vanished(e: &Error) -> bool {
    match e {
        Error::NetnsOpen { source, .. } => source.kind() == std::io::ErrorKind::NotFound,
        _ => false,
    }
}

/// The warnings about caps of one namespace, each said at most every few
/// minutes.
#[derive(Default)]
pub(super) struct Caps {
    ports: Reminder,
    listeners: Reminder,
    destinations: Reminder,
    cgroups: Reminder,
    no_cgroups: Reminder,
    counters: Reminder,
}

/// Logs what a collector tells.
pub(super) fn report(
    log: &Logger,
    prefix: &str,
    include_unix: bool,
    caps: &mut Caps,
    now: Instant,
    event: Event<'_>,
) {
    match event {
        Event::TcpInfoMissing => log.warn(format_args!(
            "{prefix}TCP sockets are read from /proc, which has no tcp_info: \
             --tcp-info's rows are left out"
        )),
        Event::TcpInfoDumped {
            looked_up: None,
            records,
            bytes,
        } => log.debug(format_args!(
            "{prefix}--tcp-info: the filtered dump returned {records} sockets in {bytes} bytes"
        )),
        Event::TcpInfoDumped {
            looked_up: Some(n),
            records,
            bytes,
        } => log.debug(format_args!(
            "{prefix}--tcp-info: looked up {n} sockets one by one: {records} answered in {bytes} bytes"
        )),
        Event::Fallback { kind, error } => {
            let what = match kind {
                Some(p) => p.to_string(),
                None if include_unix => "tcp, udp and unix".to_string(),
                None => "tcp and udp".to_string(),
            };
            log.warn(format_args!(
                "{prefix}{error}; reading {what} sockets from /proc from now on"
            ))
        }
        Event::UnknownState { state, count } => log.debug(format_args!(
            "{prefix}ignored {count} tcp sockets in unknown state {state}"
        )),
        Event::ListenersCapped { cap } => {
            if caps.listeners.due(now) {
                log.warn(format_args!(
                    "{prefix}more than {cap} TCP listening addresses; \
                     --listen-queues reports the first {cap} found"
                ));
            }
        }
        Event::PortsCapped { cap } => {
            if caps.ports.due(now) {
                log.warn(format_args!(
                    "{prefix}more than {cap} ports have TCP listeners; \
                     --listening-ports breaks down the first {cap} found"
                ));
            }
        }
        Event::CgroupsCapped { cap } => {
            if caps.cgroups.due(now) {
                log.warn(format_args!(
                    "{prefix}more than {cap} cgroups have sockets; --by-cgroup \
                     counts the rest in the row tagged cgroup=other"
                ));
            }
        }
        Event::CgroupsUnknown { why } => {
            if caps.no_cgroups.due(now) {
                let why = match why {
                    NoCgroups::Proc => "sockets read from /proc carry no cgroup",
                    NoCgroups::Kernel => {
                        "the kernel reports no socket cgroups (INET_DIAG_CGROUP_ID needs Linux 5.8)"
                    }
                    NoCgroups::NoMount => {
                        "no cgroup2 filesystem is mounted (a cgroup v1-only host), so cgroup ids have no path"
                    }
                };
                log.warn(format_args!(
                    "{prefix}{why}; --by-cgroup counts them in the row tagged cgroup=unattributed"
                ));
            }
        }
        Event::CountersCapped { cap } => {
            if caps.counters.due(now) {
                log.warn(format_args!(
                    "{prefix}the kernel prints more than {cap} counter names outside \
                     --counters' default set; the rest are left out"
                ));
            }
        }
        Event::DestinationsCapped { cap } => {
            if caps.destinations.due(now) {
                log.warn(format_args!(
                    "{prefix}more than {cap} (local address, destination) pairs \
                     have outbound sockets; the rest are counted in totals and in \
                     the destination row tagged other, so netstat_ephemeral's \
                     destinations field counts at most {cap} and the top destinations \
                     and max_per_destination may miss one"
                ));
            }
        }
    }
}

//! The namespaces a gather counts: which ones (`--netns` paths resolved
//! anew, `--all-netns` scanned anew at every gather), the collector kept for
//! each, and their labels (derived by `netns::names`, re-derived when they
//! may no longer hold). What cannot be seen is said, throttled.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use crate::log::Logger;
use telegraf_netstat::netns::names::{self, Labels, Representative};
use telegraf_netstat::netns::{self, NsId, Target};
use telegraf_netstat::Options;

use super::report::context;
use super::report::Caps;
use super::Count;
use crate::cli::Namespaces;
use crate::signals::Interrupt;
use crate::throttle::{say, ErrorThrottle, Reminder};

/// One namespace counted: its collector, its tag and labels, and the memory
/// of its failures and warnings.
pub(super) struct CountedNamespace<C> {
    /// `None` while a `--netns` path does not resolve.
    pub(super) collector: Option<C>,
    /// The `netns` tag; `None` for the own namespace without namespace
    /// options.
    pub(super) tag: Option<String>,
    pub(super) throttle: ErrorThrottle,
    /// Caps hit: said, then reminded.
    pub(super) caps: Caps,
    /// The container, pod and hostname tags of the namespace and how they
    /// were found (see `netns::names`).
    pub(super) naming: Option<Naming>,
    /// The last label problem said, not repeated while it lasts.
    label_problem: Option<String>,
}

/// The labels of one namespace identity and the process to check they
/// still hold.
pub(super) struct Naming {
    id: NsId,
    pub(super) labels: Labels,
    representative: Option<Representative>,
    /// Some process could not be read, or the namespace had no process
    /// yet (a pod's namespace is made before its sandbox starts in it):
    /// look again at the next gather.
    retry: bool,
}

impl<C: Count> CountedNamespace<C> {
    fn new(collector: Option<C>, tag: Option<String>) -> Self {
        CountedNamespace {
            collector,
            tag,
            throttle: ErrorThrottle::default(),
            caps: Caps::default(),
            naming: None,
            label_problem: None,
        }
    }

    fn id(&self) -> Option<NsId> {
        self.collector.as_ref()?.target().map(|t| t.id)
    }

    /// Whether the namespace `id` needs its labels derived (again): never
    /// derived, another namespace now, a failed lookup, no process seen in
    /// it yet, or the process that named it is gone.
    fn needs_naming(&self, proc_root: &Path, id: NsId) -> bool {
        match &self.naming {
            Some(n) if n.id == id && !n.retry => n
                .representative
                .is_some_and(|r| !names::still_there(proc_root, r, id)),
            _ => true,
        }
    }

    /// Takes the labels derived from the namespace's processes; what could
    /// not be read or decided is said with `W! `, once while it lasts.
    fn name(&mut self, id: NsId, named: names::Named, log: &Logger) {
        let tag = self.tag.as_deref().unwrap_or_default();
        // Say exactly what is left out: a hostname that could not be read
        // leaves the container and pod tags in place.
        let missing = if named.labels.container_id.is_some() || named.labels.pod_uid.is_some() {
            "no hostname tag"
        } else {
            "no container, pod or hostname tags"
        };
        let problem = named.problems.first().map(|p| {
            format!(
                "network namespace {tag}: {missing} until its processes can be read \
                 (tried again at every gather): {p}"
            )
        });
        if let Some(w) = &named.withheld {
            log.debug(format_args!("network namespace {tag}: {w}"));
        }
        match &problem {
            Some(p) if self.label_problem.as_ref() != Some(p) => log.warn(format_args!("{p}")),
            _ => {}
        }
        self.label_problem = problem;
        if let Some(a) = &named.ambiguous {
            log.warn(format_args!("network namespace {tag}: {a}"));
        }
        self.naming = Some(Naming {
            id,
            labels: named.labels,
            retry: !named.problems.is_empty() || named.representative.is_none() && !named.host,
            representative: named.representative,
        });
    }

    /// Points it at `target`, keeping its collector (and socket) if the
    /// namespace is the one it already counts.
    fn point_at(&mut self, options: &Options, target: Target) {
        self.tag = Some(target.tag.clone());
        match &mut self.collector {
            Some(c) if c.target().is_some_and(|t| t.id == target.id) => c.retarget(target),
            _ => self.collector = Some(C::for_namespace(options, Some(target))),
        }
    }
}

/// Every namespace counted, in the order their rows are printed.
pub(super) struct NamespaceSet<C> {
    which: Namespaces,
    pub(super) options: Options,
    /// Tag namespaces with container, pod and hostname labels.
    labels: bool,
    /// `Namespaces::Own`: one. `Listed`: one per path, in order. `All`: the
    /// namespaces of the last scan, in its order.
    pub(super) list: Vec<CountedNamespace<C>>,
    /// Failures to list the namespaces for `--all-netns`.
    scan_throttle: ErrorThrottle,
    /// `--all-netns` found no process to look at.
    no_processes: Reminder,
    /// `--all-netns` could not look at some processes' namespaces.
    unreadable: Reminder,
    /// `--all-netns`: how many, at the last scan.
    pub(super) unreadable_processes: Option<u64>,
    /// `--all-netns`: the processes of each namespace, at the last scan.
    members: HashMap<NsId, Vec<u32>>,
}

impl<C: Count> NamespaceSet<C> {
    pub(super) fn new(which: Namespaces, options: Options, labels: bool) -> Self {
        let list = match &which {
            Namespaces::Own => vec![CountedNamespace::new(
                Some(C::for_namespace(&options, None)),
                None,
            )],
            Namespaces::Listed(paths) => paths
                .iter()
                .map(|p| CountedNamespace::new(None, Some(netns::tag_for(p, &options.proc_root))))
                .collect(),
            Namespaces::All => Vec::new(),
        };
        NamespaceSet {
            which,
            options,
            labels,
            list,
            scan_throttle: ErrorThrottle::default(),
            no_processes: Reminder::default(),
            unreadable: Reminder::default(),
            unreadable_processes: None,
            members: HashMap::new(),
        }
    }

    /// `--all-netns`: a namespace that vanished since the scan is dropped
    /// without a word.
    pub(super) fn scanned(&self) -> bool {
        self.which == Namespaces::All
    }

    /// Brings the list up to date with the namespaces that exist now.
    /// Returns how many `--netns` paths do not resolve (each said), or
    /// `None` when `--all-netns` cannot list the namespaces (said).
    pub(super) fn resolve(&mut self, log: &Logger) -> Option<usize> {
        let now = Instant::now();
        match &self.which {
            Namespaces::Own => Some(0),
            Namespaces::Listed(paths) => {
                let mut failed = 0;
                for (ns, path) in self.list.iter_mut().zip(paths) {
                    match Target::at(path, &self.options.proc_root) {
                        Ok(t) => ns.point_at(&self.options, t),
                        Err(e) => {
                            // Let go of the namespace; keep the failure memory.
                            ns.collector = None;
                            ns.tag = Some(netns::tag_for(path, &self.options.proc_root));
                            failed += 1;
                            let said =
                                ns.throttle
                                    .failed(&context(ns.tag.as_deref()), e.to_string(), now);
                            say(log, said);
                        }
                    }
                }
                Some(failed)
            }
            Namespaces::All => {
                let dirs = netns::NAMED_DIRS.map(Path::new);
                match netns::scan(&self.options.proc_root, &dirs) {
                    Ok(netns::Scan {
                        targets,
                        processes,
                        unreadable,
                        members,
                    }) => {
                        self.members = members;
                        say(log, self.scan_throttle.succeeded(""));
                        self.unreadable_processes = Some(unreadable as u64);
                        let mut failed = 0;
                        if unreadable > 0 {
                            // Incomplete: the namespaces only those processes
                            // are in are missing, so the gather is a partial one.
                            failed = 1;
                            if self.unreadable.due(now) {
                                let why = if netns::holds_cap_sys_ptrace() {
                                    "refused although CAP_SYS_PTRACE is held: they are in a user namespace \
                                     above this program's, or a security module refuses"
                                } else {
                                    "CAP_SYS_PTRACE is missing"
                                };
                                log.error(format_args!(
                                    "cannot look at the network namespace of {unreadable} processes under {} \
                                     ({why}): namespaces that only they are in are not counted",
                                    self.options.proc_root.display()
                                ));
                            }
                        } else {
                            self.unreadable = Reminder::default();
                        }
                        let none = processes == 0;
                        if none {
                            // Not even our own process: a wrong or empty proc
                            // root, so every unnamed namespace is missing.
                            failed = 1;
                        }
                        if none && self.no_processes.due(now) {
                            log.error(format_args!(
                                "found no process under {} whose network namespace can be looked at: \
                                 only the namespaces named in /run/netns are counted",
                                self.options.proc_root.display()
                            ));
                        } else if !none {
                            self.no_processes = Reminder::default();
                        }
                        let mut old: HashMap<NsId, CountedNamespace<C>> = self
                            .list
                            .drain(..)
                            .filter_map(|ns| Some((ns.id()?, ns)))
                            .collect();
                        for t in targets {
                            let mut ns = old
                                .remove(&t.id)
                                .unwrap_or_else(|| CountedNamespace::new(None, None));
                            ns.point_at(&self.options, t);
                            self.list.push(ns);
                        }
                        Some(failed)
                    }
                    Err(e) => {
                        let msg = format!("cannot list the network namespaces: {e}");
                        let said = self.scan_throttle.failed("", msg, now);
                        say(log, said);
                        None
                    }
                }
            }
        }
    }

    /// Gives every namespace seen for the first time its labels, and
    /// derives them again where they may no longer hold (see
    /// `CountedNamespace::needs_naming`): one walk over the processes finds
    /// the members of those namespaces, then one lookup each. `None` when
    /// `interrupt` asked to stop.
    pub(super) fn name(&mut self, log: &Logger, interrupt: &mut dyn Interrupt) -> Option<()> {
        if !self.labels || self.which == Namespaces::Own {
            return Some(());
        }
        let root = &self.options.proc_root;
        let stale: Vec<(usize, NsId)> = self
            .list
            .iter()
            .enumerate()
            .filter_map(|(i, ns)| {
                let id = ns.collector.as_ref()?.target()?.id;
                ns.needs_naming(root, id).then_some((i, id))
            })
            .collect();
        if stale.is_empty() {
            return Some(());
        }
        // `--all-netns` scanned the processes this gather; `--netns` walks
        // them now, only while some namespace needs it.
        let walked;
        let members = if self.which == Namespaces::All {
            &self.members
        } else {
            let ids: Vec<NsId> = stale.iter().map(|n| n.1).collect();
            walked = names::members(root, &ids);
            &walked
        };
        let host = names::Host::look(root);
        for (i, id) in stale {
            if interrupt.stop_requested() {
                return None;
            }
            let pids = members.get(&id).map(Vec::as_slice).unwrap_or_default();
            let named = names::derive(root, id, pids, &host);
            self.list[i].name(id, named, log);
        }
        Some(())
    }
}

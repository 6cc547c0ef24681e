//! At start, before any thread is spawned: the host's cgroup namespace
//! joined where the namespace labels or `--by-cgroup` need cgroup paths
//! (`telegraf_netstat::cgroupfs` says why and how), and what cannot be
//! had said once, with what to change.

use telegraf_netstat::cgroupfs::{cgroup2_hierarchy, in_initial_namespace, join_host_namespace};

use crate::cli::{Config, Namespaces};

/// Joins PID 1's cgroup namespace if this process runs in another one and
/// needs cgroup paths; a `W!` line for each thing it cannot have. Must run
/// on the main thread before any other starts: `setns` moves the calling
/// thread only, and threads spawned later start in its namespaces.
pub fn see(config: &Config) {
    let labels = config.netns_labels && config.namespaces != Namespaces::Own;
    let by_cgroup = config.print.cgroup;
    if !labels && !by_cgroup {
        return;
    }
    let log = &config.log;
    let root = &config.proc_root;
    match join_host_namespace(root) {
        // PID 1's namespace, joined or shared, is not the kernel's: a
        // container's init without the host's PID namespace, or a node's
        // inside a container (kind), whose paths are complete: said, not
        // warned.
        Ok(_) if !in_initial_namespace() => log.info(format_args!(
            "cgroup paths are read from the cgroup namespace of PID 1 under {}, which is \
             not the kernel's initial one (a container's, if this program does not see the \
             host's PID namespace or /proc): they start at its root. For the host's, run it \
             in the host's cgroup namespace (Docker: --cgroupns host)",
            root.display()
        )),
        Ok(true) => log.debug(format_args!(
            "joined the cgroup namespace of PID 1 under {}: cgroup paths are the host's",
            root.display()
        )),
        Ok(false) => {}
        Err(why) => {
            let lost = match (labels, by_cgroup) {
                (true, true) => {
                    "namespaces get no container_id or pod_uid tags and --by-cgroup names no cgroup"
                }
                (true, false) => "namespaces get no container_id or pod_uid tags",
                _ => "--by-cgroup names no cgroup",
            };
            log.warn(format_args!(
                "this program runs in a cgroup namespace other than the host's ({why}), \
                 where cgroup paths name nothing: {lost}. Run it in the host's cgroup \
                 namespace (Docker: --cgroupns host) or give it CAP_SYS_ADMIN and the \
                 host's PID namespace to join it (Kubernetes: hostPID, as \
                 deploy/kubernetes/exporter.yaml does)"
            ));
            return;
        }
    }
    if !by_cgroup {
        return;
    }
    let mountinfo = std::fs::read(root.join("self/mountinfo")).unwrap_or_default();
    if let Some(m) = cgroup2_hierarchy(&mountinfo).filter(|m| !m.whole()) {
        log.warn(format_args!(
            "--by-cgroup: the cgroup2 mount at {} shows only {}, not the whole hierarchy, \
             so cgroups outside it are counted in cgroup=unresolved; mount the host's \
             /sys/fs/cgroup into the container, read-only (Kubernetes: a hostPath volume, \
             as deploy/kubernetes/exporter.yaml does)",
            m.point.display(),
            m.root
        ));
    }
}

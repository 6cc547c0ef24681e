//! A real Docker container, counted and named by `--all-netns`: its line
//! carries Docker's full container ID and the hostname Docker set (a hostile
//! one, escaped), and counts the container's own listener.
//!
//! Needs root, a Docker daemon that answers (`tests/run` starts one) and a
//! static busybox (Debian `busybox-static`) to make an image from without a
//! registry; otherwise ignored (failed under CI).

mod support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use libtest_mimic::Arguments;
use support::{named, needs_root, run_trials, succeeded, Scratch, BIN};

const BUSYBOX: &str = "/bin/busybox";

fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("cannot run docker")
}

fn docker_ok(args: &[&str]) -> String {
    let out = succeeded(Command::new("docker").args(args));
    String::from_utf8(out).unwrap().trim().to_string()
}

fn setup() -> Result<(), String> {
    needs_root("Docker, and --all-netns joining namespaces")?;
    if !Path::new(BUSYBOX).exists() {
        return Err(format!("no {BUSYBOX} (Debian busybox-static)"));
    }
    match Command::new("docker").arg("info").output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(_) => Err("no Docker daemon answers (`tests/run` starts one as root)".into()),
        Err(e) => Err(format!("cannot run docker: {e}")),
    }
}

/// Containers and the image made here, removed when the test ends, however.
struct Cleanup {
    image: String,
    containers: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = docker(&["rm", "-f", c]);
        }
        let _ = docker(&["rmi", "-f", &self.image]);
    }
}

/// An image holding only a static busybox and the applet it runs.
fn import_image(name: &str) {
    let tree = Scratch::new("docker-image");
    let bin = tree.0.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(BUSYBOX, bin.join("busybox")).unwrap();
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "tar -C '{}' -c . | docker import - '{name}' >/dev/null",
            tree.0.display()
        ))
        .status()
        .unwrap();
    assert!(status.success(), "docker import failed");
}

fn a_container_is_named_by_its_docker_id_and_hostname() {
    let image = format!("telegraf-netstat-test-busybox:{}", std::process::id());
    let mut cleanup = Cleanup {
        image: image.clone(),
        containers: Vec::new(),
    };
    import_image(&image);
    // A hostname with every character influx escapes in a tag value.
    let hostname = "ev\"il,h=x y";
    let id = docker_ok(&[
        "run",
        "-d",
        "--hostname",
        hostname,
        "--network",
        "bridge",
        &image,
        "/bin/busybox",
        "nc",
        "-l",
        "-p",
        "8080",
    ]);
    cleanup.containers.push(id.clone());
    assert_eq!(id.len(), 64, "docker run printed {id:?}");
    assert_eq!(
        docker_ok(&["inspect", "-f", "{{.Config.Hostname}}", &id]),
        hostname
    );

    // The container's line: Docker's full ID, its hostname escaped for influx,
    // and its one listener (polled: nc listens once it has started).
    let want_tags = format!("container_id={id},hostname=ev\"il\\,h\\=x\\ y,netns=pid:");
    let deadline = Instant::now() + Duration::from_secs(20);
    let line = loop {
        let out = Command::new(BIN).arg("--all-netns").output().unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        let line = stdout.lines().find(|l| l.contains(&id)).map(str::to_string);
        if let Some(l) = &line {
            if l.contains("tcp_listen=1i") {
                break l.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "no line for container {id} with its listener: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        line.starts_with(&format!("netstat,{want_tags}")),
        "{line}\nwant tags {want_tags}"
    );
    assert!(line.contains(" tcp_close=0i,"), "{line}");
    assert!(line.contains(",tcp_established=0i,"), "{line}");
}

/// A host-network container shares the host's namespace, so no namespace
/// label can name it; `--by-cgroup` does, from the cgroup the kernel
/// attaches to its listener: the cgroup v2 path the container's process is
/// in (`0::` of /proc/PID/cgroup; `/docker/<id>` with the cgroupfs driver,
/// `/system.slice/docker-<id>.scope` with systemd's), tagged with Docker's
/// full ID.
fn a_host_network_container_is_named_by_its_cgroup() {
    let image = format!("telegraf-netstat-test-busybox-host:{}", std::process::id());
    let mut cleanup = Cleanup {
        image: image.clone(),
        containers: Vec::new(),
    };
    import_image(&image);
    let port = std::net::TcpListener::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let id = docker_ok(&[
        "run",
        "-d",
        "--network",
        "host",
        &image,
        "/bin/busybox",
        "httpd",
        "-f",
        "-p",
        &port,
    ]);
    cleanup.containers.push(id.clone());
    let pid = docker_ok(&["inspect", "-f", "{{.State.Pid}}", &id]);
    let v2 = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let path = v2
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .expect("no cgroup v2 line")
        .to_string();
    assert!(
        path.contains(&id),
        "the container's v2 cgroup {path} names no container"
    );
    let want = format!("netstat_cgroup,cgroup={path},container_id={id} ");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = Command::new(BIN)
            .args(["--by-cgroup", "--only", "cgroup"])
            .output()
            .unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        if let Some(line) = stdout.lines().find(|l| l.starts_with(&want)) {
            if line.contains(",tcp_listen=1i,") {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no row {want}with its listener: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn main() {
    let args = Arguments::from_args();
    let tests = tests![
        a_container_is_named_by_its_docker_id_and_hostname,
        a_host_network_container_is_named_by_its_cgroup,
    ];
    run_trials(args, setup(), named("docker", &tests));
}

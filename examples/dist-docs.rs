//! Writes the man page and the bash, zsh and fish completions of
//! telegraf-netstat into a directory, from the same clap definition that
//! parses the command line: they cannot drift from `--help`.
//!
//! usage: dist-docs OUT_DIR TARGET  (writes telegraf-netstat.1 and completions/)
//!
//! TARGET is the target triple of the binary the page goes with: this example
//! runs on the build machine (gnu), while the packaged binary is musl, and the
//! page's version line must name the packaged one.

use std::io::Write;
use std::path::PathBuf;

use clap_complete::{generate_to, Shell};

use telegraf_netstat::args;

fn main() -> std::io::Result<()> {
    let usage = "usage: dist-docs OUT_DIR TARGET";
    let mut args = std::env::args().skip(1);
    let out = PathBuf::from(args.next().expect(usage));
    let target = args.next().expect(usage);
    std::fs::create_dir_all(out.join("completions"))?;
    // clap keeps &'static str; this process writes one page and exits.
    let version: &'static str =
        Box::leak(format!("{} ({target})", env!("CARGO_PKG_VERSION")).into_boxed_str());
    let cmd = args::command().version(version);
    std::fs::write(out.join("telegraf-netstat.1"), man_page(&cmd)?)?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        generate_to(
            shell,
            &mut cmd.clone(),
            "telegraf-netstat",
            out.join("completions"),
        )?;
    }
    Ok(())
}

/// The page: clap_mangen's title, name, synopsis, description and options,
/// then sections of our own from the text `--help` ends with (EXAMPLES,
/// the Telegraf snippets as literal blocks, EXIT STATUS), ENVIRONMENT and
/// FILES, and the version. The footer names the program and the day of
/// SOURCE_DATE_EPOCH (the commit's, in dist/build): two builds of a commit
/// make the same page.
fn man_page(cmd: &clap::Command) -> std::io::Result<Vec<u8>> {
    let epoch: u64 = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let man = clap_mangen::Man::new(cmd.clone())
        .date(day(epoch))
        .source(format!("telegraf-netstat {}", env!("CARGO_PKG_VERSION")))
        .manual("User Commands");
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    man.render_options_section(&mut page)?;
    let after = cmd
        .get_after_help()
        .map(|h| h.to_string())
        .unwrap_or_default();
    // From here on, left-aligned: no justification stretching the headings.
    writeln!(page, ".SH EXAMPLES\n.ad l")?;
    for para in after.split("\n\n") {
        let (head, body) = para.split_once('\n').unwrap_or((para, ""));
        if let Some(status) = para.strip_prefix("Exit status: ") {
            writeln!(page, ".SH \"EXIT STATUS\"")?;
            writeln!(page, "{}", text(&status.replace('\n', " ")))?;
            continue;
        }
        if head != "Examples:" {
            writeln!(page, ".PP\n{}", text(head))?;
        }
        // Literal lines: no filling, no justification.
        writeln!(page, ".PP\n.nf")?;
        for line in body.lines() {
            writeln!(page, "{}", text(line))?;
        }
        writeln!(page, ".fi")?;
    }
    page.extend_from_slice(ENVIRONMENT_AND_FILES.as_bytes());
    man.render_version_section(&mut page)?;
    Ok(page)
}

const ENVIRONMENT_AND_FILES: &str = r#".SH ENVIRONMENT
.TP
\fBHOST_PROC\fR
The proc filesystem to read when \fB\-\-proc\-root\fR is not given (the
/proc source, and the processes \fB\-\-all\-netns\fR looks at), as
Telegraf's plugins read it: e.g. HOST_PROC=/hostfs/proc in a container that
mounts the host's /proc there. Unset or empty: /proc.
.TP
\fBLISTEN_FDS\fR, \fBLISTEN_PID\fR
Set by systemd for socket activation: the sockets
\fB\-\-web.systemd\-socket\fR serves on.
.SH FILES
.TP
\fI/usr/lib/systemd/system/telegraf\-netstat\-exporter.socket\fR, \fI.service\fR
The exporter's units, installed by the packages: the socket (127.0.0.1:10273)
is enabled on Debian, left to the preset on Fedora and RHEL.
.TP
\fI/etc/default/telegraf\-netstat\fR (Debian), \fI/etc/sysconfig/telegraf\-netstat\fR (RPM)
ARGS, the exporter service's flags.
.TP
\fI/usr/share/doc/telegraf\-netstat/examples/\fR
Telegraf snippets, the node_exporter textfile unit, alerting rules and a
Grafana dashboard.
"#;

/// A line of text for roff: backslashes and dashes escaped (`-` would be a
/// hyphen, not the minus a flag is typed with), a leading `.` or `'` kept
/// from being a request.
fn text(line: &str) -> String {
    let escaped = line.replace('\\', "\\e").replace('-', "\\-");
    match escaped.starts_with(['.', '\'']) {
        true => format!("\\&{escaped}"),
        false => escaped,
    }
}

/// `YYYY-MM-DD` of a time in seconds since the epoch (UTC): the civil
/// date of a day number, by Howard Hinnant's `civil_from_days` (the
/// binary's log lines have their own, with the time of day).
fn day(secs: u64) -> String {
    let z = secs / 86_400 + 719_468;
    let (era, doe) = (z / 146_097, z % 146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let (d, m) = (doy - (153 * mp + 2) / 5 + 1, (mp + 2) % 12 + 1);
    format!("{:04}-{m:02}-{d:02}", yoe + era * 400 + u64::from(m <= 2))
}

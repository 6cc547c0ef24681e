#!/bin/sh
# telegraf-netstat's shell fallback: POSIX sh + ss (iproute2) + awk, for hosts
# where no binary can be installed. Prints the same line as the binary: one
# `netstat` metric, 13 integer fields sorted by key, IPv4 + IPv6, request
# sockets as SYN_RECV, no bound-but-idle sockets. Costs about 2.7x the
# binary per gather (BENCHMARKS.md: ss -tan + ss -uan).
#
#   [[inputs.exec]]
#     ## Telegraf 1.39 and later (the string form below is deprecated there
#     ## and removed in 1.45):
#     commands = [["/usr/local/bin/netstat.sh"]]
#     ## Telegraf before 1.39:
#     # commands = ["/usr/local/bin/netstat.sh"]
#     timeout = "5s"
#     data_format = "influx"
set -eu

if ! command -v ss >/dev/null 2>&1; then
    echo "E! ss not found: install iproute2" >&2
    exit 1
fi

# Name the eleven real states: a bare -a also lists bound-inactive sockets on
# new iproute2 and kernels. With more than one state the State column stays.
tcp=$(ss -H -t -n state established state syn-sent state syn-recv \
    state fin-wait-1 state fin-wait-2 state time-wait state closed \
    state close-wait state last-ack state listening state closing) || {
    echo "E! ss -t failed" >&2
    exit 1
}
udp=$(ss -H -u -a -n) || {
    echo "E! ss -u failed" >&2
    exit 1
}

printf '%s\n' "$tcp" | awk -v udp_lines="$(printf '%s' "$udp" | grep -c . || true)" '
BEGIN {
    n["ESTAB"] = "tcp_established"; n["SYN-SENT"] = "tcp_syn_sent"
    n["SYN-RECV"] = "tcp_syn_recv"; n["FIN-WAIT-1"] = "tcp_fin_wait1"
    n["FIN-WAIT-2"] = "tcp_fin_wait2"; n["TIME-WAIT"] = "tcp_time_wait"
    n["UNCONN"] = "tcp_close"; n["CLOSE"] = "tcp_close"
    n["CLOSE-WAIT"] = "tcp_close_wait"; n["LAST-ACK"] = "tcp_last_ack"
    n["LISTEN"] = "tcp_listen"; n["CLOSING"] = "tcp_closing"
    split("tcp_close tcp_close_wait tcp_closing tcp_established tcp_fin_wait1 tcp_fin_wait2 tcp_last_ack tcp_listen tcp_none tcp_syn_recv tcp_syn_sent tcp_time_wait udp_socket", keys, " ")
    for (i in keys) c[keys[i]] = 0
}
$1 in n { c[n[$1]]++ }
END {
    c["udp_socket"] = udp_lines + 0
    line = "netstat "
    for (i = 1; i <= 13; i++) line = line (i > 1 ? "," : "") keys[i] "=" c[keys[i]] "i"
    print line
}'

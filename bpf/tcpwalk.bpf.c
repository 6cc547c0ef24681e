// SPDX-License-Identifier: GPL-2.0-only OR MIT
/* One walk of the TCP hash tables the calling thread's network namespace
 * uses (the host's, shared by every namespace that has none of its own),
 * counting sockets per namespace and state.
 *
 * Run as an iter/task program: the kernel calls it once per task while the
 * iterator's file is read, with a chance to reschedule between calls, so
 * each call walks one slice (at most SLICE groups of GROUP buckets, and no
 * group started after BUDGET_NS in the call) and the cursor carries over to
 * the next call (and the next read, if the tasks run out first: the loader
 * reads on while the `progress` map says groups were walked; a read also
 * stops after READ_SLICES calls, so the loader can ask between reads
 * whether to stop). A bucket is
 * walked under RCU like the kernel's lookups (__inet_lookup_established):
 * sockets are SLAB_TYPESAFE_BY_RCU, so one freed and reused during the walk
 * can lead into another chain; the chain's end then carries another
 * bucket's nulls value and the bucket is walked again. Sockets of a chain
 * are counted only after it ended on its own nulls value.
 *
 * Output: the counts in the `counts` map (key: struct net address; value:
 * [0] generation of the walk that wrote it, [1..13] IPv4 sockets per state
 * (13: any state above 12, or 0), [14] the namespace's inode, [15] 1 when
 * the namespace's own hash tables are the ones walked (0: it has tables of
 * its own, and only its listeners, in the shared listening hash, were
 * seen), [17..29] IPv6 sockets per state, [16] sockets of any other
 * family, [32..39] when the loader set `queues`: four 64-bit sums, IPv4
 * bytes received and not read, sent and not acknowledged, then IPv6's),
 * and at the end of a walk one struct trailer written to the iterator's
 * file.
 *
 * The bytes queued are those sock_diag reports (net/ipv4/tcp_diag.c,
 * tcp_diag_get_info()): for a full socket other than a listener,
 * max(rcv_nxt - copied_seq, 0) and write_seq - snd_una of its tcp_sock;
 * TIME_WAIT and request sockets report 0 (net/ipv4/inet_diag.c,
 * inet_twsk_diag_fill(), inet_req_diag_fill()), and listeners their accept
 * queue, which the sums leave out as the netlink source does. */
#include "tcpwalk.h"

#define SLICE 64 /* groups per call at most: 2048 buckets */
#define BUDGET_NS 250000 /* a call stops after the group that passes it */
#define READ_SLICES 16 /* calls per read at most: the loader asks between reads whether to stop */
#define GROUP 32
#define SOCK_BUF 128
#define HEADS_BUF (GROUP * 16)
#define MAX_CHAIN 255
#define ATTEMPTS 4
#define LISTENING_NULLS_BASE (1U << 29)
#define TRAILER_MAGIC 0x6b6c617774706374ULL /* "tcpwalk" */
#define VALUE_WORDS 40

/* Set by the loader before the load (the verifier then leaves out the reads
 * when it is 0): also sum each namespace's bytes queued. */
const volatile __u32 queues = 0;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* entries as namespaces appear: a cheap load */
	__type(key, __u64);
	__type(value, __u32[VALUE_WORDS]);
} counts SEC(".maps");

/* Groups walked since the load, for the loader to see a read without the
 * trailer made progress (the tasks a read visits can be few: those of the
 * reader's PID namespace). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} progress SEC(".maps");

struct trailer {
	__u64 magic;
	__u64 generation;
	__u64 sockets;
	__u64 restarts;
	__u64 broken;     /* buckets given up after ATTEMPTS walks, or unreadable */
	__u64 long_chains;
	__u64 map_full;
	__u64 buckets;
	__u64 slices;
	__u64 max_slice_ns; /* the longest call, which holds the CPU */
	__u64 slices_over_1ms; /* wall time: interrupts and a host's steal count too */
	__u64 pernet; /* the tables walked are a namespace's own, not the host's */
	__u64 inum;   /* the inode of the namespace whose tables were walked */
};

struct entry {
	__u64 net;
	__u64 slot; /* index in the value: family half + state */
	__u64 rq, wq; /* bytes queued, when `queues` */
};

/* Walk state, kept between calls. */
__u64 session, session_slices, hashinfo, ehash, lhash2, cursor, total, done_session, walking, ehash_groups, slice_t0, slice_done;
__u32 ehash_mask, lhash2_mask;
struct trailer out;
struct entry scratch[MAX_CHAIN + 1];
/* One read of a socket: from skc_state's 8-byte word to the end of
 * skc_nulls_node.next; one read of a group's bucket heads. */
__u64 sock_buf[SOCK_BUF / 8];
__u64 heads_buf[HEADS_BUF / 8];

/* The loops' state lives in this global (a map value the verifier does not
 * track value by value), so each callback is verified in a few states. */
struct chain {
	__u64 node;
	__u64 n;
	__u64 end; /* the nulls value the chain ended on, ~0 if none */
	__u64 head, expect, table, start;
	__u64 first; /* the head read with the group, for the first attempt */
	__u64 base, size, count, off, nulls_base; /* the group */
} cur;

#define SK_OFF(f) FIELD_OFFSET(((struct sock_common *)0)->f)

#define TP_OFF(f) FIELD_OFFSET(((struct tcp_sock *)0)->f)

/* The bytes queued on the tcp_sock at `sk`, as tcp_diag_get_info() says them. */
static int read_queues(__u64 sk, struct entry *e)
{
	__u32 rcv_nxt, copied_seq, write_seq, snd_una;
	if (bpf_probe_read_kernel(&rcv_nxt, 4, (void *)(sk + TP_OFF(rcv_nxt))) < 0 ||
	    bpf_probe_read_kernel(&copied_seq, 4, (void *)(sk + TP_OFF(copied_seq))) < 0 ||
	    bpf_probe_read_kernel(&write_seq, 4, (void *)(sk + TP_OFF(write_seq))) < 0 ||
	    bpf_probe_read_kernel(&snd_una, 4, (void *)(sk + TP_OFF(snd_una))) < 0)
		return -1;
	int rq = (int)(rcv_nxt - copied_seq);
	e->rq = rq > 0 ? rq : 0;
	e->wq = write_seq - snd_una;
	return 0;
}

static long node_cb(__u64 i, void *unused)
{
	struct chain *c = &cur;
	__u64 node = c->node;
	if (node & 1) {
		c->end = node >> 1;
		return 1;
	}
	if (c->n > MAX_CHAIN)
		return 1;
	__u64 lo = SK_OFF(skc_family) & ~7ULL;
	__u64 span = SK_OFF(skc_nulls_node) + 8 - lo;
	__u64 at_net = SK_OFF(skc_net) - lo;
	__u64 at_next = SK_OFF(skc_nulls_node) - lo;
	__u64 at_state = SK_OFF(skc_state) - lo;
	__u64 at_family = SK_OFF(skc_family) - lo;
	if (SK_OFF(skc_state) < lo || SK_OFF(skc_net) < lo || SK_OFF(skc_nulls_node) < lo ||
	    span > SOCK_BUF || at_net > SOCK_BUF - 8 || at_next > SOCK_BUF - 8 || at_state > SOCK_BUF - 1 ||
	    at_family > SOCK_BUF - 2) {
		out.broken++;
		return 1;
	}
	__u64 sk = node - SK_OFF(skc_nulls_node);
	c->node = 1; /* a failed read ends the chain on nulls value 0 */
	if (bpf_probe_read_kernel(sock_buf, span, (void *)(sk + lo)) < 0)
		return 0;
	struct entry *e = &scratch[c->n & MAX_CHAIN];
	e->net = *(__u64 *)((char *)sock_buf + at_net);
	__u64 state = *((unsigned char *)sock_buf + at_state);
	__u16 family = *(__u16 *)((char *)sock_buf + at_family);
	if (state > 13 || state == 0)
		state = 13;
	e->rq = 0;
	e->wq = 0;
	/* Full sockets but listeners: not TIME_WAIT (6), LISTEN (10), a request (12). */
	if (queues && state != 6 && state != 10 && state != 12 && state != 13 && read_queues(sk, e) < 0) {
		out.broken++;
		return 1;
	}
#ifdef MISCOUNT
	/* Test build: TIME_WAIT counted as CLOSE, for the checks to catch. */
	if (state == 6)
		state = 7;
#endif
#ifdef MISCOUNT_ESTABLISHED
	/* Test build: ESTABLISHED, which only the established hash holds,
	 * counted as CLOSE_WAIT, for a one-shot self-test to catch. */
	if (state == 1)
		state = 8;
#endif
	e->slot = family == 2 ? state : family == 10 ? 16 + state : 16;
	c->node = *(__u64 *)((char *)sock_buf + at_next);
	c->n++;
	return 0;
}

static long commit_cb(__u64 i, void *unused)
{
	struct entry *e = &scratch[i & MAX_CHAIN];
	__u64 net = e->net;
	__u32 *v = bpf_map_lookup_elem(&counts, &net);
	if (!v) {
		__u32 fresh[VALUE_WORDS] = {};
		bpf_map_update_elem(&counts, &net, fresh, BPF_NOEXIST);
		v = bpf_map_lookup_elem(&counts, &net);
		if (!v) {
			out.map_full++;
			return 0;
		}
	}
	if (v[0] != (__u32)out.generation) {
		for (int k = 1; k < VALUE_WORDS; k++)
			v[k] = 0;
		v[0] = (__u32)out.generation;
		bpf_probe_read_kernel(&v[14], 4, (void *)(net + FIELD_OFFSET(((struct net *)0)->ns.inum)));
		__u64 h = 0;
		bpf_probe_read_kernel(&h, 8,
				      (void *)(net + FIELD_OFFSET(((struct net *)0)->ipv4.tcp_death_row.hashinfo)));
		v[15] = h == hashinfo;
	}
	__u64 slot = e->slot & 31;
	v[slot]++;
	if (queues && slot != 16) {
		__u64 *q = (__u64 *)&v[32];
		__u64 half = slot > 16 ? 2 : 0;
		q[half] += e->rq;
		q[half + 1] += e->wq;
	}
	return 0;
}

/* One walk of the bucket's chain: 1 (stop) once it is counted or given up. */
static long attempt_cb(__u64 a, void *unused)
{
	struct chain *c = &cur;
	c->n = 0;
	c->end = ~0ULL;
	if (a == 0) {
		c->node = c->first;
	} else {
		c->node = 1;
		bpf_probe_read_kernel(&c->node, 8, (void *)c->head);
	}
	bpf_loop(MAX_CHAIN + 2, node_cb, 0, 0);
#ifdef INJECT_RESTART
	/* Test build: every first walk of a non-empty chain "ends elsewhere". */
	if (a == 0 && c->n > 0)
		c->end = ~0ULL;
#endif
	if (c->end == c->expect) {
#ifndef NO_COMMIT
		bpf_loop(c->n, commit_cb, 0, 0);
#endif
		out.sockets += c->n;
		return 1;
	}
	if (c->n > MAX_CHAIN) {
		out.long_chains++;
		return 1;
	}
	out.restarts++;
	if (a == ATTEMPTS - 1)
		out.broken++;
	return 0;
}

/* Bucket j of the group whose heads are in heads_buf. */
static long head_cb(__u64 j, void *unused)
{
	struct chain *c = &cur;
	__u64 at = j * c->size + c->off;
	if (at > HEADS_BUF - 8)
		return 1;
	__u64 first = *(__u64 *)((char *)heads_buf + at);
	__u64 expect = c->nulls_base + c->base + j;
	if (first == ((expect << 1) | 1))
		return 0; /* empty */
	c->first = first;
	c->expect = expect;
	c->head = c->table + (c->base + j) * c->size + c->off;
	bpf_loop(ATTEMPTS, attempt_cb, 0, 0);
	return 0;
}

/* Group g of the slice: GROUP buckets of ehash, then of lhash2. */
static long group_cb(__u64 g, void *unused)
{
	struct chain *c = &cur;
	if (g > 0 && bpf_ktime_get_ns() - slice_t0 > BUDGET_NS)
		return 1;
	__u64 n, idx = c->start + g;
	if (idx < ehash_groups) {
		c->table = ehash;
		c->size = TYPE_SIZE(struct inet_ehash_bucket);
		c->off = FIELD_OFFSET(((struct inet_ehash_bucket *)0)->chain.first);
		c->nulls_base = 0;
		n = (__u64)ehash_mask + 1;
	} else {
		idx -= ehash_groups;
		c->table = lhash2;
		c->size = TYPE_SIZE(struct inet_listen_hashbucket);
		c->off = FIELD_OFFSET(((struct inet_listen_hashbucket *)0)->nulls_head.first);
		c->nulls_base = LISTENING_NULLS_BASE;
		n = (__u64)lhash2_mask + 1;
	}
	c->base = idx * GROUP;
	c->count = n - c->base;
	if (c->count > GROUP)
		c->count = GROUP;
	__u64 len = c->count * c->size;
	if (len > HEADS_BUF || len == 0) {
		out.broken++;
		return 1;
	}
	if (bpf_probe_read_kernel(heads_buf, len, (void *)(c->table + c->base * c->size)) < 0) {
		out.broken++;
		return 1;
	}
	/* Most groups of a sparse hash are empty: tell at once, without a
	 * callback per bucket (straight-line code: cheap to verify). */
	__u64 size = c->size, off = c->off, busy = 1;
	if (c->count == GROUP && size <= HEADS_BUF / GROUP && off <= HEADS_BUF / GROUP - 8) {
		__u64 expect = ((c->nulls_base + c->base) << 1) | 1;
		busy = 0;
#pragma unroll
		for (int j = 0; j < GROUP; j++)
			busy |= *(__u64 *)((char *)heads_buf + j * size + off) ^ (expect + 2 * j);
	}
	if (busy)
		bpf_loop(c->count, head_cb, 0, 0);
	out.buckets += c->count;
	slice_done = g + 1;
	return 0;
}

static int start(void)
{
	struct task_struct *t = bpf_get_current_task_btf();
	struct net *net = t->nsproxy->net_ns;
	struct inet_hashinfo *h = net->ipv4.tcp_death_row.hashinfo;
	if (!h)
		return -1;
	hashinfo = (__u64)h;
	ehash = (__u64)h->ehash;
	lhash2 = (__u64)h->lhash2;
	ehash_mask = h->ehash_mask;
	lhash2_mask = h->lhash2_mask;
	if (!ehash || !lhash2)
		return -1;
	__u64 gen = out.generation + 1;
	__builtin_memset(&out, 0, sizeof(out));
	out.generation = gen;
	out.pernet = h->pernet;
	out.inum = net->ns.inum;
	ehash_groups = ((__u64)ehash_mask + GROUP) / GROUP;
	total = ehash_groups + ((__u64)lhash2_mask + GROUP) / GROUP;
	cursor = 0;
	walking = 1;
	return 0;
}

SEC("iter/task")
int tcpwalk(struct bpf_iter__task *ctx)
{
	struct bpf_iter_meta *meta = ctx->meta;
	if (!ctx->task)
		return 0;
	if (meta->session_id == done_session)
		return 0;
	if (meta->session_id != session) {
		session = meta->session_id;
		session_slices = 0;
	}
	if (session_slices >= READ_SLICES)
		return 0;
	session_slices++;
	if (!walking && start() < 0)
		return 0;
	slice_t0 = bpf_ktime_get_ns();
	__u64 n = total - cursor;
	if (n > SLICE)
		n = SLICE;
	cur.start = cursor;
	slice_done = 0;
	bpf_loop(n, group_cb, 0, 0);
	if (slice_done == 0) /* a group that could not be read: move on */
		slice_done = 1;
	cursor += slice_done;
	__u32 zero = 0;
	__u64 *walked = bpf_map_lookup_elem(&progress, &zero);
	if (walked)
		*walked += slice_done;
	__u64 dt = bpf_ktime_get_ns() - slice_t0;
	if (dt > out.max_slice_ns)
		out.max_slice_ns = dt;
	if (dt > 1000000)
		out.slices_over_1ms++;
	out.slices++;
	if (cursor < total)
		return 0;
	out.magic = TRAILER_MAGIC;
	bpf_seq_write(meta->seq, &out, sizeof(out));
	walking = 0;
	done_session = meta->session_id;
	return 0;
}

/* GPL-compatible for the kernel (license_is_gpl_compatible()): the walk
 * calls GPL-only helpers. */
char LICENSE[] SEC("license") = "Dual MIT/GPL";

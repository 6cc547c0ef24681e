// SPDX-License-Identifier: GPL-2.0-only OR MIT
/* The kernel types tcpwalk.bpf.c reads, hand-written: only the fields it
 * reads, each struct marked preserve_access_index so clang records a CO-RE
 * relocation and the loader fixes every offset and size from the running
 * kernel's BTF (/sys/kernel/btf/vmlinux). Nothing here needs the build
 * host's BTF; a field the running kernel lacks fails the load. */
#ifndef TCPWALK_H
#define TCPWALK_H

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef long long __s64;

#define PAI __attribute__((preserve_access_index))

struct hlist_nulls_node {
	struct hlist_nulls_node *next;
} PAI;

struct hlist_nulls_head {
	struct hlist_nulls_node *first;
} PAI;

struct inet_ehash_bucket {
	struct hlist_nulls_head chain;
} PAI;

struct inet_listen_hashbucket {
	struct hlist_nulls_head nulls_head;
} PAI;

struct inet_hashinfo {
	struct inet_ehash_bucket *ehash;
	unsigned int ehash_mask;
	unsigned int lhash2_mask;
	struct inet_listen_hashbucket *lhash2;
	_Bool pernet;
} PAI;

struct inet_timewait_death_row {
	struct inet_hashinfo *hashinfo;
} PAI;

struct netns_ipv4 {
	struct inet_timewait_death_row tcp_death_row;
} PAI;

struct ns_common {
	unsigned int inum;
} PAI;

struct net {
	struct ns_common ns;
	struct netns_ipv4 ipv4;
} PAI;

struct nsproxy {
	struct net *net_ns;
} PAI;

struct task_struct {
	struct nsproxy *nsproxy;
} PAI;

typedef struct {
	struct net *net;
} possible_net_t;

struct sock_common {
	unsigned short skc_family;
	volatile unsigned char skc_state;
	possible_net_t skc_net;
	struct hlist_nulls_node skc_nulls_node;
} PAI;

/* Read only when the loader asks for queued bytes (`queues`). */
struct tcp_sock {
	__u32 rcv_nxt;
	__u32 copied_seq;
	__u32 snd_una;
	__u32 write_seq;
} PAI;

struct seq_file;

struct bpf_iter_meta {
	struct seq_file *seq;
	__u64 session_id;
	__u64 seq_num;
} PAI;

struct bpf_iter__task {
	struct bpf_iter_meta *meta;
	struct task_struct *task;
} PAI;

/* Helpers, by their number in enum bpf_func_id (include/uapi/linux/bpf.h). */
static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static long (*bpf_map_update_elem)(void *map, const void *key, const void *value, __u64 flags) = (void *)2;
static __u64 (*bpf_ktime_get_ns)(void) = (void *)5;
static long (*bpf_probe_read_kernel)(void *dst, __u32 size, const void *src) = (void *)113;
static long (*bpf_seq_write)(struct seq_file *m, const void *data, __u32 len) = (void *)127;
static struct task_struct *(*bpf_get_current_task_btf)(void) = (void *)158;
static long (*bpf_loop)(__u32 nr_loops, void *callback_fn, void *callback_ctx, __u64 flags) = (void *)181;

#define SEC(name) __attribute__((section(name), used))
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name
#define BPF_MAP_TYPE_HASH 1
#define BPF_MAP_TYPE_ARRAY 2
#define BPF_NOEXIST 1
#define BPF_F_NO_PREALLOC 1

/* CO-RE: the running kernel's offset of a field and size of a type. */
#define FIELD_OFFSET(field) __builtin_preserve_field_info(field, 0)
#define TYPE_SIZE(type) __builtin_preserve_type_info(*(typeof(type) *)0, 1)

#endif

#include "cluster.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The node table's bound: no more masters than slots can serve at once.
 * The unit test lowers it to reach the reuse of unused indexes. */
#ifndef CLUSTER_NODES_MAX
#define CLUSTER_NODES_MAX CLUSTER_SLOTS
#endif

_Static_assert(CLUSTER_NODES_MAX >= 1 && CLUSTER_NODES_MAX <= INT16_MAX + 1, "node indexes fit the slot table");
_Static_assert((CLUSTER_SLOTS & (CLUSTER_SLOTS - 1)) == 0, "slots are a power of two");

struct cluster_node {
	char host[CLUSTER_HOST_MAX + 1];
	int port;
	unsigned nslots; /* slots pointing here; 0: unused */
};

struct cluster_table {
	struct cluster_node *v;
	size_t n, cap;
};

struct cluster_map {
	struct cluster_table t;
	int16_t *slot; /* CLUSTER_SLOTS node indexes, -1: no node */
};

/* Bitwise rather than by table: keys are short, and this stays obviously
 * the spec's algorithm. */
uint16_t cluster_crc16(const void *buf, size_t len)
{
	const unsigned char *p = buf;
	unsigned crc = 0;

	for (size_t i = 0; i < len; i++) {
		crc ^= (unsigned)p[i] << 8;
		for (int b = 0; b < 8; b++)
			crc = (crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1) & 0xffff;
	}
	return (uint16_t)crc;
}

unsigned cluster_key_slot(const char *key, size_t len)
{
	const char *open = len ? memchr(key, '{', len) : NULL;

	if (open != NULL) {
		size_t rest = len - (size_t)(open - key) - 1;
		const char *close = rest ? memchr(open + 1, '}', rest) : NULL;

		/* "{}" is no tag: the whole key is hashed. */
		if (close != NULL && close > open + 1) {
			key = open + 1;
			len = (size_t)(close - key);
		}
	}
	return cluster_crc16(key, len) & (CLUSTER_SLOTS - 1);
}

static bool cluster_is(const char *arg, size_t len, const char *name)
{
	return len == strlen(name) && strncasecmp(arg, name, len) == 0;
}

static bool cluster_is_any(const char *arg, size_t len, const char *const *names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (cluster_is(arg, len, names[i]))
			return true;
	return false;
}

/* numkeys as Redis reads a count, capped: a decimal without sign or leading
 * zero, else -1; MAX + 1 for anything above MAX. */
static long cluster_count(const char *s, size_t len, long max)
{
	long v = 0;

	if (len == 0 || (s[0] == '0' && len > 1))
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		if (v <= max)
			v = v * 10 + (s[i] - '0');
	}
	return v > max ? max + 1 : v;
}

static size_t cluster_arg_len(const char *const *argv, const size_t *argvlen, int i)
{
	return argvlen ? argvlen[i] : strlen(argv[i]);
}

int cluster_command_key(int argc, const char *const *argv, const size_t *argvlen, const char **key,
	size_t *klen)
{
	static const char *const keyless[] = { "PING", "WAIT", "INFO", "MULTI", "EXEC", "DISCARD", "SCRIPT",
		"CLUSTER", "ROLE", "CLIENT", "AUTH", "SELECT", "HELLO", "READONLY", "READWRITE", "ASKING",
		"PUBLISH" };
	static const char *const scripts[] = { "EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO" };
	/* A subcommand first, then the key. */
	static const char *const second[] = { "XGROUP", "XINFO", "OBJECT", "MEMORY" };
	size_t len;
	int at = 1;

	if (argc < 1 || argv == NULL)
		return -1;
	len = cluster_arg_len(argv, argvlen, 0);
	if (cluster_is_any(argv[0], len, keyless, sizeof(keyless) / sizeof(keyless[0])))
		return 1;
	if (cluster_is_any(argv[0], len, scripts, sizeof(scripts) / sizeof(scripts[0]))) {
		long nkeys = argc < 3 ? -1 : cluster_count(argv[2], cluster_arg_len(argv, argvlen, 2), argc - 3);

		if (nkeys < 1 || nkeys > argc - 3)
			return -1;
		at = 3;
	} else if (cluster_is_any(argv[0], len, second, sizeof(second) / sizeof(second[0]))) {
		at = 2;
	} else if (cluster_is(argv[0], len, "XREAD") || cluster_is(argv[0], len, "XREADGROUP")) {
		/* The options are skipped as Redis' xreadGetKeys does, so that a
		 * group or consumer named "streams" is not taken for the token. */
		for (at = 1; at < argc; at++) {
			const char *a = argv[at];
			size_t l = cluster_arg_len(argv, argvlen, at);

			if (cluster_is(a, l, "BLOCK") || cluster_is(a, l, "COUNT"))
				at++;
			else if (cluster_is(a, l, "GROUP"))
				at += 2;
			else if (cluster_is(a, l, "STREAMS"))
				break;
			else if (!cluster_is(a, l, "NOACK"))
				return -1;
		}
		at++;
	}
	if (at >= argc)
		return -1;
	*key = argv[at];
	*klen = cluster_arg_len(argv, argvlen, at);
	return 0;
}

/* Decimal digits at *P (at least one) up to the first other byte, at most
 * MAX; *P is moved past them. */
static bool cluster_digits(const char **p, const char *end, unsigned long max, unsigned long *out)
{
	const char *s = *p;
	unsigned long v = 0;

	while (s < end && *s >= '0' && *s <= '9') {
		v = v * 10 + (unsigned long)(*s++ - '0');
		if (v > max)
			return false;
	}
	if (s == *p)
		return false;
	*p = s;
	*out = v;
	return true;
}

int cluster_redirect_parse(const char *err, size_t len, struct cluster_redirect *out)
{
	const char *end = err + len, *p, *host, *colon;
	struct cluster_redirect r = { 0 };
	unsigned long slot, port;
	size_t hl;

	if (len >= 6 && memcmp(err, "MOVED ", 6) == 0) {
		p = err + 6;
	} else if (len >= 4 && memcmp(err, "ASK ", 4) == 0) {
		p = err + 4;
		r.ask = true;
	} else {
		return -1;
	}
	if (!cluster_digits(&p, end, CLUSTER_SLOTS - 1, &slot) || p == end || *p++ != ' ')
		return -1;
	/* The last ':' ends the host: IPv6 addresses come without brackets. */
	for (colon = end; colon > p && colon[-1] != ':'; colon--)
		;
	if (colon == p)
		return -1;
	host = p;
	hl = (size_t)(--colon - p);
	if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
		host++;
		hl -= 2;
	}
	if (hl > CLUSTER_HOST_MAX)
		return -1;
	/* No address or name holds these; refusing them keeps a parsed
	 * redirect the same when written back. */
	for (size_t i = 0; i < hl; i++)
		if ((unsigned char)host[i] <= ' ' || host[i] == 0x7f || host[i] == '[' || host[i] == ']')
			return -1;
	p = colon + 1;
	if (!cluster_digits(&p, end, 65535, &port) || p != end || port == 0)
		return -1;
	r.slot = (unsigned)slot;
	memcpy(r.host, host, hl);
	r.host[hl] = '\0';
	r.port = (int)port;
	*out = r;
	return 0;
}

/* Fills *CAUSE (when wanted) with the message; always -1. Formatted into a
 * buffer and copied with malloc, so that the unit test's allocator sees it. */
__attribute__((format(printf, 2, 3))) static int cluster_fail(char **cause, const char *fmt, ...)
{
	char buf[256];
	va_list ap;
	size_t n;

	if (cause == NULL)
		return -1;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	n = strlen(buf) + 1;
	*cause = malloc(n);
	if (*cause != NULL)
		memcpy(*cause, buf, n);
	return -1;
}

static int cluster_table_find(const struct cluster_table *t, const char *host, size_t hl, int port)
{
	for (size_t i = 0; i < t->n; i++)
		if (t->v[i].port == port && strlen(t->v[i].host) == hl && memcmp(t->v[i].host, host, hl) == 0)
			return (int)i;
	return -1;
}

/* The index of HOST:PORT in T, added when new: at the end while the table
 * has room, else in place of a node that served nothing before this call
 * (BEFORE: the table as it was) and serves nothing yet. -1 when out of
 * memory, -2 when no index is free. */
static int cluster_table_index(struct cluster_table *t, const struct cluster_table *before, const char *host,
	size_t hl, int port)
{
	int i = cluster_table_find(t, host, hl, port);

	if (i >= 0)
		return i;
	if (t->n < CLUSTER_NODES_MAX) {
		if (t->n == t->cap) {
			size_t cap = t->cap ? t->cap * 2 : 8;
			struct cluster_node *v;

			if (cap > CLUSTER_NODES_MAX)
				cap = CLUSTER_NODES_MAX;
			v = realloc(t->v, cap * sizeof(*v));
			if (v == NULL)
				return -1;
			t->v = v;
			t->cap = cap;
		}
		i = (int)t->n++;
	} else {
		for (size_t j = 0; j < t->n && i < 0; j++)
			if (t->v[j].nslots == 0 && (j >= before->n || before->v[j].nslots == 0))
				i = (int)j;
		if (i < 0)
			return -2;
	}
	memcpy(t->v[i].host, host, hl);
	t->v[i].host[hl] = '\0';
	t->v[i].port = port;
	t->v[i].nslots = 0;
	return i;
}

struct cluster_map *cluster_map_new(void)
{
	struct cluster_map *m = calloc(1, sizeof(*m));

	if (m == NULL)
		return NULL;
	m->slot = malloc(CLUSTER_SLOTS * sizeof(*m->slot));
	if (m->slot == NULL) {
		free(m);
		return NULL;
	}
	memset(m->slot, 0xff, CLUSTER_SLOTS * sizeof(*m->slot));
	return m;
}

void cluster_map_free(struct cluster_map *m)
{
	if (m == NULL)
		return;
	free(m->t.v);
	free(m->slot);
	free(m);
}

static bool cluster_slot_of(const redisReply *r, long long *out)
{
	if (r == NULL || r->type != REDIS_REPLY_INTEGER || r->integer < 0 || r->integer >= CLUSTER_SLOTS)
		return false;
	*out = r->integer;
	return true;
}

#define CLUSTER_STR(x) #x
#define CLUSTER_XSTR(x) CLUSTER_STR(x)

int cluster_map_load(struct cluster_map *m, const redisReply *slots, const char *asked_host, char **cause)
{
	struct cluster_table t = { 0 };
	const char *why = NULL;
	int16_t *slot = NULL;
	size_t e = 0;
	int rc = -1;

	if (slots == NULL || slots->type != REDIS_REPLY_ARRAY)
		return cluster_fail(cause, "CLUSTER SLOTS: the reply is not an array");
	/* Built aside, swapped in once all is valid. The nodes keep their
	 * indexes; their slot counts start over. */
	slot = malloc(CLUSTER_SLOTS * sizeof(*slot));
	t.cap = t.n = m->t.n;
	t.v = malloc((t.cap ? t.cap : 1) * sizeof(*t.v));
	if (slot == NULL || t.v == NULL) {
		cluster_fail(cause, "CLUSTER SLOTS: out of memory");
		goto out;
	}
	memset(slot, 0xff, CLUSTER_SLOTS * sizeof(*slot));
	if (t.n)
		memcpy(t.v, m->t.v, t.n * sizeof(*t.v));
	for (size_t i = 0; i < t.n; i++)
		t.v[i].nslots = 0;

	for (e = 0; e < slots->elements; e++) {
		const redisReply *r = slots->element[e], *master, *ip, *port;
		const char *host;
		long long start, end;
		size_t hl;
		int idx;

		if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements < 3) {
			why = "not [start, end, master, ...]";
			goto out;
		}
		if (!cluster_slot_of(r->element[0], &start) || !cluster_slot_of(r->element[1], &end) || start > end) {
			why = "not a slot range within 0..16383";
			goto out;
		}
		master = r->element[2];
		if (master == NULL || master->type != REDIS_REPLY_ARRAY || master->elements < 2) {
			why = "the master is not [ip, port, ...]";
			goto out;
		}
		for (size_t k = 3; k < r->elements; k++) {
			if (r->element[k] == NULL || r->element[k]->type != REDIS_REPLY_ARRAY) {
				why = "a replica is not [ip, port, ...]";
				goto out;
			}
		}
		ip = master->element[0];
		port = master->element[1];
		if (port == NULL || port->type != REDIS_REPLY_INTEGER || port->integer < 1 || port->integer > 65535) {
			why = "the master's port is not within 1..65535";
			goto out;
		}
		if (ip == NULL || (ip->type != REDIS_REPLY_STRING && ip->type != REDIS_REPLY_NIL)) {
			why = "the master's address is not a string";
			goto out;
		}
		/* Empty (the node does not know its own address) or NULL (an
		 * unknown endpoint): the node that was asked. */
		if (ip->type == REDIS_REPLY_NIL || ip->len == 0) {
			host = asked_host;
			hl = host ? strlen(host) : 0;
			if (hl == 0) {
				why = "the master has no address, and no asked node stands in";
				goto out;
			}
		} else {
			host = ip->str;
			hl = ip->len;
			if (memchr(host, '\0', hl) != NULL) {
				why = "the master's address holds a NUL byte";
				goto out;
			}
		}
		if (hl > CLUSTER_HOST_MAX) {
			why = "the master's address is longer than " CLUSTER_XSTR(CLUSTER_HOST_MAX) " bytes";
			goto out;
		}
		idx = cluster_table_index(&t, &m->t, host, hl, (int)port->integer);
		if (idx < 0) {
			why = idx == -1 ? "out of memory" : "more nodes than the table holds";
			goto out;
		}
		for (long long s = start; s <= end; s++) {
			if (slot[s] != -1) {
				why = "a slot is in an earlier range too";
				goto out;
			}
			slot[s] = (int16_t)idx;
		}
		t.v[idx].nslots += (unsigned)(end - start + 1);
	}

	free(m->t.v);
	m->t = t;
	t.v = NULL;
	free(m->slot);
	m->slot = slot;
	slot = NULL;
	rc = 0;
out:
	if (why != NULL)
		cluster_fail(cause, "CLUSTER SLOTS entry %zu: %s", e, why);
	free(t.v);
	free(slot);
	return rc;
}

int cluster_map_node_for_slot(const struct cluster_map *m, unsigned slot)
{
	return slot < CLUSTER_SLOTS ? m->slot[slot] : -1;
}

bool cluster_map_complete(const struct cluster_map *m)
{
	for (size_t s = 0; s < CLUSTER_SLOTS; s++)
		if (m->slot[s] < 0)
			return false;
	return true;
}

int cluster_map_moved(struct cluster_map *m, unsigned slot, const char *host, int port)
{
	size_t hl = host ? strlen(host) : 0;
	int i, old;

	if (slot >= CLUSTER_SLOTS || hl == 0 || hl > CLUSTER_HOST_MAX || port < 1 || port > 65535)
		return -1;
	/* The table is its own "before": nothing has changed yet. */
	i = cluster_table_index(&m->t, &m->t, host, hl, port);
	if (i < 0)
		return -1;
	old = m->slot[slot];
	if (old >= 0)
		m->t.v[old].nslots--;
	m->t.v[i].nslots++;
	m->slot[slot] = (int16_t)i;
	return 0;
}

size_t cluster_map_nodes(const struct cluster_map *m)
{
	return m->t.n;
}

const char *cluster_map_host(const struct cluster_map *m, size_t i)
{
	return i < m->t.n ? m->t.v[i].host : NULL;
}

int cluster_map_port(const struct cluster_map *m, size_t i)
{
	return i < m->t.n ? m->t.v[i].port : 0;
}

bool cluster_map_serves(const struct cluster_map *m, size_t i)
{
	return i < m->t.n && m->t.v[i].nslots > 0;
}

int cluster_map_find(const struct cluster_map *m, const char *host, int port)
{
	return host ? cluster_table_find(&m->t, host, strlen(host), port) : -1;
}

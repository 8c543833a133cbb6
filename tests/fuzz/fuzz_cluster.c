/* The Redis Cluster routing of the store. The input is taken four ways: as a
 * redirect error (cluster_redirect_parse, then cluster_map_moved with what it
 * gives), as a key (cluster_key_slot), split at NUL bytes into a command's
 * arguments (cluster_command_key) and as RESP: a reply hiredis reads from it
 * is loaded into a slot map (cluster_map_load) as a CLUSTER SLOTS answer. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <hiredis/hiredis.h>

#include "cluster.h"
#include "fuzz.h"

/* What a map shows: nodes (host, port, serving) and every slot's node. */
struct view {
	size_t n;
	char (*host)[CLUSTER_HOST_MAX + 1];
	int *port;
	bool *serves;
	int slot[CLUSTER_SLOTS];
};

static void view_take(const struct cluster_map *m, struct view *v)
{
	v->n = cluster_map_nodes(m);
	v->host = calloc(v->n + 1, sizeof(*v->host));
	v->port = calloc(v->n + 1, sizeof(*v->port));
	v->serves = calloc(v->n + 1, sizeof(*v->serves));
	if (v->host == NULL || v->port == NULL || v->serves == NULL)
		abort();
	for (size_t i = 0; i < v->n; i++) {
		fuzz_assert(strlen(cluster_map_host(m, i)) <= CLUSTER_HOST_MAX);
		strcpy(v->host[i], cluster_map_host(m, i));
		v->port[i] = cluster_map_port(m, i);
		v->serves[i] = cluster_map_serves(m, i);
	}
	for (unsigned s = 0; s < CLUSTER_SLOTS; s++)
		v->slot[s] = cluster_map_node_for_slot(m, s);
}

static void view_clear(struct view *v)
{
	free(v->host);
	free(v->port);
	free(v->serves);
}

static bool view_equal(const struct view *a, const struct view *b)
{
	if (a->n != b->n || memcmp(a->slot, b->slot, sizeof(a->slot)) != 0)
		return false;
	for (size_t i = 0; i < a->n; i++)
		if (strcmp(a->host[i], b->host[i]) != 0 || a->port[i] != b->port[i] || a->serves[i] != b->serves[i])
			return false;
	return true;
}

/* A map is consistent: each slot's node is in the table and serves, each
 * serving node has a slot, complete() means no slot without a node. */
static void check_map(const struct cluster_map *m, const struct view *v)
{
	size_t n = cluster_map_nodes(m), missing = 0;
	bool *seen = calloc(n + 1, sizeof(*seen));

	if (seen == NULL)
		abort();
	for (unsigned s = 0; s < CLUSTER_SLOTS; s++) {
		if (v->slot[s] < 0) {
			missing++;
			continue;
		}
		fuzz_assert((size_t)v->slot[s] < n && v->serves[v->slot[s]]);
		seen[v->slot[s]] = true;
	}
	for (size_t i = 0; i < n; i++) {
		fuzz_assert(seen[i] == v->serves[i]);
		fuzz_assert(cluster_map_find(m, v->host[i], v->port[i]) == (int)i);
	}
	fuzz_assert(cluster_map_complete(m) == (missing == 0));
	free(seen);
}

/* True when it moved a slot of M. */
static bool check_redirect(const char *s, size_t n, struct cluster_map *m)
{
	struct cluster_redirect r, again;
	char text[CLUSTER_HOST_MAX + 32], *longer;
	int len;

	if (cluster_redirect_parse(s, n, &r) != 0)
		return false;
	fuzz_assert(r.slot < CLUSTER_SLOTS && r.port >= 1 && r.port <= 65535);
	fuzz_assert(strlen(r.host) <= CLUSTER_HOST_MAX);
	fuzz_assert(n >= 4 && memcmp(s, r.ask ? "ASK " : "MOVED ", r.ask ? 4 : 6) == 0);
	/* Written the way Redis writes it, it reads back the same. */
	len = snprintf(text, sizeof(text), "%s %u %s:%d", r.ask ? "ASK" : "MOVED", r.slot, r.host, r.port);
	fuzz_assert(len > 0 && (size_t)len < sizeof(text));
	fuzz_assert(cluster_redirect_parse(text, (size_t)len, &again) == 0);
	fuzz_assert(again.ask == r.ask && again.slot == r.slot && again.port == r.port &&
		strcmp(again.host, r.host) == 0);
	/* Nothing may follow it. */
	longer = fuzz_strndup((const uint8_t *)s, n + 1);
	longer[n] = ' ';
	fuzz_assert(cluster_redirect_parse(longer, n + 1, &again) == -1);
	free(longer);

	if (r.host[0] == '\0')
		return false;
	fuzz_assert(cluster_map_moved(m, r.slot, r.host, r.port) == 0);
	fuzz_assert(cluster_map_node_for_slot(m, r.slot) == cluster_map_find(m, r.host, r.port));
	fuzz_assert(cluster_map_serves(m, (size_t)cluster_map_node_for_slot(m, r.slot)));
	return true;
}

static void check_key(const char *s, size_t n)
{
	unsigned slot = cluster_key_slot(s, n);
	const char *open = n ? memchr(s, '{', n) : NULL;
	const char *close = open && open + 1 < s + n ? memchr(open + 1, '}', (size_t)(s + n - open - 1)) : NULL;
	unsigned char *sealed;
	uint16_t crc = cluster_crc16(s, n);

	fuzz_assert(slot < CLUSTER_SLOTS);
	if (close != NULL && close > open + 1) {
		/* The tag alone, or cut right after it, goes to the same slot. */
		fuzz_assert(slot == cluster_key_slot(open + 1, (size_t)(close - open - 1)));
		fuzz_assert(slot == cluster_key_slot(s, (size_t)(close - s + 1)));
	} else {
		fuzz_assert(slot == (crc & (CLUSTER_SLOTS - 1)));
	}
	/* A CRC without final XOR: a message followed by its own CRC (big
	 * endian) has CRC 0. */
	sealed = malloc(n + 2);
	if (sealed == NULL)
		abort();
	if (n)
		memcpy(sealed, s, n);
	sealed[n] = (unsigned char)(crc >> 8);
	sealed[n + 1] = (unsigned char)crc;
	fuzz_assert(cluster_crc16(sealed, n + 2) == 0);
	free(sealed);
}

static void check_command(const char *s, size_t n)
{
	char *buf = fuzz_strndup((const uint8_t *)s, n);
	size_t argc = 1, *len;
	const char **argv, *key = NULL, *key2 = NULL;
	size_t klen = 0, klen2 = 0;
	int rc, rc2;

	for (size_t i = 0; i < n; i++)
		argc += buf[i] == '\0';
	argv = malloc(argc * sizeof(*argv));
	len = malloc(argc * sizeof(*len));
	if (argv == NULL || len == NULL)
		abort();
	argv[0] = buf;
	for (size_t i = 0, a = 0; i <= n; i++) {
		if (buf[i] == '\0') {
			len[a] = (size_t)(buf + i - argv[a]);
			if (++a < argc)
				argv[a] = buf + i + 1;
		}
	}
	rc = cluster_command_key((int)argc, argv, len, &key, &klen);
	fuzz_assert(rc >= -1 && rc <= 1);
	if (rc == 0) {
		bool found = false;

		for (size_t a = 1; a < argc; a++)
			found |= key == argv[a] && klen == len[a];
		fuzz_assert(found);
	}
	/* Without lengths (each part ends at its NUL): the same answer. */
	rc2 = cluster_command_key((int)argc, argv, NULL, &key2, &klen2);
	fuzz_assert(rc2 == rc && (rc != 0 || (key2 == key && klen2 == klen)));
	free(len);
	free(argv);
	free(buf);
}

/* hiredis 0.14's reader allocates an array as soon as it reads "*N", for
 * any N: inputs that announce more elements than they have bytes are left
 * out (a real CLUSTER SLOTS answer never does). */
static bool resp_plausible(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned long long v = 0;

		if (s[i] != '*')
			continue;
		for (size_t j = i + 1; j < n && s[j] >= '0' && s[j] <= '9' && v <= n; j++)
			v = v * 10 + (unsigned long long)(s[j] - '0');
		if (v > n)
			return false;
	}
	return true;
}

/* M is the base map of LLVMFuzzerTestOneInput, BASE its view. */
static void check_slots(const char *s, size_t n, struct cluster_map *m, const struct view *base)
{
	static struct view after, again;
	redisReader *rd = redisReaderCreate();
	void *reply = NULL;
	char *cause = NULL;
	int rc;

	if (rd == NULL)
		abort();
	if (!resp_plausible(s, n) || redisReaderFeed(rd, s, n) != REDIS_OK ||
	    redisReaderGetReply(rd, &reply) != REDIS_OK || reply == NULL)
		goto out;
	rc = cluster_map_load(m, reply, "asked.example", &cause);
	view_take(m, &after);
	if (rc != 0) {
		fuzz_assert(rc == -1 && cause != NULL);
		fuzz_assert(view_equal(base, &after));
	} else {
		fuzz_assert(cause == NULL);
		check_map(m, &after);
		/* Nodes keep their indexes. */
		fuzz_assert(after.n >= base->n);
		for (size_t i = 0; i < base->n; i++)
			fuzz_assert(strcmp(base->host[i], after.host[i]) == 0 && base->port[i] == after.port[i]);
		/* The same answer again: the same map. */
		fuzz_assert(cluster_map_load(m, reply, "asked.example", NULL) == 0);
		view_take(m, &again);
		fuzz_assert(view_equal(&after, &again));
		view_clear(&again);
	}
	free(cause);
	view_clear(&after);
out:
	if (reply != NULL)
		freeReplyObject(reply);
	redisReaderFree(rd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = fuzz_strndup(data, size);
	struct cluster_map *m = cluster_map_new();
	static struct view base, v;

	if (m == NULL)
		abort();
	/* Something to keep or replace: slots 0 and 1 on two nodes. Its view
	 * is the same for every input, taken once (and never freed). */
	if (cluster_map_moved(m, 0, "10.0.0.1", 7000) != 0 || cluster_map_moved(m, 1, "10.0.0.2", 7001) != 0)
		abort();
	if (base.host == NULL)
		view_take(m, &base);
	check_slots(s, size, m, &base);
	/* A redirect on what the load left. */
	if (check_redirect(s, size, m)) {
		view_take(m, &v);
		check_map(m, &v);
		view_clear(&v);
	}
	check_key(s, size);
	check_command(s, size);
	cluster_map_free(m);
	free(s);
	return 0;
}

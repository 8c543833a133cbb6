#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The module is built into this test with cmocka's allocator (leaks and
 * overruns fail the test), and with a node table of 8 so that the reuse of
 * unused indexes in a full table can be reached. */
#define UNIT_TESTING 1
#include <cmocka.h>

#define CLUSTER_NODES_MAX 8
#include "../../src/cluster.c"

#define S(s) s, strlen(s)
#define N(a) (sizeof(a) / sizeof((a)[0]))

static void test_crc16(void **state)
{
	(void)state;
	/* The spec's check value (cluster-spec, appendix A). */
	assert_int_equal(cluster_crc16(S("123456789")), 0x31C3);
	assert_int_equal(cluster_crc16(NULL, 0), 0);
	assert_int_equal(cluster_crc16(S("foo")) & 16383, 12182);
}

/* Each asked of a cluster-enabled redis-server 7.0.15 (CLUSTER KEYSLOT). */
static void test_key_slot_known(void **state)
{
	static const struct {
		const char *key;
		unsigned slot;
	} known[] = {
		{ "foo", 12182 },
		{ "bar", 5061 },
		{ "123456789", 12739 },
		{ "", 0 },
		{ "{user1000}.following", 3443 },
		{ "{user1000}.followers", 3443 },
		{ "user1000", 3443 },
		{ "foo{}{bar}", 8363 },
		{ "foo{{bar}}zap", 4015 },
		{ "{bar", 4015 },
		{ "foo{bar}{zap}", 5061 },
		{ "{}", 15257 },
		{ "a{b}c", 3300 },
		{ "{", 4092 },
		{ "}{x}", 16287 },
	};

	(void)state;
	for (size_t i = 0; i < N(known); i++) {
		unsigned got = cluster_key_slot(S(known[i].key));

		if (got != known[i].slot)
			fail_msg("\"%s\": slot %u, not %u", known[i].key, got, known[i].slot);
	}
}

/* The spec's hash tag examples, as relations. */
static void test_hash_tags(void **state)
{
	const char bin[] = "{a\0b}x", tag[] = "a\0b";

	(void)state;
	assert_int_equal(cluster_key_slot(S("{user1000}.following")), cluster_key_slot(S("{user1000}.followers")));
	assert_int_equal(cluster_key_slot(S("{user1000}.following")), cluster_key_slot(S("user1000")));
	/* An empty tag is no tag: the whole key. */
	assert_int_equal(cluster_key_slot(S("foo{}{bar}")), cluster_crc16(S("foo{}{bar}")) & 16383);
	assert_int_not_equal(cluster_key_slot(S("foo{}{bar}")), cluster_key_slot(S("bar")));
	/* From the first '{' to the first '}' after it. */
	assert_int_equal(cluster_key_slot(S("foo{{bar}}zap")), cluster_crc16(S("{bar")) & 16383);
	assert_int_equal(cluster_key_slot(S("foo{bar}{zap}")), cluster_key_slot(S("bar")));
	/* No '}' after the '{', or a '}' only before it: the whole key. */
	assert_int_equal(cluster_key_slot(S("foo{bar")), cluster_crc16(S("foo{bar")) & 16383);
	assert_int_equal(cluster_key_slot(S("foo}bar{")), cluster_crc16(S("foo}bar{")) & 16383);
	/* Keys are bytes: a NUL inside the tag is part of it. */
	assert_int_equal(cluster_key_slot(bin, sizeof(bin) - 1), cluster_crc16(tag, sizeof(tag) - 1) & 16383);
}

static int key_of(int argc, const char *const *argv, const char **key, size_t *klen)
{
	*key = NULL;
	*klen = 0;
	return cluster_command_key(argc, argv, NULL, key, klen);
}

#define ASSERT_KEY(want, ...)                                                   \
	do {                                                                    \
		const char *argv_[] = { __VA_ARGS__ }, *k_;                     \
		size_t kl_;                                                     \
		assert_int_equal(key_of((int)N(argv_), argv_, &k_, &kl_), 0);   \
		assert_int_equal(kl_, strlen(want));                            \
		assert_memory_equal(k_, want, kl_);                             \
	} while (0)
#define ASSERT_RC(rc, ...)                                                      \
	do {                                                                    \
		const char *argv_[] = { __VA_ARGS__ }, *k_;                     \
		size_t kl_;                                                     \
		assert_int_equal(key_of((int)N(argv_), argv_, &k_, &kl_), rc);  \
	} while (0)

static void test_command_key_plain(void **state)
{
	const char *argv[] = { "HSET", "d\0x", "f", "v" };
	const size_t len[] = { 4, 3, 1, 1 };
	const char *key;
	size_t klen;

	(void)state;
	ASSERT_KEY("k", "GET", "k");
	ASSERT_KEY("k", "get", "k");
	ASSERT_KEY("b:1", "HGETALL", "b:1");
	ASSERT_KEY("k", "WATCH", "k", "k2");
	ASSERT_RC(-1, "GET");
	assert_int_equal(cluster_command_key(0, argv, len, &key, &klen), -1);
	/* With lengths, binary-safe: the key's NUL is part of it. */
	assert_int_equal(cluster_command_key(4, argv, len, &key, &klen), 0);
	assert_ptr_equal(key, argv[1]);
	assert_int_equal(klen, 3);
	/* A name is matched on its bytes, not up to a NUL. */
	{
		const char *ping[] = { "PING\0x", "k" };
		const size_t plen[] = { 6, 1 };

		assert_int_equal(cluster_command_key(2, ping, plen, &key, &klen), 0);
		assert_ptr_equal(key, ping[1]);
	}
}

static void test_command_keyless(void **state)
{
	static const char *const names[] = { "PING", "WAIT", "INFO", "MULTI", "EXEC", "DISCARD", "SCRIPT",
		"CLUSTER", "ROLE", "CLIENT", "AUTH", "SELECT", "HELLO", "READONLY", "READWRITE", "ASKING",
		"PUBLISH", "ping", "Exec", "publish" };
	const char *key;
	size_t klen;

	(void)state;
	for (size_t i = 0; i < N(names); i++) {
		const char *argv[] = { names[i], "x", "y" };

		assert_int_equal(cluster_command_key(1, argv, NULL, &key, &klen), 1);
		assert_int_equal(cluster_command_key(3, argv, NULL, &key, &klen), 1);
	}
	ASSERT_RC(1, "PUBLISH", "bd:notify", "message");
	ASSERT_RC(1, "SCRIPT", "LOAD", "return 1");
	ASSERT_RC(1, "WAIT", "1", "100");
}

static void test_command_key_scripts(void **state)
{
	(void)state;
	ASSERT_KEY("k", "EVAL", "return 1", "1", "k");
	ASSERT_KEY("k1", "EVALSHA", "abc", "2", "k1", "k2", "arg");
	ASSERT_KEY("k", "eval_ro", "return 1", "1", "k");
	ASSERT_KEY("k", "EVALSHA_RO", "abc", "1", "k", "a", "b");
	ASSERT_KEY("k", "FCALL", "f", "1", "k");
	ASSERT_KEY("k", "fcall_ro", "f", "3", "k", "k2", "k3");
	/* No key: any node would do, but then the script touches no key we
	 * could route by. */
	ASSERT_RC(-1, "EVAL", "return 1", "0");
	ASSERT_RC(-1, "EVAL", "return 1", "0", "a");
	/* numkeys not a number, as Redis reads one. */
	ASSERT_RC(-1, "EVAL", "return 1", "x", "k");
	ASSERT_RC(-1, "EVAL", "return 1", "-1", "k");
	ASSERT_RC(-1, "EVAL", "return 1", "+1", "k");
	ASSERT_RC(-1, "EVAL", "return 1", "01", "k");
	ASSERT_RC(-1, "EVAL", "return 1", "1x", "k");
	ASSERT_RC(-1, "EVAL", "return 1", "", "k");
	/* More keys than arguments. */
	ASSERT_RC(-1, "EVAL", "return 1", "2", "k");
	ASSERT_RC(-1, "FCALL", "f", "1");
	ASSERT_RC(-1, "EVALSHA", "abc", "99999999999999999999999", "k");
	ASSERT_RC(-1, "EVAL", "return 1");
	ASSERT_RC(-1, "EVAL");
}

static void test_command_key_xread(void **state)
{
	(void)state;
	ASSERT_KEY("s", "XREAD", "STREAMS", "s", "0");
	ASSERT_KEY("s", "xread", "count", "10", "block", "100", "streams", "s", "t", "0", "0");
	ASSERT_KEY("s", "XREADGROUP", "GROUP", "g", "c", "COUNT", "1", "NOACK", "STREAMS", "s", ">");
	/* A group, consumer or count named like the token is not the token. */
	ASSERT_KEY("s", "XREADGROUP", "GROUP", "streams", "STREAMS", "STREAMS", "s", ">");
	ASSERT_KEY("STREAMS", "XREAD", "STREAMS", "STREAMS", "0");
	ASSERT_RC(-1, "XREAD", "STREAMS");
	ASSERT_RC(-1, "XREAD", "COUNT", "1");
	ASSERT_RC(-1, "XREAD", "COUNT", "STREAMS", "s", "0"); /* "STREAMS" is COUNT's argument */
	ASSERT_RC(-1, "XREADGROUP", "GROUP", "g", "c");
	ASSERT_RC(-1, "XREAD", "s", "0");
	ASSERT_RC(-1, "XREAD", "BOGUS", "STREAMS", "s", "0");
	ASSERT_RC(-1, "XREAD");
}

/* Commands whose key comes after a subcommand. */
static void test_command_key_subcommand(void **state)
{
	(void)state;
	ASSERT_KEY("q", "XGROUP", "CREATE", "q", "workers", "0", "MKSTREAM");
	ASSERT_KEY("q", "xinfo", "STREAM", "q");
	ASSERT_KEY("k", "OBJECT", "ENCODING", "k");
	ASSERT_KEY("k", "MEMORY", "USAGE", "k");
	ASSERT_RC(-1, "XGROUP", "CREATE");
	ASSERT_KEY("q", "XAUTOCLAIM", "q", "workers", "c", "1000", "0-0");
}

static void test_redirect_good(void **state)
{
	struct cluster_redirect r;
	char longhost[CLUSTER_HOST_MAX + 16];

	(void)state;
	assert_int_equal(cluster_redirect_parse(S("MOVED 3999 127.0.0.1:6381"), &r), 0);
	assert_false(r.ask);
	assert_int_equal(r.slot, 3999);
	assert_string_equal(r.host, "127.0.0.1");
	assert_int_equal(r.port, 6381);

	assert_int_equal(cluster_redirect_parse(S("ASK 3999 127.0.0.1:6381"), &r), 0);
	assert_true(r.ask);
	assert_int_equal(r.slot, 3999);
	assert_string_equal(r.host, "127.0.0.1");
	assert_int_equal(r.port, 6381);

	/* IPv6 comes bare: the last ':' ends the host. */
	assert_int_equal(cluster_redirect_parse(S("MOVED 1 ::1:6380"), &r), 0);
	assert_string_equal(r.host, "::1");
	assert_int_equal(r.port, 6380);
	assert_int_equal(cluster_redirect_parse(S("MOVED 16383 [fd00::1]:65535"), &r), 0);
	assert_int_equal(r.slot, 16383);
	assert_string_equal(r.host, "fd00::1");
	assert_int_equal(r.port, 65535);

	/* An unknown endpoint: the node that answered. */
	assert_int_equal(cluster_redirect_parse(S("MOVED 0 :6380"), &r), 0);
	assert_int_equal(r.slot, 0);
	assert_string_equal(r.host, "");
	assert_int_equal(r.port, 6380);

	assert_int_equal(cluster_redirect_parse(S("ASK 7 redis-2.cache.internal:1"), &r), 0);
	assert_string_equal(r.host, "redis-2.cache.internal");
	assert_int_equal(r.port, 1);

	/* Only LEN bytes are read. */
	assert_int_equal(cluster_redirect_parse("MOVED 5 a:12junk", 12, &r), 0);
	assert_string_equal(r.host, "a");
	assert_int_equal(r.port, 12);

	/* The longest host fits, one more byte does not. */
	memcpy(longhost, "MOVED 1 ", 8);
	memset(longhost + 8, 'h', CLUSTER_HOST_MAX);
	memcpy(longhost + 8 + CLUSTER_HOST_MAX, ":1", 3);
	assert_int_equal(cluster_redirect_parse(S(longhost), &r), 0);
	assert_int_equal(strlen(r.host), CLUSTER_HOST_MAX);
	memcpy(longhost + 8 + CLUSTER_HOST_MAX, "h:1", 4);
	assert_int_equal(cluster_redirect_parse(S(longhost), &r), -1);
}

static void test_redirect_bad(void **state)
{
	static const char *const bad[] = {
		"MOVED", "MOVED ", "MOVED 16384 a:1", "MOVED 1 a:0", "MOVED 1 a:65536", "MOVED 1 a",
		"MOVED x a:1", "MOVED 1 a:1 x", "MOVEDX 1 a:1", "ERR x", "", "ASK", "ASK 1", "ASK 1 ",
		"moved 1 a:1", "MOVED -1 a:1", "MOVED 1 a:", "MOVED 1 :", "MOVED 1 a:-1", "MOVED 1 a:1\n",
		"MOVED 1 a:1 ", "MOVED  1 a:1", "MOVED 1  a:1", "MOVED 1 a b:1", "MOVED 1 [::1]",
		"MOVED 1 [[::1]]:1", "MOVED 1 [::1:1",
		"MOVED 99999999999999999999 a:1", "MOVED 1 a:99999999999999999999", "-MOVED 1 a:1",
		"CLUSTERDOWN Hash slot not served", "TRYAGAIN Multiple keys request during rehashing of slot",
	};
	struct cluster_redirect r, before;

	(void)state;
	memset(&r, 0x5a, sizeof(r));
	before = r;
	for (size_t i = 0; i < N(bad); i++) {
		if (cluster_redirect_parse(S(bad[i]), &r) != -1)
			fail_msg("\"%s\" was taken for a redirect", bad[i]);
		assert_memory_equal(&r, &before, sizeof(r));
	}
	/* A NUL in the host. */
	assert_int_equal(cluster_redirect_parse("MOVED 1 a\0b:1", 13, &r), -1);
}

/* Reply trees, hiredis' layout, from a static pool: nothing to free. */
static redisReply pool[512];
static redisReply *elems[1024];
static size_t npool, nelems;

static redisReply *node(int type)
{
	redisReply *r;

	assert_true(npool < N(pool));
	r = &pool[npool++];
	memset(r, 0, sizeof(*r));
	r->type = type;
	return r;
}

static redisReply *r_int(long long v)
{
	redisReply *r = node(REDIS_REPLY_INTEGER);

	r->integer = v;
	return r;
}

static redisReply *r_strn(const char *s, size_t len)
{
	redisReply *r = node(REDIS_REPLY_STRING);

	r->str = (char *)s;
	r->len = len;
	return r;
}

static redisReply *r_str(const char *s)
{
	return r_strn(s, strlen(s));
}

static redisReply *r_arr(size_t n, ...)
{
	redisReply *r = node(REDIS_REPLY_ARRAY);
	va_list ap;

	assert_true(nelems + n <= N(elems));
	r->element = &elems[nelems];
	r->elements = n;
	nelems += n;
	va_start(ap, n);
	for (size_t i = 0; i < n; i++)
		r->element[i] = va_arg(ap, redisReply *);
	va_end(ap);
	return r;
}

/* One range served by HOST:PORT, with its node id and a replica, as Redis
 * 7 sends it (the metadata map left out). */
static redisReply *range(long long start, long long end, const char *host, int port)
{
	return r_arr(4, r_int(start), r_int(end), r_arr(3, r_str(host), r_int(port), r_str("07c37dfeb235213a872192d9")),
		r_arr(3, r_str("10.9.9.9"), r_int(7999), r_str("e7d1eecce10fd6bb5eb35b9f")));
}

static int setup_pool(void **state)
{
	(void)state;
	npool = nelems = 0;
	return 0;
}

static struct cluster_map *new_map(void)
{
	struct cluster_map *m = cluster_map_new();

	assert_non_null(m);
	return m;
}

static void load_ok(struct cluster_map *m, const redisReply *slots, const char *asked)
{
	char *cause = NULL;

	if (cluster_map_load(m, slots, asked, &cause) != 0)
		fail_msg("load failed: %s", cause ? cause : "no cause");
	assert_null(cause);
}

/* A node's index, checked to be in the table and serving. */
static int serving(const struct cluster_map *m, const char *host, int port)
{
	int i = cluster_map_find(m, host, port);

	assert_true(i >= 0);
	assert_true(cluster_map_serves(m, (size_t)i));
	assert_string_equal(cluster_map_host(m, (size_t)i), host);
	assert_int_equal(cluster_map_port(m, (size_t)i), port);
	return i;
}

static void test_map_empty(void **state)
{
	struct cluster_map *m = new_map();

	(void)state;
	assert_int_equal(cluster_map_nodes(m), 0);
	assert_false(cluster_map_complete(m));
	assert_int_equal(cluster_map_node_for_slot(m, 0), -1);
	assert_int_equal(cluster_map_node_for_slot(m, 16383), -1);
	assert_int_equal(cluster_map_node_for_slot(m, 16384), -1);
	assert_null(cluster_map_host(m, 0));
	assert_int_equal(cluster_map_port(m, 0), 0);
	assert_false(cluster_map_serves(m, 0));
	assert_int_equal(cluster_map_find(m, "a", 1), -1);
	assert_int_equal(cluster_map_find(m, NULL, 1), -1);
	/* A cluster with no slot assigned yet answers an empty array. */
	load_ok(m, r_arr(0), NULL);
	assert_int_equal(cluster_map_nodes(m), 0);
	cluster_map_free(m);
	cluster_map_free(NULL);
}

static void test_map_load(void **state)
{
	struct cluster_map *m = new_map();
	int a, b, c;

	(void)state;
	/* Out of order, and A serving two ranges. */
	load_ok(m,
		r_arr(4, range(10923, 16383, "10.0.0.3", 7002), range(0, 5460, "10.0.0.1", 7000),
			range(5461, 10921, "10.0.0.2", 7001), range(10922, 10922, "10.0.0.1", 7000)),
		"10.0.0.1");
	assert_int_equal(cluster_map_nodes(m), 3);
	a = serving(m, "10.0.0.1", 7000);
	b = serving(m, "10.0.0.2", 7001);
	c = serving(m, "10.0.0.3", 7002);
	assert_int_equal(c, 0); /* in the order the reply names them */
	assert_int_equal(a, 1);
	assert_int_equal(b, 2);
	assert_int_equal(cluster_map_node_for_slot(m, 0), a);
	assert_int_equal(cluster_map_node_for_slot(m, 5460), a);
	assert_int_equal(cluster_map_node_for_slot(m, 5461), b);
	assert_int_equal(cluster_map_node_for_slot(m, 10921), b);
	assert_int_equal(cluster_map_node_for_slot(m, 10922), a);
	assert_int_equal(cluster_map_node_for_slot(m, 10923), c);
	assert_int_equal(cluster_map_node_for_slot(m, 16383), c);
	assert_int_equal(cluster_map_node_for_slot(m, cluster_key_slot(S("foo"))), c);
	assert_true(cluster_map_complete(m));
	/* Replicas are not in the table. */
	assert_int_equal(cluster_map_find(m, "10.9.9.9", 7999), -1);
	/* Same host, another port: another node. */
	assert_int_equal(cluster_map_find(m, "10.0.0.1", 7001), -1);

	/* Redis before 4 sent [ip, port] only. */
	load_ok(m, r_arr(1, r_arr(3, r_int(0), r_int(16383), r_arr(2, r_str("10.0.0.2"), r_int(7001)))), NULL);
	assert_int_equal(serving(m, "10.0.0.2", 7001), b);
	assert_true(cluster_map_complete(m));
	assert_false(cluster_map_serves(m, (size_t)a));
	cluster_map_free(m);
}

static void test_map_load_partial(void **state)
{
	struct cluster_map *m = new_map();

	(void)state;
	load_ok(m, r_arr(2, range(0, 99, "a", 1), range(101, 16383, "b", 2)), NULL);
	assert_false(cluster_map_complete(m));
	assert_int_equal(cluster_map_node_for_slot(m, 100), -1);
	assert_int_equal(cluster_map_node_for_slot(m, 99), 0);
	assert_int_equal(cluster_map_node_for_slot(m, 101), 1);
	/* A MOVED for the missing slot completes it. */
	assert_int_equal(cluster_map_moved(m, 100, "b", 2), 0);
	assert_true(cluster_map_complete(m));
	cluster_map_free(m);
}

static void test_map_load_empty_ip(void **state)
{
	struct cluster_map *m = new_map();
	redisReply *slots;
	char *cause = NULL;

	(void)state;
	/* What a lone node that does not know its own address answers, and an
	 * unknown endpoint (NULL): the node asked, at the port given. */
	slots = r_arr(2, r_arr(3, r_int(0), r_int(8191), r_arr(3, r_str(""), r_int(6379), r_str("id"))),
		r_arr(3, r_int(8192), r_int(16383), r_arr(2, node(REDIS_REPLY_NIL), r_int(6380))));
	load_ok(m, slots, "redis.internal");
	assert_int_equal(cluster_map_node_for_slot(m, 0), serving(m, "redis.internal", 6379));
	assert_int_equal(cluster_map_node_for_slot(m, 16383), serving(m, "redis.internal", 6380));
	assert_int_equal(cluster_map_nodes(m), 2);

	/* Nobody to stand in for it. */
	assert_int_equal(cluster_map_load(m, slots, NULL, &cause), -1);
	assert_non_null(cause);
	assert_non_null(strstr(cause, "entry 0"));
	free(cause);
	cause = NULL;
	assert_int_equal(cluster_map_load(m, slots, "", &cause), -1);
	assert_non_null(cause);
	free(cause);
	assert_int_equal(cluster_map_nodes(m), 2);
	cluster_map_free(m);
}

/* Everything observable about a map. */
struct snapshot {
	size_t n;
	char host[CLUSTER_NODES_MAX][CLUSTER_HOST_MAX + 1];
	int port[CLUSTER_NODES_MAX];
	bool serves[CLUSTER_NODES_MAX];
	int slot[CLUSTER_SLOTS];
};

static void snap(const struct cluster_map *m, struct snapshot *s)
{
	memset(s, 0, sizeof(*s));
	s->n = cluster_map_nodes(m);
	assert_true(s->n <= CLUSTER_NODES_MAX);
	for (size_t i = 0; i < s->n; i++) {
		strcpy(s->host[i], cluster_map_host(m, i));
		s->port[i] = cluster_map_port(m, i);
		s->serves[i] = cluster_map_serves(m, i);
	}
	for (unsigned i = 0; i < CLUSTER_SLOTS; i++)
		s->slot[i] = cluster_map_node_for_slot(m, i);
}

static void assert_unchanged(const struct cluster_map *m, const struct snapshot *before)
{
	static struct snapshot now;

	snap(m, &now);
	assert_memory_equal(&now, before, sizeof(now));
}

static void test_map_load_bad(void **state)
{
	static char longhost[CLUSTER_HOST_MAX + 2];
	static struct snapshot before;
	struct cluster_map *m = new_map();
	const redisReply *bad[40];
	size_t nbad = 0;
	char *cause;

	(void)state;
	load_ok(m, r_arr(2, range(0, 8191, "a", 1), range(8192, 16383, "b", 2)), NULL);
	snap(m, &before);
	memset(longhost, 'h', CLUSTER_HOST_MAX + 1);

	bad[nbad++] = r_int(1);
	bad[nbad++] = r_str("ERR This instance has cluster support disabled");
	bad[nbad++] = r_arr(1, r_int(0));
	bad[nbad++] = r_arr(1, r_arr(2, r_int(0), r_int(16383)));
	bad[nbad++] = r_arr(1, r_arr(3, r_str("0"), r_int(16383), r_arr(2, r_str("c"), r_int(3))));
	bad[nbad++] = r_arr(1, r_arr(3, r_int(0), r_str("16383"), r_arr(2, r_str("c"), r_int(3))));
	bad[nbad++] = r_arr(1, range(-1, 10, "c", 3));
	bad[nbad++] = r_arr(1, range(0, 16384, "c", 3));
	bad[nbad++] = r_arr(1, range(16384, 16384, "c", 3));
	bad[nbad++] = r_arr(1, range(11, 10, "c", 3));
	bad[nbad++] = r_arr(1, r_arr(3, r_int(0), r_int(16383), r_str("c")));
	bad[nbad++] = r_arr(1, r_arr(3, r_int(0), r_int(16383), r_arr(1, r_str("c"))));
	bad[nbad++] = r_arr(1, range(0, 16383, "c", 0));
	bad[nbad++] = r_arr(1, range(0, 16383, "c", 65536));
	bad[nbad++] = r_arr(1, range(0, 16383, "c", -1));
	bad[nbad++] = r_arr(1, r_arr(3, r_int(0), r_int(16383), r_arr(2, r_str("c"), r_str("3")))); /* port as text */
	bad[nbad++] = r_arr(1, r_arr(3, r_int(0), r_int(16383), r_arr(2, r_int(1), r_int(3))));     /* ip a number */
	bad[nbad++] = r_arr(1, r_arr(3, r_int(0), r_int(16383), r_arr(2, r_strn("c\0d", 3), r_int(3))));
	bad[nbad++] = r_arr(1, range(0, 16383, longhost, 3));
	/* A replica that is not an array. */
	bad[nbad++] = r_arr(1, r_arr(4, r_int(0), r_int(16383), r_arr(2, r_str("c"), r_int(3)), r_int(4)));
	/* Overlaps: the same range twice, one inside another, touching by one. */
	bad[nbad++] = r_arr(2, range(0, 100, "c", 3), range(0, 100, "c", 3));
	bad[nbad++] = r_arr(2, range(0, 16383, "c", 3), range(500, 600, "d", 4));
	bad[nbad++] = r_arr(2, range(0, 100, "c", 3), range(100, 200, "d", 4));
	bad[nbad++] = r_arr(2, range(200, 300, "c", 3), range(100, 200, "d", 4));
	/* A good entry before a bad one changes nothing either. */
	bad[nbad++] = r_arr(2, range(0, 16383, "c", 3), r_int(7));
	assert_true(nbad <= N(bad));

	for (size_t i = 0; i < nbad; i++) {
		cause = NULL;
		if (cluster_map_load(m, bad[i], "a", &cause) != -1)
			fail_msg("bad reply %zu was loaded", i);
		if (cause == NULL || strncmp(cause, "CLUSTER SLOTS", 13) != 0)
			fail_msg("bad reply %zu: cause %s", i, cause ? cause : "none");
		free(cause);
		assert_unchanged(m, &before);
		/* Without a cause wanted. */
		assert_int_equal(cluster_map_load(m, bad[i], "a", NULL), -1);
		assert_unchanged(m, &before);
	}
	cause = NULL;
	assert_int_equal(cluster_map_load(m, NULL, "a", &cause), -1);
	free(cause);
	assert_unchanged(m, &before);
	cluster_map_free(m);
}

/* The store keeps one connection per index: a node keeps its index across
 * reloads, gone or not, and gets it back when it returns. */
static void test_map_reload_stable(void **state)
{
	struct cluster_map *m = new_map();
	int a, b, c;

	(void)state;
	load_ok(m, r_arr(2, range(0, 8191, "a", 1), range(8192, 16383, "b", 2)), NULL);
	a = serving(m, "a", 1);
	b = serving(m, "b", 2);

	/* A fails over to C. */
	load_ok(m, r_arr(2, range(8192, 16383, "b", 2), range(0, 8191, "c", 3)), NULL);
	assert_int_equal(serving(m, "b", 2), b);
	c = serving(m, "c", 3);
	assert_int_equal(c, 2);
	assert_int_equal(cluster_map_nodes(m), 3);
	assert_int_equal(cluster_map_find(m, "a", 1), a);
	assert_false(cluster_map_serves(m, (size_t)a));
	assert_string_equal(cluster_map_host(m, (size_t)a), "a");
	assert_int_equal(cluster_map_node_for_slot(m, 0), c);

	/* A comes back with everything. */
	load_ok(m, r_arr(1, range(0, 16383, "a", 1)), NULL);
	assert_int_equal(serving(m, "a", 1), a);
	assert_false(cluster_map_serves(m, (size_t)b));
	assert_false(cluster_map_serves(m, (size_t)c));
	assert_int_equal(cluster_map_nodes(m), 3);
	for (unsigned s = 0; s < CLUSTER_SLOTS; s++)
		assert_int_equal(cluster_map_node_for_slot(m, s), a);

	/* The same reply twice: the same map. */
	{
		static struct snapshot once;
		const redisReply *slots = r_arr(2, range(0, 1, "c", 3), range(2, 16383, "b", 2));

		load_ok(m, slots, NULL);
		assert_int_equal(serving(m, "c", 3), c);
		assert_int_equal(serving(m, "b", 2), b);
		assert_false(cluster_map_serves(m, (size_t)a));
		snap(m, &once);
		load_ok(m, slots, NULL);
		assert_unchanged(m, &once);
	}
	cluster_map_free(m);
}

static void test_map_moved(void **state)
{
	struct cluster_map *m = new_map();
	static struct snapshot before;
	int a, b, d;

	(void)state;
	load_ok(m, r_arr(2, range(0, 0, "a", 1), range(1, 16383, "b", 2)), NULL);
	a = serving(m, "a", 1);
	b = serving(m, "b", 2);

	/* One slot moves, its neighbours stay. */
	assert_int_equal(cluster_map_moved(m, 100, "a", 1), 0);
	assert_int_equal(cluster_map_node_for_slot(m, 100), a);
	assert_int_equal(cluster_map_node_for_slot(m, 99), b);
	assert_int_equal(cluster_map_node_for_slot(m, 101), b);
	/* Again: nothing more. */
	assert_int_equal(cluster_map_moved(m, 100, "a", 1), 0);
	assert_int_equal(cluster_map_node_for_slot(m, 100), a);

	/* To a node not seen yet: added. */
	assert_int_equal(cluster_map_moved(m, 16383, "::1", 7005), 0);
	d = serving(m, "::1", 7005);
	assert_int_equal(d, 2);
	assert_int_equal(cluster_map_node_for_slot(m, 16383), d);
	assert_int_equal(cluster_map_node_for_slot(m, 16382), b);

	/* A's last slots move away: unused, still in the table. */
	assert_int_equal(cluster_map_moved(m, 0, "b", 2), 0);
	assert_true(cluster_map_serves(m, (size_t)a));
	assert_int_equal(cluster_map_moved(m, 100, "b", 2), 0);
	assert_false(cluster_map_serves(m, (size_t)a));
	assert_int_equal(cluster_map_find(m, "a", 1), a);
	assert_true(cluster_map_complete(m));
	/* And back. */
	assert_int_equal(cluster_map_moved(m, 5, "a", 1), 0);
	assert_int_equal(serving(m, "a", 1), a);

	/* Refused, unchanged. */
	snap(m, &before);
	assert_int_equal(cluster_map_moved(m, 16384, "b", 2), -1);
	assert_int_equal(cluster_map_moved(m, 1, "", 2), -1);
	assert_int_equal(cluster_map_moved(m, 1, NULL, 2), -1);
	assert_int_equal(cluster_map_moved(m, 1, "b", 0), -1);
	assert_int_equal(cluster_map_moved(m, 1, "b", 65536), -1);
	{
		char longhost[CLUSTER_HOST_MAX + 2];

		memset(longhost, 'h', sizeof(longhost) - 1);
		longhost[sizeof(longhost) - 1] = '\0';
		assert_int_equal(cluster_map_moved(m, 1, longhost, 2), -1);
		longhost[CLUSTER_HOST_MAX] = '\0';
		assert_unchanged(m, &before);
		assert_int_equal(cluster_map_moved(m, 1, longhost, 2), 0);
		assert_int_equal(cluster_map_node_for_slot(m, 1), serving(m, longhost, 2));
	}

	/* A redirect as parsed, straight in. */
	{
		struct cluster_redirect r;

		assert_int_equal(cluster_redirect_parse(S("MOVED 3999 127.0.0.1:6381"), &r), 0);
		assert_int_equal(cluster_map_moved(m, r.slot, r.host, r.port), 0);
		assert_int_equal(cluster_map_node_for_slot(m, 3999), serving(m, "127.0.0.1", 6381));
	}
	cluster_map_free(m);
}

/* Only a full table (8 nodes in this test) gives a new node the index of
 * one that was unused before the call; while every node serves, no new one
 * gets in. */
static void test_map_full_table(void **state)
{
	static const char *const hosts[] = { "p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8" };
	static struct snapshot before;
	struct cluster_map *m = new_map();
	char *cause = NULL;

	(void)state;
	for (unsigned s = 0; s < 8; s++)
		assert_int_equal(cluster_map_moved(m, s, hosts[s], 1), 0);
	for (unsigned s = 0; s < 8; s++)
		assert_int_equal(serving(m, hosts[s], 1), (int)s);

	snap(m, &before);
	assert_int_equal(cluster_map_moved(m, 8, "p9", 1), -1);
	assert_unchanged(m, &before);

	/* p1 stops serving: its index is the one p9 gets. */
	assert_int_equal(cluster_map_moved(m, 0, "p2", 1), 0);
	assert_false(cluster_map_serves(m, 0));
	assert_int_equal(cluster_map_moved(m, 8, "p9", 1), 0);
	assert_int_equal(serving(m, "p9", 1), 0);
	assert_int_equal(cluster_map_find(m, "p1", 1), -1);
	assert_int_equal(cluster_map_nodes(m), 8);

	/* Every node served before this load: q has no index to take. */
	snap(m, &before);
	assert_int_equal(cluster_map_load(m, r_arr(2, range(0, 7, "p2", 1), range(8, 16383, "q", 1)), NULL, &cause),
		-1);
	assert_non_null(strstr(cause, "more nodes"));
	free(cause);
	assert_unchanged(m, &before);

	/* Now only p2 serves; the next load gives q1 the lowest unused index
	 * and q2 the next, while p2 keeps its own. */
	load_ok(m, r_arr(1, range(0, 16383, "p2", 1)), NULL);
	assert_int_equal(serving(m, "p2", 1), 1);
	load_ok(m, r_arr(3, range(0, 99, "q1", 1), range(100, 199, "p2", 1), range(200, 16383, "q2", 1)), NULL);
	assert_int_equal(serving(m, "q1", 1), 0);
	assert_int_equal(serving(m, "p2", 1), 1);
	assert_int_equal(serving(m, "q2", 1), 2);
	assert_int_equal(cluster_map_find(m, "p9", 1), -1);
	assert_int_equal(cluster_map_find(m, "p3", 1), -1);
	assert_int_equal(cluster_map_find(m, "p4", 1), 3);
	assert_false(cluster_map_serves(m, 3));
	assert_int_equal(cluster_map_nodes(m), 8);
	assert_true(cluster_map_complete(m));
	cluster_map_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crc16),
		cmocka_unit_test(test_key_slot_known),
		cmocka_unit_test(test_hash_tags),
		cmocka_unit_test(test_command_key_plain),
		cmocka_unit_test(test_command_keyless),
		cmocka_unit_test(test_command_key_scripts),
		cmocka_unit_test(test_command_key_xread),
		cmocka_unit_test(test_command_key_subcommand),
		cmocka_unit_test(test_redirect_good),
		cmocka_unit_test(test_redirect_bad),
		cmocka_unit_test_setup(test_map_empty, setup_pool),
		cmocka_unit_test_setup(test_map_load, setup_pool),
		cmocka_unit_test_setup(test_map_load_partial, setup_pool),
		cmocka_unit_test_setup(test_map_load_empty_ip, setup_pool),
		cmocka_unit_test_setup(test_map_load_bad, setup_pool),
		cmocka_unit_test_setup(test_map_reload_stable, setup_pool),
		cmocka_unit_test_setup(test_map_moved, setup_pool),
		cmocka_unit_test_setup(test_map_full_table, setup_pool),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

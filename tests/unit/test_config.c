#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/ssl.h>

#include "config.h"

/* Fixtures live in a fresh temporary folder; JSON in the tests is written with
 * single quotes, turned into double quotes when the file is written. */
static char dir[PATH_MAX];
static char config_path[PATH_MAX + 32];
static char *const no_env[] = { NULL };

#define HASH_A "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static void write_file(const char *name, const char *content)
{
	char path[PATH_MAX + 64];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	for (const char *p = content; *p != '\0'; p++)
		fputc(*p == '\'' ? '"' : *p, f);
	assert_int_equal(fclose(f), 0);
}

static char *abs_path(const char *name)
{
	static char buf[PATH_MAX + 64];

	snprintf(buf, sizeof(buf), "%s/%s", dir, name);
	return buf;
}

static int load(const char *json, char *const *envp, struct config **cfg, char **cause)
{
	write_file("config.json", json);
	return config_load(config_path, envp != NULL ? envp : no_env, cfg, cause);
}

static struct config *expect_ok(const char *json, char *const *envp)
{
	struct config *cfg = NULL;
	char *cause = NULL;

	if (load(json, envp, &cfg, &cause) < 0)
		fail_msg("config rejected: %s\n%s", cause, json);
	assert_null(cause);
	assert_non_null(cfg);
	return cfg;
}

/* Loading fails and the message holds every given piece (NULL-terminated). */
static void expect_error_v(const char *json, char *const *envp, ...)
{
	struct config *cfg = (struct config *)1;
	char *cause = NULL;
	const char *needle;
	va_list ap;

	if (load(json, envp, &cfg, &cause) == 0)
		fail_msg("config accepted: %s", json);
	assert_null(cfg);
	assert_non_null(cause);
	va_start(ap, envp);
	while ((needle = va_arg(ap, const char *)) != NULL) {
		if (strstr(cause, needle) == NULL)
			fail_msg("message \"%s\" lacks \"%s\"", cause, needle);
	}
	va_end(ap);
	free(cause);
}
#define expect_error(json, envp, ...) expect_error_v(json, envp, __VA_ARGS__, (const char *)NULL)

/* Loading fails and the message does not hold SECRET. */
static void expect_error_without(const char *json, char *const *envp, const char *secret)
{
	struct config *cfg = NULL;
	char *cause = NULL;

	assert_int_equal(load(json, envp, &cfg, &cause), -1);
	assert_non_null(cause);
	assert_null(strstr(cause, secret));
	free(cause);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int group_setup(void **state)
{
	char tmpl[] = "/tmp/test_config.XXXXXX";

	(void)state;
	if (mkdtemp(tmpl) == NULL || realpath(tmpl, dir) == NULL)
		return -1;
	snprintf(config_path, sizeof(config_path), "%s/config.json", dir);
	if (mkdir(abs_path("sub"), 0700) < 0)
		return -1;
	write_file("regions.json", "{}");
	write_file("sub/r.json", "{}");
	write_file("a.crt", "x");
	write_file("a.key", "x");
	write_file("b.crt", "x");
	write_file("b.key", "x");
	write_file("geo1.mmdb", "x");
	write_file("geo2.mmdb", "x");
	write_file("centroids.csv", "x");
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	return nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void test_free_null(void **state)
{
	(void)state;
	config_free(NULL);
}

static void test_defaults(void **state)
{
	struct config *cfg = expect_ok("{}", NULL);
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	char expect[PATH_MAX + 64];

	(void)state;
	assert_string_equal(cfg->path, config_path);
	assert_string_equal(cfg->dir, dir);
	assert_string_equal(cfg->public_.listen, "0.0.0.0:8443");
	assert_false(cfg->public_.tls.enabled);
	assert_int_equal(cfg->public_.tls.ncerts, 0);
	assert_false(cfg->public_.proxy_protocol);
	assert_string_equal(cfg->admin.listen, "127.0.0.1:8081");
	assert_false(cfg->admin.tls.enabled);
	assert_false(cfg->admin.proxy_protocol);
	assert_non_null(cfg->admin_tokens);
	assert_null(cfg->admin_tokens[0]);
	assert_int_equal(cfg->nadmin_tokens, 0);
	assert_string_equal(cfg->worker.listen, "");
	assert_false(cfg->worker.tls.enabled);
	assert_int_equal(cfg->threads, cpus < 1 ? 1 : cpus > 256 ? 256 : cpus);
	assert_string_equal(cfg->redis_url, "redis://127.0.0.1:6379/0");
	assert_string_equal(cfg->redis_host, "127.0.0.1");
	assert_int_equal(cfg->redis_port, 6379);
	assert_null(cfg->redis_unix);
	assert_null(cfg->redis_user);
	assert_null(cfg->redis_password);
	assert_int_equal(cfg->redis_db, 0);
	assert_int_equal(cfg->redis_timeout_ms, 500);
	snprintf(expect, sizeof(expect), "%s/regions.json", dir);
	assert_string_equal(cfg->regions, expect);
	snprintf(expect, sizeof(expect), "%s/secret.key", dir);
	assert_string_equal(cfg->secret_key_file, expect);
	assert_false(cfg->geoip_enabled);
	assert_null(cfg->geoip_databases);
	assert_int_equal(cfg->ngeoip_databases, 0);
	assert_null(cfg->country_centroids);
	assert_int_equal(cfg->ntrusted_proxies, 2);
	assert_string_equal(cfg->trusted_proxies[0], "127.0.0.0/8");
	assert_string_equal(cfg->trusted_proxies[1], "::1/128");
	assert_null(cfg->trusted_proxies[2]);
	assert_int_equal(cfg->max_body_bytes, 1048576);
	assert_int_equal(cfg->bootstrap_rps_per_ip, 20);
	assert_int_equal(cfg->batch_max_devices, 1000);
	assert_int_equal(cfg->auth_code_ttl_s, 300);
	assert_int_equal(cfg->request_timeout_s, 10);
	assert_int_equal(cfg->keepalive_timeout_s, 15);
	assert_int_equal(cfg->max_header_bytes, 8192);
	assert_int_equal(cfg->max_connections, 0);
	assert_int_equal(cfg->cache_entries, 1000000);
	assert_int_equal(cfg->drain_timeout_s, 10);
	assert_string_equal(cfg->log_level, "info");
	config_free(cfg);
}

static void test_full(void **state)
{
	struct config *cfg = expect_ok(
		"{\n"
		"  'public': { 'listen': '[::]:443', 'proxy_protocol': true,\n"
		"              'tls': { 'cert': 'a.crt', 'key': 'a.key' } },\n"
		"  'admin': { 'listen': '10.0.0.1:9000', 'tokens': ['" HASH_A "'],\n"
		"             'tls': { 'cert': 'b.crt', 'key': 'b.key' }, 'proxy_protocol': true },\n"
		"  'worker': { 'listen': '127.0.0.1:9100' },\n"
		"  'threads': 3,\n"
		"  'redis': { 'url': 'redis://db.example:6380/2', 'timeout_ms': 250 },\n"
		"  'regions': 'sub/r.json',\n"
		"  'secret_key_file': '/etc/bootstrapd/secret.key',\n"
		"  'geoip': { 'database': ['geo1.mmdb', 'geo2.mmdb'], 'country_centroids': 'centroids.csv' },\n"
		"  'trusted_proxies': ['10.0.0.0/8'],\n"
		"  'limits': { 'max_body_bytes': 2048, 'bootstrap_rps_per_ip': 0,\n"
		"              'batch_max_devices': 5, 'auth_code_ttl_s': 60, 'request_timeout_s': 30 },\n"
		"  'drain_timeout_s': 0,\n"
		"  'drain_grace_s': 7,\n"
		"  'log': { 'level': 'debug', 'format': 'json', 'access': true }\n"
		"}\n", NULL);

	(void)state;
	assert_string_equal(cfg->public_.listen, "[::]:443");
	assert_true(cfg->public_.proxy_protocol);
	assert_true(cfg->public_.tls.enabled);
	assert_string_equal(cfg->admin.listen, "10.0.0.1:9000");
	assert_true(cfg->admin.proxy_protocol);
	assert_true(cfg->admin.tls.enabled);
	assert_string_equal(cfg->admin.tls.certs[0].cert, abs_path("b.crt"));
	assert_int_equal(cfg->nadmin_tokens, 1);
	assert_string_equal(cfg->admin_tokens[0], HASH_A);
	assert_null(cfg->admin_tokens[1]);
	assert_string_equal(cfg->worker.listen, "127.0.0.1:9100");
	assert_int_equal(cfg->threads, 3);
	assert_string_equal(cfg->redis_host, "db.example");
	assert_int_equal(cfg->redis_port, 6380);
	assert_int_equal(cfg->redis_db, 2);
	assert_int_equal(cfg->redis_timeout_ms, 250);
	assert_string_equal(cfg->regions, abs_path("sub/r.json"));
	assert_string_equal(cfg->secret_key_file, "/etc/bootstrapd/secret.key");
	assert_true(cfg->geoip_enabled);
	assert_int_equal(cfg->ngeoip_databases, 2);
	assert_string_equal(cfg->geoip_databases[0], abs_path("geo1.mmdb"));
	assert_string_equal(cfg->geoip_databases[1], abs_path("geo2.mmdb"));
	assert_null(cfg->geoip_databases[2]);
	assert_string_equal(cfg->country_centroids, abs_path("centroids.csv"));
	assert_int_equal(cfg->ntrusted_proxies, 1);
	assert_string_equal(cfg->trusted_proxies[0], "10.0.0.0/8");
	assert_int_equal(cfg->max_body_bytes, 2048);
	assert_int_equal(cfg->bootstrap_rps_per_ip, 0);
	assert_int_equal(cfg->batch_max_devices, 5);
	assert_int_equal(cfg->auth_code_ttl_s, 60);
	assert_int_equal(cfg->request_timeout_s, 30);
	assert_int_equal(cfg->drain_timeout_s, 0);
	assert_string_equal(cfg->log_level, "debug");
	assert_string_equal(cfg->log_format, "json");
	assert_true(cfg->log_access);
	assert_int_equal(cfg->drain_grace_s, 7);
	config_free(cfg);
}

static void test_missing_file(void **state)
{
	struct config *cfg = (struct config *)1;
	char *cause = NULL;

	(void)state;
	assert_int_equal(config_load(abs_path("nope.json"), no_env, &cfg, &cause), -1);
	assert_null(cfg);
	assert_non_null(strstr(cause, "nope.json: cannot open"));
	free(cause);
}

static void test_not_object(void **state)
{
	(void)state;
	expect_error("[]", NULL, "expected a JSON object", "found an array");
	expect_error("5", NULL, "expected a JSON object", "found 5");
}

static void test_syntax_error_line(void **state)
{
	(void)state;
	expect_error("{\n  'threads': 4,\n  'regions': x\n}\n", NULL, "config.json: line 3,");
	expect_error("{\n  'threads': 4,\n}\n", NULL, "config.json: line 3,");
	expect_error("{\n\n\n  'threads': 4 // four\n}\n", NULL, "line 4,");
	expect_error("{ 'threads': 4 }\n{}\n", NULL, "line 2,", "trailing garbage");
	expect_error("{\n'threads': [1,\n", NULL, "line 3,", "premature EOF");
	expect_error("", NULL, "line 1,");
}

static void test_unknown_keys(void **state)
{
	(void)state;
	expect_error("{ 'thread': 4 }", NULL, "config.json: unknown key \"thread\"");
	expect_error("{ 'redis': { 'urll': 'redis://x' } }", NULL,
		"config.json: unknown key \"redis.urll\"");
	expect_error("{ 'limits': { 'max_body': 2048 } }", NULL, "unknown key \"limits.max_body\"");
	expect_error("{ 'geoip': { 'databases': 'geo1.mmdb' } }", NULL,
		"unknown key \"geoip.databases\"");
	/* A dotted name at the top must not reach the nested key. */
	expect_error("{ 'redis.url': 'redis://x' }", NULL, "unknown key \"redis.url\"");
	expect_error("{ 'public': { 'tls': { 'cert': 'a.crt', 'key': 'a.key', 'foo': 1 } } }",
		NULL, "unknown key \"public.tls.foo\"");
	expect_error("{ 'admin': { 'tls': { 'cert': 'a.crt', 'key': 'a.key', 'ciphres': 'x' } } }",
		NULL, "unknown key \"admin.tls.ciphres\"");
	expect_error("{ 'public': { 'tls': { 'certs': [ { 'cert': 'a.crt', 'key': 'a.key' },"
		" { 'crt': 'b.crt', 'key': 'b.key' } ] } } }", NULL,
		"unknown key \"public.tls.certs[1].crt\"");
}

static void test_duplicate_key(void **state)
{
	(void)state;
	expect_error("{ 'threads': 1, 'threads': 2 }", NULL, "duplicate key \"threads\"");
	expect_error("{ 'redis': { 'url': 'redis://a', 'url': 'redis://b' } }", NULL,
		"duplicate key \"redis.url\"");
}

static void test_bad_types(void **state)
{
	(void)state;
	expect_error("{ 'threads': '4' }", NULL, "\"threads\": expected an integer in 0..256",
		"found a string \"4\"");
	expect_error("{ 'threads': 1.5 }", NULL, "\"threads\": expected an integer", "found 1.5");
	expect_error("{ 'threads': 99999999999999999999999 }", NULL, "\"threads\": expected an integer");
	expect_error("{ 'regions': 5 }", NULL, "\"regions\": expected a non-empty path string",
		"found 5");
	expect_error("{ 'regions': '' }", NULL, "\"regions\": expected a non-empty path string");
	expect_error("{ 'public': { 'proxy_protocol': 'yes' } }", NULL,
		"\"public.proxy_protocol\": expected true or false", "found a string \"yes\"");
	expect_error("{ 'public': { 'listen': true } }", NULL,
		"\"public.listen\": expected a string", "found true");
	expect_error("{ 'trusted_proxies': '10.0.0.0/8' }", NULL,
		"\"trusted_proxies\": expected a list of strings");
	expect_error("{ 'admin': { 'tokens': [5] } }", NULL,
		"\"admin.tokens[0]\": expected a string", "found 5");
	expect_error("{ 'redis': 5 }", NULL, "\"redis\": expected an object", "found 5");
	expect_error("{ 'limits': null }", NULL, "\"limits\": expected an object", "found null");
	expect_error("{ 'public': { 'tls': 'a.crt' } }", NULL, "\"public.tls\": expected an object");
	expect_error("{ 'log': { 'level': 'verbose' } }", NULL, "\"log.level\": expected one of debug");
	expect_error("{ 'log': { 'format': 'xml' } }", NULL, "\"log.format\": expected text or json");
	expect_error("{ 'log': { 'access': 'yes' } }", NULL, "log.access");
	/* The key that moved says where it went. */
	expect_error("{ 'log_level': 'debug' }", NULL, "it is \"log\": {\"level\": ...} now");
}

struct int_key {
	const char *pre, *post; /* JSON around the number */
	const char *name;
	long long min, max;
	size_t off;
	bool is_size;
};

#define IK(pre, post, name, lo, hi, field) \
	{ pre, post, name, lo, hi, offsetof(struct config, field), sizeof(((struct config *)0)->field) == sizeof(size_t) }

static const struct int_key int_keys[] = {
	IK("{'threads': ", "}", "threads", 1, 256, threads),
	IK("{'redis': {'timeout_ms': ", "}}", "redis.timeout_ms", 10, 60000, redis_timeout_ms),
	IK("{'limits': {'max_body_bytes': ", "}}", "limits.max_body_bytes", 1024, 67108864,
		max_body_bytes),
	IK("{'limits': {'bootstrap_rps_per_ip': ", "}}", "limits.bootstrap_rps_per_ip", 0, 1000000,
		bootstrap_rps_per_ip),
	IK("{'limits': {'batch_max_devices': ", "}}", "limits.batch_max_devices", 1, 100000,
		batch_max_devices),
	IK("{'limits': {'auth_code_ttl_s': ", "}}", "limits.auth_code_ttl_s", 1, 86400,
		auth_code_ttl_s),
	IK("{'limits': {'request_timeout_s': ", "}}", "limits.request_timeout_s", 1, 3600, request_timeout_s),
	IK("{'limits': {'keepalive_timeout_s': ", "}}", "limits.keepalive_timeout_s", 1, 3600, keepalive_timeout_s),
	IK("{'limits': {'max_header_bytes': ", "}}", "limits.max_header_bytes", 1024, 1048576, max_header_bytes),
	IK("{'cache': {'entries': ", "}}", "cache.entries", 0, 100000000, cache_entries),
	IK("{'drain_timeout_s': ", "}", "drain_timeout_s", 0, 600, drain_timeout_s),
};

static long long get_int(const struct config *cfg, const struct int_key *k)
{
	const char *p = (const char *)cfg + k->off;

	return k->is_size ? (long long)*(const size_t *)p : *(const int *)p;
}

static void test_int_bounds(void **state)
{
	char json[256], found[64], key[96];

	(void)state;
	for (size_t i = 0; i < sizeof(int_keys) / sizeof(int_keys[0]); i++) {
		const struct int_key *k = &int_keys[i];
		/* threads 0 means "one per CPU" and is tested with the defaults. */
		long long lo = strcmp(k->name, "threads") == 0 ? 0 : k->min;
		long long good[] = { k->min, k->max }, bad[] = { lo - 1, k->max + 1 };
		struct config *cfg;

		for (size_t j = 0; j < 2; j++) {
			snprintf(json, sizeof(json), "%s%lld%s", k->pre, good[j], k->post);
			cfg = expect_ok(json, NULL);
			assert_int_equal(get_int(cfg, k), good[j]);
			config_free(cfg);
		}
		for (size_t j = 0; j < 2; j++) {
			char range[64];

			snprintf(json, sizeof(json), "%s%lld%s", k->pre, bad[j], k->post);
			snprintf(key, sizeof(key), "\"%s\"", k->name);
			snprintf(range, sizeof(range), "expected an integer in %lld..%lld", lo, k->max);
			snprintf(found, sizeof(found), "found %lld", bad[j]);
			expect_error(json, NULL, key, range, found);
		}
	}
}

static void test_admin_tokens(void **state)
{
	struct config *cfg;

	(void)state;
	cfg = expect_ok("{ 'admin': { 'tokens': ['" HASH_A "',"
		" 'sha256:0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF'] } }", NULL);
	assert_int_equal(cfg->nadmin_tokens, 2);
	assert_string_equal(cfg->admin_tokens[0], HASH_A);
	assert_string_equal(cfg->admin_tokens[1], HASH_A); /* lower-cased */
	assert_null(cfg->admin_tokens[2]);
	config_free(cfg);

	expect_error("{ 'admin': { 'tokens': ['sha256:abc'] } }", NULL,
		"\"admin.tokens[0]\": expected \"sha256:\" followed by 64 hex digits",
		"found \"sha256:abc\"");
	expect_error("{ 'admin': { 'tokens': ['" HASH_A "', 'secret'] } }", NULL,
		"\"admin.tokens[1]\"");
	expect_error("{ 'admin': { 'tokens': ['sha1:0123456789abcdef0123456789abcdef0123456789abcdef"
		"0123456789abcdef'] } }", NULL, "\"admin.tokens[0]\"");
	expect_error("{ 'admin': { 'tokens': ['sha256:0123456789abcdef0123456789abcdef0123456789"
		"abcdef0123456789abcdeg'] } }", NULL, "\"admin.tokens[0]\"");
	expect_error("{ 'admin': { 'tokens': ['" HASH_A "0'] } }", NULL, "\"admin.tokens[0]\"");
}

static void test_trusted_proxies(void **state)
{
	static const char *const bad[] = { "10.0.0.0/33", "::/129", "10.0.0/8", "foo", "10.0.0.0/",
		"10.0.0.0/8x", "", "10.0.0.0/-1", "/8", "10.0.0.0/8/8", "fe80::1%eth0/64" };
	struct config *cfg;
	char json[128];

	(void)state;
	cfg = expect_ok("{ 'trusted_proxies': ['10.1.2.3/8', '192.168.1.1', '2001:db8::1/32',"
		" '::1', '0.0.0.0/0', '172.16.0.0/12'] }", NULL);
	assert_int_equal(cfg->ntrusted_proxies, 6);
	assert_string_equal(cfg->trusted_proxies[0], "10.0.0.0/8");
	assert_string_equal(cfg->trusted_proxies[1], "192.168.1.1/32");
	assert_string_equal(cfg->trusted_proxies[2], "2001:db8::/32");
	assert_string_equal(cfg->trusted_proxies[3], "::1/128");
	assert_string_equal(cfg->trusted_proxies[4], "0.0.0.0/0");
	assert_string_equal(cfg->trusted_proxies[5], "172.16.0.0/12");
	config_free(cfg);

	cfg = expect_ok("{ 'trusted_proxies': [] }", NULL);
	assert_int_equal(cfg->ntrusted_proxies, 0);
	assert_null(cfg->trusted_proxies[0]);
	config_free(cfg);

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(json, sizeof(json), "{ 'trusted_proxies': ['127.0.0.0/8', '%s'] }", bad[i]);
		expect_error(json, NULL, "\"trusted_proxies[1]\": expected an IPv4 or IPv6 CIDR");
	}
}

static void test_relative_paths(void **state)
{
	struct config *cfg = NULL;
	char *cause = NULL, cwd[PATH_MAX], link[PATH_MAX + 64];

	(void)state;
	cfg = expect_ok("{ 'regions': 'sub/r.json', 'secret_key_file': 'keys/s.key' }", NULL);
	assert_string_equal(cfg->regions, abs_path("sub/r.json"));
	assert_string_equal(cfg->secret_key_file, abs_path("keys/s.key"));
	config_free(cfg);

	cfg = expect_ok("{ 'regions': '/dev/null' }", NULL);
	assert_string_equal(cfg->regions, "/dev/null");
	config_free(cfg);

	/* A relative config path: everything still comes out absolute. */
	write_file("config.json", "{ 'regions': 'regions.json' }");
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	assert_int_equal(chdir(dir), 0);
	assert_int_equal(config_load("config.json", no_env, &cfg, &cause), 0);
	assert_int_equal(chdir(cwd), 0);
	assert_string_equal(cfg->path, config_path);
	assert_string_equal(cfg->dir, dir);
	assert_string_equal(cfg->regions, abs_path("regions.json"));
	config_free(cfg);

	/* Through a symlinked folder: the folder's real path is the base. */
	write_file("sub/config.json", "{ 'regions': 'r.json' }");
	snprintf(link, sizeof(link), "%s/lnk", dir);
	assert_int_equal(symlink("sub", link), 0);
	snprintf(link, sizeof(link), "%s/lnk/config.json", dir);
	assert_int_equal(config_load(link, no_env, &cfg, &cause), 0);
	assert_string_equal(cfg->dir, abs_path("sub"));
	assert_string_equal(cfg->path, abs_path("sub/config.json"));
	assert_string_equal(cfg->regions, abs_path("sub/r.json"));
	config_free(cfg);
	assert_int_equal(unlink(abs_path("lnk")), 0);
	assert_int_equal(unlink(abs_path("sub/config.json")), 0);
}

static void test_missing_regions(void **state)
{
	(void)state;
	expect_error("{ 'regions': 'nope.json' }", NULL, "\"regions\": cannot read",
		abs_path("nope.json"), "No such file");
	/* The default "regions.json" is checked too. */
	write_file("sub/config.json", "{}");
	{
		struct config *cfg = (struct config *)1;
		char *cause = NULL;

		assert_int_equal(config_load(abs_path("sub/config.json"), no_env, &cfg, &cause), -1);
		assert_null(cfg);
		assert_non_null(strstr(cause, abs_path("sub/regions.json")));
		free(cause);
	}
	assert_int_equal(unlink(abs_path("sub/config.json")), 0);
}

static void test_geoip(void **state)
{
	struct config *cfg;

	(void)state;
	cfg = expect_ok("{ 'geoip': { 'database': 'geo1.mmdb' } }", NULL);
	assert_true(cfg->geoip_enabled);
	assert_int_equal(cfg->ngeoip_databases, 1);
	assert_string_equal(cfg->geoip_databases[0], abs_path("geo1.mmdb"));
	assert_null(cfg->geoip_databases[1]);
	assert_null(cfg->country_centroids);
	config_free(cfg);

	expect_error("{ 'geoip': { 'database': 'missing.mmdb' } }", NULL,
		"\"geoip.database\": cannot read", abs_path("missing.mmdb"));
	expect_error("{ 'geoip': { 'database': ['geo1.mmdb', 'missing.mmdb'] } }", NULL,
		"\"geoip.database\": cannot read", abs_path("missing.mmdb"));
	expect_error("{ 'geoip': { 'database': 'geo1.mmdb', 'country_centroids': 'x.csv' } }", NULL,
		"\"geoip.country_centroids\": cannot read", abs_path("x.csv"));
	expect_error("{ 'geoip': { 'database': [] } }", NULL,
		"\"geoip.database\": expected at least one path");
	expect_error("{ 'geoip': { 'database': ['geo1.mmdb', 7] } }", NULL,
		"\"geoip.database[1]\": expected a non-empty path string");
	expect_error("{ 'geoip': { 'database': 7 } }", NULL,
		"\"geoip.database\": expected a path or a list of paths");
	expect_error("{ 'geoip': {} }", NULL, "\"geoip.database\" is required");
	expect_error("{ 'geoip': { 'country_centroids': 'centroids.csv' } }", NULL,
		"\"geoip.database\" is required");
	expect_error("{ 'geoip': 'geo1.mmdb' }", NULL, "\"geoip\": expected an object");
}

static void test_tls_one_pair(void **state)
{
	struct config *cfg;

	(void)state;
	cfg = expect_ok("{ 'public': { 'tls': { 'cert': 'a.crt', 'key': 'a.key' } } }", NULL);
	assert_true(cfg->public_.tls.enabled);
	assert_int_equal(cfg->public_.tls.ncerts, 1);
	assert_string_equal(cfg->public_.tls.certs[0].cert, abs_path("a.crt"));
	assert_string_equal(cfg->public_.tls.certs[0].key, abs_path("a.key"));
	assert_int_equal(cfg->public_.tls.min_version, TLS1_2_VERSION);
	assert_false(cfg->public_.tls.legacy_device_ciphers);
	assert_null(cfg->public_.tls.ciphers);
	assert_null(cfg->public_.tls.ciphersuites);
	assert_false(cfg->admin.tls.enabled);
	config_free(cfg);

	cfg = expect_ok("{ 'public': { 'tls': null } }", NULL);
	assert_false(cfg->public_.tls.enabled);
	config_free(cfg);

	expect_error("{ 'public': { 'tls': { 'cert': 'a.crt' } } }", NULL,
		"\"public.tls\": needs \"cert\" and \"key\"");
	expect_error("{ 'public': { 'tls': {} } }", NULL, "\"public.tls\": needs");
	expect_error("{ 'public': { 'tls': { 'cert': 'nope.crt', 'key': 'a.key' } } }", NULL,
		"\"public.tls\": cannot read certificate file", abs_path("nope.crt"));
	expect_error("{ 'worker': { 'tls': { 'cert': 'a.crt', 'key': 'nope.key' } } }", NULL,
		"\"worker.tls\": cannot read private key file", abs_path("nope.key"));
	expect_error("{ 'public': { 'tls': { 'cert': 5, 'key': 'a.key' } } }", NULL,
		"\"public.tls.cert\": expected a non-empty path string");
}

static void test_tls_certs_list(void **state)
{
	struct config *cfg;
	const struct config_tls *t;

	(void)state;
	cfg = expect_ok("{ 'admin': { 'tls': { 'certs': [ { 'cert': 'a.crt', 'key': 'a.key' },"
		" { 'cert': 'b.crt', 'key': 'b.key' } ], 'ciphers': 'ECDHE+AESGCM',"
		" 'ciphersuites': 'TLS_AES_128_GCM_SHA256', 'min_version': '1.3',"
		" 'legacy_device_ciphers': true } } }", NULL);
	t = &cfg->admin.tls;
	assert_true(t->enabled);
	assert_int_equal(t->ncerts, 2);
	assert_string_equal(t->certs[0].cert, abs_path("a.crt"));
	assert_string_equal(t->certs[0].key, abs_path("a.key"));
	assert_string_equal(t->certs[1].cert, abs_path("b.crt"));
	assert_string_equal(t->certs[1].key, abs_path("b.key"));
	assert_string_equal(t->ciphers, "ECDHE+AESGCM");
	assert_string_equal(t->ciphersuites, "TLS_AES_128_GCM_SHA256");
	assert_int_equal(t->min_version, TLS1_3_VERSION);
	assert_true(t->legacy_device_ciphers);
	config_free(cfg);

	cfg = expect_ok("{ 'public': { 'tls': { 'cert': 'a.crt', 'key': 'a.key',"
		" 'min_version': '1.2' } } }", NULL);
	assert_int_equal(cfg->public_.tls.min_version, TLS1_2_VERSION);
	config_free(cfg);

	expect_error("{ 'public': { 'tls': { 'cert': 'a.crt', 'key': 'a.key',"
		" 'certs': [ { 'cert': 'b.crt', 'key': 'b.key' } ] } } }", NULL, "not both");
	expect_error("{ 'public': { 'tls': { 'certs': [] } } }", NULL,
		"\"public.tls.certs\": expected a list of 1 to 4", "found 0 entries");
	expect_error("{ 'public': { 'tls': { 'certs': [ {'cert':'a.crt','key':'a.key'},"
		" {'cert':'a.crt','key':'a.key'}, {'cert':'a.crt','key':'a.key'},"
		" {'cert':'a.crt','key':'a.key'}, {'cert':'a.crt','key':'a.key'} ] } } }", NULL,
		"found 5 entries");
	expect_error("{ 'public': { 'tls': { 'certs': [ { 'cert': 'a.crt' } ] } } }", NULL,
		"\"public.tls.certs[0]\": needs both \"cert\" and \"key\"");
	expect_error("{ 'public': { 'tls': { 'certs': [ 'a.crt' ] } } }", NULL,
		"\"public.tls.certs[0]\": expected an object");
	expect_error("{ 'public': { 'tls': { 'certs': [ { 'cert': 'b.crt', 'key': 'gone.key' } ] } } }",
		NULL, "cannot read private key file", abs_path("gone.key"));
	expect_error("{ 'public': { 'tls': { 'cert': 'a.crt', 'key': 'a.key', 'min_version': '1.1' } } }",
		NULL, "\"public.tls.min_version\": expected \"1.2\" or \"1.3\"", "found a string \"1.1\"");
	expect_error("{ 'public': { 'tls': { 'cert': 'a.crt', 'key': 'a.key', 'min_version': 1.3 } } }",
		NULL, "\"public.tls.min_version\": expected \"1.2\" or \"1.3\"", "found 1.3");
	expect_error("{ 'public': { 'tls': { 'cert': 'a.crt', 'key': 'a.key',"
		" 'legacy_device_ciphers': 'yes' } } }", NULL,
		"\"public.tls.legacy_device_ciphers\": expected true or false");
	expect_error("{ 'public': { 'tls': { 'cert': 'a.crt', 'key': 'a.key', 'ciphers': '' } } }",
		NULL, "\"public.tls.ciphers\": expected a non-empty string");
}

static void test_listen(void **state)
{
	struct config *cfg;

	(void)state;
	cfg = expect_ok("{ 'public': { 'listen': '[::1]:8443' }, 'admin': { 'listen': 'localhost:0' },"
		" 'worker': { 'listen': '*:9100' } }", NULL);
	assert_string_equal(cfg->public_.listen, "[::1]:8443");
	assert_string_equal(cfg->admin.listen, "localhost:0");
	assert_string_equal(cfg->worker.listen, "*:9100");
	config_free(cfg);

	expect_error("{ 'public': { 'listen': '0.0.0.0' } }", NULL, "\"public.listen\": expected host:port");
	expect_error("{ 'public': { 'listen': '' } }", NULL, "\"public.listen\": expected host:port");
	expect_error("{ 'admin': { 'listen': '[::1:80' } }", NULL, "\"admin.listen\"");
	expect_error("{ 'admin': { 'listen': '[zz::1]:80' } }", NULL, "bad IPv6 address");
	expect_error("{ 'admin': { 'listen': 'host:65536' } }", NULL, "\"admin.listen\"");
	expect_error("{ 'admin': { 'listen': '::1:80' } }", NULL, "\"admin.listen\"");
	expect_error("{ 'worker': { 'listen': 'x' } }", NULL, "\"worker.listen\"");
}

static void test_redis_url(void **state)
{
	static const char *const bad[] = { "http://x", "redis://", "redis://h:0", "redis://h:70000",
		"redis://h/x", "unix://rel.sock", "redis://h?db=1", "redis://h:", "redis://[::1",
		"unix:///s?x=1", "redis://:pw%zz@h", "" };
	struct config *cfg;
	char json[160];

	(void)state;
	cfg = expect_ok("{ 'redis': { 'url': 'redis://cache' } }", NULL);
	assert_string_equal(cfg->redis_url, "redis://cache");
	assert_string_equal(cfg->redis_host, "cache");
	assert_int_equal(cfg->redis_port, 6379);
	assert_int_equal(cfg->redis_db, 0);
	assert_null(cfg->redis_password);
	config_free(cfg);

	cfg = expect_ok("{ 'redis': { 'url': 'redis://:p%40ss@10.0.0.5:6380/2' } }", NULL);
	assert_string_equal(cfg->redis_host, "10.0.0.5");
	assert_int_equal(cfg->redis_port, 6380);
	assert_int_equal(cfg->redis_db, 2);
	assert_null(cfg->redis_user);
	assert_string_equal(cfg->redis_password, "p@ss");
	config_free(cfg);

	cfg = expect_ok("{ 'redis': { 'url': 'redis://app:pw@[::1]:7000/3' } }", NULL);
	assert_string_equal(cfg->redis_host, "::1");
	assert_int_equal(cfg->redis_port, 7000);
	assert_int_equal(cfg->redis_db, 3);
	assert_string_equal(cfg->redis_user, "app");
	assert_string_equal(cfg->redis_password, "pw");
	config_free(cfg);

	cfg = expect_ok("{ 'redis': { 'url': 'unix:///run/redis/redis.sock?db=4' } }", NULL);
	assert_null(cfg->redis_host);
	assert_string_equal(cfg->redis_unix, "/run/redis/redis.sock");
	assert_int_equal(cfg->redis_db, 4);
	config_free(cfg);

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(json, sizeof(json), "{ 'redis': { 'url': '%s' } }", bad[i]);
		expect_error(json, NULL, "\"redis.url\": expected redis://");
	}
	/* The message does not repeat a password. */
	expect_error_without("{ 'redis': { 'url': 'redis://:hunter2@h:99999' } }", NULL, "hunter2");
}

static void test_redis_sentinel(void **state)
{
	char *env[] = { "RPW=s3cret", NULL };
	char *noenv[] = { "OTHER=1", NULL };
	struct config *cfg;

	(void)state;
	cfg = expect_ok("{ 'redis': { 'sentinels': ['10.0.0.1:26379', '[::1]:26380', 's3.example:26381'],"
		" 'master_name': 'bd', 'password_env': 'RPW' } }", env);
	assert_int_equal(cfg->nredis_sentinels, 3);
	assert_string_equal(cfg->redis_sentinels[1], "[::1]:26380");
	assert_string_equal(cfg->redis_master_name, "bd");
	assert_string_equal(cfg->redis_password, "s3cret");
	assert_null(cfg->redis_host); /* the URL's default is not used */
	config_free(cfg);

	/* A password for one server comes from the environment too. */
	cfg = expect_ok("{ 'redis': { 'url': 'redis://h', 'password_env': 'RPW' } }", env);
	assert_string_equal(cfg->redis_host, "h");
	assert_string_equal(cfg->redis_password, "s3cret");
	config_free(cfg);

	expect_error("{ 'redis': { 'url': 'redis://h', 'sentinels': ['h:26379'], 'master_name': 'bd' } }", NULL,
		"exactly one Redis topology");
	expect_error("{ 'redis': { 'sentinels': ['h:26379'] } }", NULL, "\"redis.master_name\" is required");
	expect_error("{ 'redis': { 'master_name': 'bd' } }", NULL, "\"redis.master_name\" needs");
	expect_error("{ 'redis': { 'sentinels': ['h'], 'master_name': 'bd' } }", NULL, "\"redis.sentinels[0]\"",
		"host:port");
	expect_error("{ 'redis': { 'sentinels': ['h:0'], 'master_name': 'bd' } }", NULL, "of a Redis node");
	expect_error("{ 'redis': { 'sentinels': ['*:26379'], 'master_name': 'bd' } }", NULL, "of a Redis node");
	expect_error("{ 'redis': { 'password_env': 'RPW' } }", noenv, "RPW is not set");
	expect_error("{ 'redis': { 'password_env': '1X' } }", NULL, "environment variable");
	expect_error("{ 'redis': { 'password_env': 'BOOTSTRAPD_PW' } }", NULL, "choose another name");
	expect_error("{ 'redis': { 'url': 'redis://:pw@h', 'password_env': 'RPW' } }", env, "give one");
	/* The message does not repeat the password. */
	expect_error_without("{ 'redis': { 'url': 'redis://:pw@h', 'password_env': 'RPW' } }", env, "s3cret");
}

static void test_redis_cluster(void **state)
{
	char *env[] = { "RPW=s3cret", NULL };
	struct config *cfg;

	(void)state;
	cfg = expect_ok("{ 'redis': { 'cluster': ['10.0.0.1:7000', '[::1]:7001'], 'password_env': 'RPW' } }", env);
	assert_int_equal(cfg->nredis_cluster, 2);
	assert_string_equal(cfg->redis_cluster[1], "[::1]:7001");
	assert_string_equal(cfg->redis_password, "s3cret");
	assert_null(cfg->redis_host); /* the URL's default is not used */
	assert_int_equal(cfg->redis_db, 0);
	config_free(cfg);

	expect_error("{ 'redis': { 'url': 'redis://h', 'cluster': ['h:7000'] } }", NULL, "exactly one Redis topology",
		"redis.url");
	expect_error("{ 'redis': { 'cluster': ['h:7000'], 'sentinels': ['h:26379'], 'master_name': 'bd' } }", NULL,
		"exactly one Redis topology", "redis.sentinels");
	expect_error("{ 'redis': { 'cluster': ['h:7000', 'h'] } }", NULL, "\"redis.cluster[1]\"", "host:port");
	expect_error("{ 'redis': { 'cluster': ['h:0'] } }", NULL, "of a Redis node");
	expect_error("{ 'redis': { 'cluster': 'h:7000' } }", NULL, "redis.cluster");
}

static void test_env_string(void **state)
{
	char *env[] = { "BOOTSTRAPD_REDIS_URL=redis://10.1.2.3:7000/5", "BOOTSTRAPD_LOG_LEVEL=warn",
		"BOOTSTRAPD_REGIONS=sub/r.json", "BOOTSTRAPD_WORKER_LISTEN=", NULL };
	struct config *cfg;

	(void)state;
	cfg = expect_ok("{ 'redis': { 'url': 'redis://file-host' }, 'worker': { 'listen': '127.0.0.1:1' },"
		" 'log': { 'level': 'debug' } }", env);
	assert_string_equal(cfg->redis_url, "redis://10.1.2.3:7000/5");
	assert_string_equal(cfg->redis_host, "10.1.2.3");
	assert_int_equal(cfg->redis_port, 7000);
	assert_int_equal(cfg->redis_db, 5);
	assert_string_equal(cfg->log_level, "warn");
	assert_string_equal(cfg->regions, abs_path("sub/r.json"));
	assert_string_equal(cfg->worker.listen, "");
	config_free(cfg);

	{
		char *bad[] = { "BOOTSTRAPD_REDIS_URL=mysql://x", NULL };
		expect_error("{}", bad, "BOOTSTRAPD_REDIS_URL: \"redis.url\": expected redis://");
	}
	{
		char *bad[] = { "BOOTSTRAPD_REGIONS=nope.json", NULL };
		expect_error("{}", bad, "BOOTSTRAPD_REGIONS: \"regions\": cannot read");
	}
}

static void test_env_int_bool(void **state)
{
	char *env[] = { "BOOTSTRAPD_LIMITS_MAX_BODY_BYTES=2048", "BOOTSTRAPD_THREADS= 7 ",
		"BOOTSTRAPD_PUBLIC_PROXY_PROTOCOL=true", "BOOTSTRAPD_ADMIN_PROXY_PROTOCOL=false", NULL };
	struct config *cfg;

	(void)state;
	cfg = expect_ok("{ 'limits': { 'max_body_bytes': 4096 }, 'admin': { 'proxy_protocol': true } }",
		env);
	assert_int_equal(cfg->max_body_bytes, 2048);
	assert_int_equal(cfg->threads, 7);
	assert_true(cfg->public_.proxy_protocol);
	assert_false(cfg->admin.proxy_protocol);
	config_free(cfg);

	{
		char *bad[] = { "BOOTSTRAPD_LIMITS_MAX_BODY_BYTES=abc", NULL };
		expect_error("{}", bad, "BOOTSTRAPD_LIMITS_MAX_BODY_BYTES: \"limits.max_body_bytes\": "
			"expected an integer in 1024..67108864, found a string \"abc\"");
	}
	{
		char *bad[] = { "BOOTSTRAPD_LIMITS_MAX_BODY_BYTES=100", NULL };
		expect_error("{}", bad, "BOOTSTRAPD_LIMITS_MAX_BODY_BYTES:", "found 100");
	}
	{
		char *bad[] = { "BOOTSTRAPD_THREADS=", NULL };
		expect_error("{}", bad, "BOOTSTRAPD_THREADS:", "found a string \"\"");
	}
	{
		char *bad[] = { "BOOTSTRAPD_PUBLIC_PROXY_PROTOCOL=yes", NULL };
		expect_error("{}", bad, "BOOTSTRAPD_PUBLIC_PROXY_PROTOCOL:", "expected true or false");
	}
}

static void test_env_list(void **state)
{
	char *env[] = { "BOOTSTRAPD_TRUSTED_PROXIES=[\"10.0.0.0/8\"]",
		"BOOTSTRAPD_ADMIN_TOKENS=[\"" HASH_A "\"]", NULL };
	struct config *cfg;

	(void)state;
	cfg = expect_ok("{ 'trusted_proxies': ['192.168.0.0/16', '172.16.0.0/12'] }", env);
	assert_int_equal(cfg->ntrusted_proxies, 1);
	assert_string_equal(cfg->trusted_proxies[0], "10.0.0.0/8");
	assert_null(cfg->trusted_proxies[1]);
	assert_int_equal(cfg->nadmin_tokens, 1);
	assert_string_equal(cfg->admin_tokens[0], HASH_A);
	config_free(cfg);

	{
		char *bad[] = { "BOOTSTRAPD_TRUSTED_PROXIES=10.0.0.0/8", NULL };
		expect_error("{}", bad, "BOOTSTRAPD_TRUSTED_PROXIES: line 1, column");
	}
	{
		char *bad[] = { "BOOTSTRAPD_TRUSTED_PROXIES=[\"10.0.0.0/99\"]", NULL };
		expect_error("{}", bad, "BOOTSTRAPD_TRUSTED_PROXIES: \"trusted_proxies[0]\"");
	}
	{
		char *bad[] = { "BOOTSTRAPD_ADMIN_TOKENS=[\"nope\"]", NULL };
		expect_error("{}", bad, "BOOTSTRAPD_ADMIN_TOKENS: \"admin.tokens[0]\"");
	}
}

static void test_env_paths(void **state)
{
	struct config *cfg;

	(void)state;
	{
		char *env[] = { "BOOTSTRAPD_GEOIP_DATABASE=geo2.mmdb", NULL };
		cfg = expect_ok("{}", env);
		assert_true(cfg->geoip_enabled);
		assert_int_equal(cfg->ngeoip_databases, 1);
		assert_string_equal(cfg->geoip_databases[0], abs_path("geo2.mmdb"));
		config_free(cfg);
	}
	{
		char *env[] = { "BOOTSTRAPD_GEOIP_DATABASE=[\"geo1.mmdb\", \"geo2.mmdb\"]",
			"BOOTSTRAPD_GEOIP_COUNTRY_CENTROIDS=centroids.csv", NULL };
		cfg = expect_ok("{ 'geoip': { 'database': 'nope.mmdb' } }", env);
		assert_int_equal(cfg->ngeoip_databases, 2);
		assert_string_equal(cfg->geoip_databases[1], abs_path("geo2.mmdb"));
		assert_string_equal(cfg->country_centroids, abs_path("centroids.csv"));
		config_free(cfg);
	}
	{
		char *bad[] = { "BOOTSTRAPD_GEOIP_COUNTRY_CENTROIDS=centroids.csv", NULL };
		expect_error("{}", bad, "BOOTSTRAPD_GEOIP_COUNTRY_CENTROIDS:",
			"\"geoip.database\" is required");
	}
	{
		char *bad[] = { "BOOTSTRAPD_GEOIP_DATABASE=missing.mmdb", NULL };
		expect_error("{}", bad, "BOOTSTRAPD_GEOIP_DATABASE: \"geoip.database\": cannot read");
	}
}

static void test_env_object(void **state)
{
	struct config *cfg;

	(void)state;
	{
		char *env[] = { "BOOTSTRAPD_PUBLIC_TLS={\"cert\":\"a.crt\",\"key\":\"a.key\"}", NULL };
		cfg = expect_ok("{}", env);
		assert_true(cfg->public_.tls.enabled);
		assert_int_equal(cfg->public_.tls.ncerts, 1);
		assert_string_equal(cfg->public_.tls.certs[0].cert, abs_path("a.crt"));
		assert_string_equal(cfg->public_.tls.certs[0].key, abs_path("a.key"));
		config_free(cfg);
	}
	{
		/* The variable replaces the whole object from the file. */
		char *env[] = { "BOOTSTRAPD_ADMIN_TLS={\"certs\":[{\"cert\":\"b.crt\",\"key\":\"b.key\"}]}",
			NULL };
		cfg = expect_ok("{ 'admin': { 'tls': { 'cert': 'a.crt', 'key': 'a.key',"
			" 'min_version': '1.3' } } }", env);
		assert_int_equal(cfg->admin.tls.ncerts, 1);
		assert_string_equal(cfg->admin.tls.certs[0].cert, abs_path("b.crt"));
		assert_int_equal(cfg->admin.tls.min_version, TLS1_2_VERSION);
		config_free(cfg);
	}
	{
		char *env[] = { "BOOTSTRAPD_PUBLIC_TLS=null", NULL };
		cfg = expect_ok("{ 'public': { 'tls': { 'cert': 'a.crt', 'key': 'a.key' } } }", env);
		assert_false(cfg->public_.tls.enabled);
		assert_int_equal(cfg->public_.tls.ncerts, 0);
		config_free(cfg);
	}
	{
		char *bad[] = { "BOOTSTRAPD_PUBLIC_TLS={\"cert\":\"a.crt\"", NULL };
		expect_error("{}", bad, "BOOTSTRAPD_PUBLIC_TLS: line 1");
	}
	{
		char *bad[] = { "BOOTSTRAPD_PUBLIC_TLS={\"cert\":\"a.crt\",\"key\":\"a.key\",\"x\":1}", NULL };
		expect_error("{}", bad, "BOOTSTRAPD_PUBLIC_TLS: unknown key \"public.tls.x\"");
	}
	{
		char *bad[] = { "BOOTSTRAPD_PUBLIC_TLS={\"cert\":\"nope.crt\",\"key\":\"a.key\"}", NULL };
		expect_error("{}", bad, "BOOTSTRAPD_PUBLIC_TLS: \"public.tls\": cannot read");
	}
}

static void test_env_unknown(void **state)
{
	char *ok[] = { "BOOTSTRAPD=/usr/sbin/bootstrapd", "BOOTSTRAPD_TEST_PORT=1",
		"BOOTSTRAPD_SOURCE_ROOT=/src", "BOOTSTRAPDX=1", "PATH=/bin", "REDIS_URL=x", NULL };
	struct config *cfg;

	(void)state;
	cfg = expect_ok("{}", ok);
	config_free(cfg);
	{
		char *bad[] = { "BOOTSTRAPD_REDIS_URLL=redis://x", NULL };
		expect_error("{}", bad, "BOOTSTRAPD_REDIS_URLL: unknown environment variable");
	}
	{
		char *bad[] = { "BOOTSTRAPD_PUBLIC_TLS_CERT=a.crt", NULL };
		expect_error("{}", bad, "BOOTSTRAPD_PUBLIC_TLS_CERT: unknown environment variable");
	}
	{
		char *bad[] = { "BOOTSTRAPD_REDIS=x", NULL };
		expect_error("{}", bad, "BOOTSTRAPD_REDIS: unknown environment variable");
	}
	{
		char *bad[] = { "BOOTSTRAPD_redis_url=redis://x", NULL };
		expect_error("{}", bad, "BOOTSTRAPD_redis_url: unknown environment variable");
	}
}

static void test_env_environ(void **state)
{
	struct config *cfg = NULL;
	char *cause = NULL;

	(void)state;
	write_file("config.json", "{ 'threads': 2 }");
	assert_int_equal(setenv("BOOTSTRAPD_THREADS", "3", 1), 0);
	assert_int_equal(config_load(config_path, NULL, &cfg, &cause), 0);
	assert_int_equal(cfg->threads, 3);
	config_free(cfg);
	assert_int_equal(setenv("BOOTSTRAPD_THREADZ", "3", 1), 0);
	assert_int_equal(config_load(config_path, NULL, &cfg, &cause), -1);
	assert_non_null(strstr(cause, "BOOTSTRAPD_THREADZ"));
	free(cause);
	assert_int_equal(unsetenv("BOOTSTRAPD_THREADS"), 0);
	assert_int_equal(unsetenv("BOOTSTRAPD_THREADZ"), 0);
}

static char *dump_keys(void)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	assert_non_null(f);
	config_dump_keys(f);
	assert_int_equal(fclose(f), 0);
	return buf;
}

static void test_dump_keys(void **state)
{
	char *buf = dump_keys(), *save = NULL, *line;
	size_t n = 0;

	(void)state;
	for (line = strtok_r(buf, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
		size_t tabs = 0;

		for (char *p = line; *p != '\0'; p++)
			tabs += *p == '\t';
		assert_int_equal(tabs, 3);
		n++;
	}
	free(buf);
	assert_int_equal(n, 42);
	buf = dump_keys();
	assert_non_null(strstr(buf, "redis.url\tstring\t\"redis://127.0.0.1:6379/0\"\t"));
	assert_non_null(strstr(buf, "threads\tint\t0\t"));
	assert_non_null(strstr(buf, "public.tls\ttls-object\t(none)\t"));
	assert_non_null(strstr(buf, "geoip.database\tpath-or-paths\t(none)\t"));
	assert_non_null(strstr(buf, "limits.max_body_bytes\tint\t1048576\t"));
	free(buf);
}

static void test_docs_mention_every_key(void **state)
{
	const char *root = getenv("BOOTSTRAPD_SOURCE_ROOT");
	char path[PATH_MAX], *docs = NULL, *keys, *save = NULL, *line;
	size_t cap = 0;
	FILE *f;

	(void)state;
	if (root == NULL)
		skip();
	snprintf(path, sizeof(path), "%s/docs/configuration.md", root);
	f = fopen(path, "r");
	if (f == NULL)
		fail_msg("%s: %s", path, strerror(errno));
	assert_true(getdelim(&docs, &cap, '\0', f) > 0);
	fclose(f);
	keys = dump_keys();
	for (line = strtok_r(keys, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
		char want[128];

		*strchr(line, '\t') = '\0';
		snprintf(want, sizeof(want), "`%s`", line);
		if (strstr(docs, want) == NULL)
			fail_msg("docs/configuration.md does not mention %s", want);
	}
	free(keys);
	free(docs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_free_null),
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_full),
		cmocka_unit_test(test_missing_file),
		cmocka_unit_test(test_not_object),
		cmocka_unit_test(test_syntax_error_line),
		cmocka_unit_test(test_unknown_keys),
		cmocka_unit_test(test_duplicate_key),
		cmocka_unit_test(test_bad_types),
		cmocka_unit_test(test_int_bounds),
		cmocka_unit_test(test_admin_tokens),
		cmocka_unit_test(test_trusted_proxies),
		cmocka_unit_test(test_relative_paths),
		cmocka_unit_test(test_missing_regions),
		cmocka_unit_test(test_geoip),
		cmocka_unit_test(test_tls_one_pair),
		cmocka_unit_test(test_tls_certs_list),
		cmocka_unit_test(test_listen),
		cmocka_unit_test(test_redis_url),
		cmocka_unit_test(test_redis_sentinel),
		cmocka_unit_test(test_redis_cluster),
		cmocka_unit_test(test_env_string),
		cmocka_unit_test(test_env_int_bool),
		cmocka_unit_test(test_env_list),
		cmocka_unit_test(test_env_paths),
		cmocka_unit_test(test_env_object),
		cmocka_unit_test(test_env_unknown),
		cmocka_unit_test(test_env_environ),
		cmocka_unit_test(test_dump_keys),
		cmocka_unit_test(test_docs_mention_every_key),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

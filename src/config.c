#include "config.h"
#include "jsonstrict.h"
#include "log.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/ssl.h>
#include <yajl/yajl_parse.h>
#include <yajl/yajl_tree.h>

#define CONFIG_MAX_FILE_BYTES (16u * 1024 * 1024)
#define CONFIG_ENV_PREFIX "BOOTSTRAPD_"
#define CONFIG_JSON_DEPTH_MAX 16

enum config_type {
	CONFIG_STRING,
	CONFIG_INT,
	CONFIG_BOOL,
	CONFIG_PATH,
	CONFIG_PATHS,   /* one path or a list of paths, at least one */
	CONFIG_STRINGS, /* list of strings, may be empty */
	CONFIG_TLS,     /* tls object, or null for none */
};

static const char *const config_type_names[] = {
	[CONFIG_STRING] = "string",
	[CONFIG_INT] = "int",
	[CONFIG_BOOL] = "bool",
	[CONFIG_PATH] = "path",
	[CONFIG_PATHS] = "path-or-paths",
	[CONFIG_STRINGS] = "string-list",
	[CONFIG_TLS] = "tls-object",
};

#define CONFIG_EMPTY_OK 0x1u /* a string key that may be "" */

struct config_key;

/* Validates (and may rewrite) one string value; on error returns -1 and sets
 * *why to what was expected. */
typedef int (*config_check_fn)(struct config *cfg, const struct config_key *k, char **value,
	char **why);

struct config_key {
	const char *name;      /* dotted path */
	enum config_type type;
	const char *def;       /* default as JSON text; NULL = not set */
	long long min, max;    /* CONFIG_INT bounds */
	size_t off;            /* field in struct config */
	size_t count_off;      /* element count field (lists) */
	size_t size;           /* field size (CONFIG_INT: int or size_t) */
	config_check_fn check; /* strings and list elements */
	unsigned flags;
	const char *desc;
};

static int config_check_listen(struct config *cfg, const struct config_key *k, char **value,
	char **why);
static int config_check_token(struct config *cfg, const struct config_key *k, char **value,
	char **why);
static int config_check_cidr(struct config *cfg, const struct config_key *k, char **value,
	char **why);
static int config_check_redis_url(struct config *cfg, const struct config_key *k, char **value,
	char **why);
static int config_check_log_level(struct config *cfg, const struct config_key *k, char **value,
	char **why);
static int config_check_log_format(struct config *cfg, const struct config_key *k, char **value,
	char **why);
static int config_check_node(struct config *cfg, const struct config_key *k, char **value,
	char **why);
static int config_check_env_name(struct config *cfg, const struct config_key *k, char **value,
	char **why);

#define CF(field) offsetof(struct config, field)
#define CSZ(field) sizeof(((struct config *)0)->field)
#define KEY_STR(n, field, d, chk, fl, desc_) \
	{ n, CONFIG_STRING, d, 0, 0, CF(field), 0, 0, chk, fl, desc_ }
#define KEY_INT(n, field, d, lo, hi, desc_) \
	{ n, CONFIG_INT, d, lo, hi, CF(field), 0, CSZ(field), NULL, 0, desc_ }
#define KEY_BOOL(n, field, d, desc_) \
	{ n, CONFIG_BOOL, d, 0, 0, CF(field), 0, 0, NULL, 0, desc_ }
#define KEY_PATH(n, field, d, desc_) \
	{ n, CONFIG_PATH, d, 0, 0, CF(field), 0, 0, NULL, 0, desc_ }
#define KEY_TLS(n, field, desc_) \
	{ n, CONFIG_TLS, NULL, 0, 0, CF(field), 0, 0, NULL, 0, desc_ }

static const struct config_key config_keys[] = {
	KEY_STR("public.listen", public_.listen, "\"0.0.0.0:8443\"", config_check_listen, 0,
		"Address of the device-facing listener (host:port or [v6]:port)"),
	KEY_TLS("public.tls", public_.tls,
		"TLS for the public listener; absent or null = plain HTTP"),
	KEY_BOOL("public.proxy_protocol", public_.proxy_protocol, "false",
		"Expect a PROXY protocol v1/v2 header on public connections"),
	KEY_STR("admin.listen", admin.listen, "\"127.0.0.1:8081\"", config_check_listen, 0,
		"Address of the operator API listener (host:port or [v6]:port)"),
	{ "admin.tokens", CONFIG_STRINGS, "[]", 0, 0, CF(admin_tokens), CF(nadmin_tokens), 0,
		config_check_token, 0, "Accepted admin bearer tokens as \"sha256:<64 hex>\" hashes" },
	KEY_TLS("admin.tls", admin.tls, "TLS for the admin listener; absent or null = plain HTTP"),
	KEY_BOOL("admin.proxy_protocol", admin.proxy_protocol, "false",
		"Expect a PROXY protocol v1/v2 header on admin connections"),
	KEY_STR("worker.listen", worker.listen, "\"\"", config_check_listen, CONFIG_EMPTY_OK,
		"Health/metrics listener of the worker role; empty = off"),
	KEY_TLS("worker.tls", worker.tls, "TLS for the worker listener; absent or null = plain HTTP"),
	KEY_INT("worker.chunk_size", worker_chunk_size, "100", 1, 1000,
		"Batch items a worker applies in one atomic step"),
	KEY_INT("worker.pause_ms", worker_pause_ms, "0", 0, 60000,
		"Pause between a worker's steps, milliseconds (spares Redis during large batches)"),
	KEY_INT("worker.batch_retention_s", worker_batch_retention_s, "2592000", 0, 315360000,
		"Rows and results of a finished batch are kept this long after its last change; 0 = forever"),
	KEY_INT("worker.claim_idle_ms", worker_claim_idle_ms, "30000", 100, 3600000,
		"A step another worker took and left unacknowledged this long is taken over"),
	KEY_INT("notify.rate_per_broker", notify_rate_per_broker, "100", 1, 100000,
		"Bootstrap notify messages a worker publishes per second through one broker"),
	KEY_INT("notify.inflight_per_broker", notify_inflight_per_broker, "100", 1, 10000,
		"Notify messages published and not yet acknowledged by one broker, at most"),
	KEY_INT("threads", threads, "0", 0, 256, "Event loop threads; 0 = one per online CPU"),
	KEY_STR("redis.url", redis_url, "\"redis://127.0.0.1:6379/0\"", config_check_redis_url, 0,
		"Redis server: redis://[[user]:password@]host[:port][/db] or unix:///path[?db=N]"),
	KEY_INT("redis.timeout_ms", redis_timeout_ms, "500", 10, 60000,
		"Connect and command timeout for Redis, milliseconds"),
	{ "redis.sentinels", CONFIG_STRINGS, "[]", 0, 0, CF(redis_sentinels), CF(nredis_sentinels), 0,
		config_check_node, 0, "Redis Sentinels (host:port each) that name the master; instead of redis.url" },
	{ "redis.cluster", CONFIG_STRINGS, "[]", 0, 0, CF(redis_cluster), CF(nredis_cluster), 0,
		config_check_node, 0, "Seed nodes (host:port each) of a Redis Cluster; instead of redis.url" },
	KEY_STR("redis.master_name", redis_master_name, "\"\"", NULL, CONFIG_EMPTY_OK,
		"The master's name as the Sentinels know it (with redis.sentinels)"),
	KEY_INT("redis.wait_replicas", redis_wait_replicas, "0", 0, 16,
		"Replicas that must confirm an operator's write or a batch step before it counts; 0 = none"),
	KEY_STR("redis.password_env", redis_password_env, "\"\"", config_check_env_name, CONFIG_EMPTY_OK,
		"Environment variable holding the Redis password; empty = none (or the one in redis.url)"),
	KEY_PATH("regions", regions, "\"regions.json\"", "Region catalog file (must be readable)"),
	KEY_PATH("secret_key_file", secret_key_file, "\"secret.key\"",
		"Key file for device secrets at rest (32 bytes as 64 hex chars)"),
	{ "geoip.database", CONFIG_PATHS, NULL, 0, 0, CF(geoip_databases), CF(ngeoip_databases), 0,
		NULL, 0, "MaxMind DB file or list of files, looked up in order; enables GeoIP" },
	KEY_PATH("geoip.country_centroids", country_centroids, NULL,
		"CSV of country centroids used when a lookup has no coordinates"),
	{ "trusted_proxies", CONFIG_STRINGS, "[\"127.0.0.0/8\",\"::1/128\"]", 0, 0,
		CF(trusted_proxies), CF(ntrusted_proxies), 0, config_check_cidr, 0,
		"CIDRs whose X-Forwarded-For / Forwarded headers are believed" },
	KEY_INT("limits.max_body_bytes", max_body_bytes, "1048576", 1024, 67108864,
		"Largest accepted request body, bytes"),
	KEY_INT("limits.bootstrap_rps_per_ip", bootstrap_rps_per_ip, "20", 0, 1000000,
		"Bootstrap requests per second per client address; 0 = no limit"),
	KEY_INT("limits.batch_max_devices", batch_max_devices, "1000", 1, 100000,
		"Most devices in one admin batch"),
	KEY_INT("limits.auth_code_ttl_s", auth_code_ttl_s, "300", 1, 86400,
		"Lifetime of cross-account auth codes, seconds"),
	KEY_INT("limits.request_timeout_s", request_timeout_s, "10", 1, 3600,
		"Most a request may take to arrive whole, from its first byte to the end of its body, seconds"),
	KEY_INT("limits.keepalive_timeout_s", keepalive_timeout_s, "15", 1, 3600,
		"A connection idle this long between requests is closed, seconds"),
	KEY_INT("limits.max_header_bytes", max_header_bytes, "8192", 1024, 1048576,
		"Largest request line plus headers, bytes (431 beyond)"),
	KEY_INT("limits.max_connections", max_connections, "0", 0, 10000000,
		"Most open client connections; 0 = 90 % of the file-descriptor limit"),
	KEY_INT("cache.entries", cache_entries, "1000000", 0, 100000000,
		"Product and device records cached in process (exact, Redis client tracking); 0 = off"),
	KEY_INT("drain_timeout_s", drain_timeout_s, "10", 0, 600,
		"Longest wait for in-flight work after SIGTERM/SIGINT, seconds"),
	KEY_INT("drain_grace_s", drain_grace_s, "0", 0, 600,
		"After SIGTERM/SIGINT, how long the listeners still accept (readyz 503), seconds"),
	KEY_STR("log.level", log_level, "\"info\"", config_check_log_level, 0,
		"Lowest level logged: debug, info, warn or error"),
	KEY_STR("log.format", log_format, "\"text\"", config_check_log_format, 0,
		"text (one line \"time level module: message\") or json (one object a line)"),
	KEY_BOOL("log.access", log_access, "false",
		"One line per answered request: method, route, status, duration, client, request id"),
};

#define CONFIG_NKEYS (sizeof(config_keys) / sizeof(config_keys[0]))

/* Per-load state: where each key's current value came from, for messages. */
struct config_loader {
	struct config *cfg;
	char *const *envp;
	const char *file; /* the path as the caller gave it */
	char *origin[CONFIG_NKEYS];
	bool set[CONFIG_NKEYS]; /* by the file or the environment */
	bool geoip_section;
};

static char *config_vfmt(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));
static char *config_vfmt(const char *fmt, va_list ap)
{
	char *s;

	if (vasprintf(&s, fmt, ap) < 0)
		return NULL;
	return s;
}

static char *config_fmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *config_fmt(const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	s = config_vfmt(fmt, ap);
	va_end(ap);
	return s;
}

static void config_fail(char **cause, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void config_fail(char **cause, const char *fmt, ...)
{
	va_list ap;

	if (cause == NULL)
		return;
	free(*cause);
	va_start(ap, fmt);
	*cause = config_vfmt(fmt, ap);
	va_end(ap);
}

/* Describes a JSON value for "found ..." in messages. */
static void config_describe(yajl_val v, char *buf, size_t size)
{
	if (v == NULL) {
		snprintf(buf, size, "nothing");
	} else if (YAJL_IS_STRING(v)) {
		const char *s = YAJL_GET_STRING(v);
		if (strlen(s) > 64)
			snprintf(buf, size, "a string \"%.61s...\"", s);
		else
			snprintf(buf, size, "a string \"%s\"", s);
	} else if (YAJL_IS_NUMBER(v)) {
		snprintf(buf, size, "%.64s", YAJL_GET_NUMBER(v));
	} else if (YAJL_IS_OBJECT(v)) {
		snprintf(buf, size, "an object");
	} else if (YAJL_IS_ARRAY(v)) {
		snprintf(buf, size, "an array");
	} else if (YAJL_IS_TRUE(v)) {
		snprintf(buf, size, "true");
	} else if (YAJL_IS_FALSE(v)) {
		snprintf(buf, size, "false");
	} else {
		snprintf(buf, size, "null");
	}
}

/* "<origin>: "<name>": expected <what>, found <v>" */
static void config_fail_type(char **cause, const char *origin, const char *name,
	const char *what, yajl_val v)
{
	char found[128];

	config_describe(v, found, sizeof(found));
	config_fail(cause, "%s: \"%s\": expected %s, found %s", origin, name, what, found);
}

/* Strict parse (no comments, one value) that reports the line and column of a
 * syntax error, then builds the tree. */
static int config_parse_json(const char *text, size_t len, const char *origin, yajl_val *out,
	char **cause)
{
	struct jsonstrict_error e;
	char errbuf[256];

	*out = NULL;
	if (jsonstrict_check(text, len, CONFIG_JSON_DEPTH_MAX, &e) < 0) {
		config_fail(cause, "%s: line %zu, column %zu: %s", origin, e.line, e.col, e.message);
		return -1;
	}
	/* The strict pass succeeded, so the text has no NUL byte and is terminated. */
	*out = yajl_tree_parse(text, errbuf, sizeof(errbuf));
	if (*out == NULL) {
		config_fail(cause, "%s: %s", origin, errbuf);
		return -1;
	}
	return 0;
}

static char *config_abs_path(const char *dir, const char *path)
{
	if (path[0] == '/')
		return strdup(path);
	if (strcmp(dir, "/") == 0)
		return config_fmt("/%s", path);
	return config_fmt("%s/%s", dir, path);
}

static void config_free_list(char **list)
{
	if (list == NULL)
		return;
	for (char **p = list; *p != NULL; p++)
		free(*p);
	free(list);
}

static void config_tls_clear(struct config_tls *t)
{
	for (size_t i = 0; i < t->ncerts; i++) {
		free(t->certs[i].cert);
		free(t->certs[i].key);
	}
	free(t->ciphers);
	free(t->ciphersuites);
	memset(t, 0, sizeof(*t));
	t->min_version = TLS1_2_VERSION;
}

static void config_redis_clear(struct config *cfg)
{
	free(cfg->redis_host);
	free(cfg->redis_unix);
	free(cfg->redis_user);
	free(cfg->redis_password);
	cfg->redis_host = cfg->redis_unix = cfg->redis_user = cfg->redis_password = NULL;
	cfg->redis_port = 0;
	cfg->redis_db = 0;
}

static bool config_parse_uint(const char *s, size_t n, long long max, long long *out)
{
	long long v = 0;

	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (!isdigit((unsigned char)s[i]))
			return false;
		v = v * 10 + (s[i] - '0');
		if (v > max)
			return false;
	}
	*out = v;
	return true;
}

static int config_check_listen(struct config *cfg, const struct config_key *k, char **value,
	char **why)
{
	const char *s = *value, *colon;
	long long port;

	(void)cfg;
	if (s[0] == '\0') {
		if (k->flags & CONFIG_EMPTY_OK)
			return 0;
		*why = config_fmt("expected host:port or [v6]:port, found an empty string");
		return -1;
	}
	if (s[0] == '[') {
		const char *end = strchr(s, ']');
		char addr[INET6_ADDRSTRLEN];
		struct in6_addr a6;

		if (end == NULL || end[1] != ':' || (size_t)(end - s - 1) >= sizeof(addr))
			goto bad;
		memcpy(addr, s + 1, (size_t)(end - s - 1));
		addr[end - s - 1] = '\0';
		if (inet_pton(AF_INET6, addr, &a6) != 1) {
			*why = config_fmt("expected [v6]:port, found \"%s\" (bad IPv6 address)", s);
			return -1;
		}
		colon = end + 1;
	} else {
		colon = strrchr(s, ':');
		if (colon == NULL || colon == s || memchr(s, ':', (size_t)(colon - s)) != NULL)
			goto bad;
		for (const char *p = s; p < colon; p++) {
			if (!isalnum((unsigned char)*p) && *p != '.' && *p != '-' && *p != '_' &&
			    *p != '*')
				goto bad;
		}
	}
	if (!config_parse_uint(colon + 1, strlen(colon + 1), 65535, &port))
		goto bad;
	return 0;
bad:
	*why = config_fmt("expected host:port or [v6]:port with port 0..65535, found \"%s\"", s);
	return -1;
}

/* A Redis node to connect to: host:port or [v6]:port, port 1..65535. */
static int config_check_node(struct config *cfg, const struct config_key *k, char **value,
	char **why)
{
	const char *colon = strrchr(*value, ':');

	if (config_check_listen(cfg, k, value, why) < 0)
		return -1;
	if (strchr(*value, '*') != NULL || strcmp(colon, ":0") == 0) {
		*why = config_fmt("expected host:port or [v6]:port of a Redis node, found \"%s\"", *value);
		return -1;
	}
	return 0;
}

/* The name of an environment variable: [A-Za-z_][A-Za-z0-9_]*, and not one
 * of ours (every BOOTSTRAPD_ variable is a configuration override). */
static int config_check_env_name(struct config *cfg, const struct config_key *k, char **value,
	char **why)
{
	const char *s = *value;

	(void)cfg;
	(void)k;
	if (s[0] == '\0')
		return 0;
	for (const char *p = s; *p; p++) {
		if (!(isalpha((unsigned char)*p) || *p == '_' || (p > s && isdigit((unsigned char)*p)))) {
			*why = config_fmt("expected the name of an environment variable, found \"%.80s\"", s);
			return -1;
		}
	}
	if (strncmp(s, "BOOTSTRAPD_", 11) == 0) {
		*why = config_fmt("\"%.80s\": BOOTSTRAPD_ variables are configuration overrides; "
			"choose another name", s);
		return -1;
	}
	return 0;
}

static int config_check_token(struct config *cfg, const struct config_key *k, char **value,
	char **why)
{
	char *s = *value;

	(void)cfg;
	(void)k;
	if (strncmp(s, "sha256:", 7) != 0 || strlen(s) != 7 + 64)
		goto bad;
	for (char *p = s + 7; *p != '\0'; p++) {
		if (!isxdigit((unsigned char)*p))
			goto bad;
		*p = (char)tolower((unsigned char)*p);
	}
	return 0;
bad:
	*why = config_fmt("expected \"sha256:\" followed by 64 hex digits (the SHA-256 of the token), "
		"found \"%.80s\"", s);
	return -1;
}

/* Accepts "addr/len" or a bare address (a /32 or /128) and rewrites the value to
 * the canonical network form, host bits cleared. */
static int config_check_cidr(struct config *cfg, const struct config_key *k, char **value,
	char **why)
{
	const char *s = *value, *slash = strchr(s, '/');
	char addr[INET6_ADDRSTRLEN], out[INET6_ADDRSTRLEN];
	unsigned char bytes[16];
	size_t alen = slash != NULL ? (size_t)(slash - s) : strlen(s);
	int af, bits;
	long long len;
	char *canon;

	(void)cfg;
	(void)k;
	if (alen == 0 || alen >= sizeof(addr))
		goto bad;
	memcpy(addr, s, alen);
	addr[alen] = '\0';
	if (inet_pton(AF_INET, addr, bytes) == 1) {
		af = AF_INET;
		bits = 32;
	} else if (inet_pton(AF_INET6, addr, bytes) == 1) {
		af = AF_INET6;
		bits = 128;
	} else {
		goto bad;
	}
	if (slash == NULL)
		len = bits;
	else if (!config_parse_uint(slash + 1, strlen(slash + 1), bits, &len))
		goto bad;
	for (int i = 0; i < bits / 8; i++) {
		int keep = (int)len - i * 8;
		if (keep <= 0)
			bytes[i] = 0;
		else if (keep < 8)
			bytes[i] &= (unsigned char)(0xff << (8 - keep));
	}
	if (inet_ntop(af, bytes, out, sizeof(out)) == NULL)
		goto bad;
	canon = config_fmt("%s/%lld", out, len);
	if (canon == NULL) {
		*why = config_fmt("out of memory");
		return -1;
	}
	free(*value);
	*value = canon;
	return 0;
bad:
	*why = config_fmt("expected an IPv4 or IPv6 CIDR like \"10.0.0.0/8\" or \"fd00::/8\", "
		"found \"%.80s\"", s);
	return -1;
}

static int config_check_log_level(struct config *cfg, const struct config_key *k, char **value,
	char **why)
{
	enum log_level level;

	(void)cfg;
	(void)k;
	if (log_parse_level(*value, &level) == 0)
		return 0;
	*why = config_fmt("expected one of debug, info, warn, error, found \"%.40s\"", *value);
	return -1;
}

static int config_check_log_format(struct config *cfg, const struct config_key *k, char **value,
	char **why)
{
	enum log_format format;

	(void)cfg;
	(void)k;
	if (log_parse_format(*value, &format) == 0)
		return 0;
	*why = config_fmt("expected text or json, found \"%.40s\"", *value);
	return -1;
}

static int config_hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Copies s[0..n) with %XX escapes decoded; NULL on a bad escape or no memory. */
static char *config_pct_decode(const char *s, size_t n)
{
	char *out = malloc(n + 1), *o = out;

	if (out == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '%') {
			int hi = i + 2 < n ? config_hexval((unsigned char)s[i + 1]) : -1;
			int lo = i + 2 < n ? config_hexval((unsigned char)s[i + 2]) : -1;

			if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
				free(out);
				return NULL;
			}
			*o++ = (char)(hi * 16 + lo);
			i += 2;
		} else {
			*o++ = s[i];
		}
	}
	*o = '\0';
	return out;
}

struct config_redis {
	char *host, *unix_path, *user, *password;
	int port, db;
};

static int config_parse_redis_unix(const char *rest, struct config_redis *r, char **why)
{
	const char *q = strchr(rest, '?');
	size_t plen = q != NULL ? (size_t)(q - rest) : strlen(rest);

	if (plen < 2 || rest[0] != '/') {
		*why = config_fmt("unix:// needs an absolute socket path, as in unix:///run/redis.sock");
		return -1;
	}
	r->unix_path = strndup(rest, plen);
	if (r->unix_path == NULL)
		goto oom;
	while (q != NULL) {
		const char *param = q + 1, *amp = strchr(param, '&');
		size_t n = amp != NULL ? (size_t)(amp - param) : strlen(param);
		long long db;

		if (n > 3 && strncmp(param, "db=", 3) == 0) {
			if (!config_parse_uint(param + 3, n - 3, INT_MAX, &db)) {
				*why = config_fmt("bad database number \"%.*s\"", (int)(n - 3), param + 3);
				return -1;
			}
			r->db = (int)db;
		} else if (n > 9 && strncmp(param, "password=", 9) == 0) {
			free(r->password);
			r->password = config_pct_decode(param + 9, n - 9);
			if (r->password == NULL) {
				*why = config_fmt("bad %%-escape in the password");
				return -1;
			}
		} else {
			*why = config_fmt("unknown parameter \"%.*s\" (db=N and password=P are known)",
				(int)n, param);
			return -1;
		}
		q = amp;
	}
	return 0;
oom:
	*why = config_fmt("out of memory");
	return -1;
}

static int config_parse_redis_tcp(const char *rest, struct config_redis *r, char **why)
{
	const char *end = rest + strcspn(rest, "/?#"), *at = NULL, *host, *port = NULL;
	size_t hlen;
	long long v;

	if (*end == '?' || *end == '#') {
		*why = config_fmt("redis:// URLs take no query or fragment");
		return -1;
	}
	for (const char *p = rest; p < end; p++)
		if (*p == '@')
			at = p;
	host = rest;
	if (at != NULL) {
		const char *colon = memchr(rest, ':', (size_t)(at - rest));
		size_t ulen = colon != NULL ? (size_t)(colon - rest) : (size_t)(at - rest);

		if (ulen > 0) {
			r->user = config_pct_decode(rest, ulen);
			if (r->user == NULL)
				goto bad_escape;
		}
		if (colon != NULL) {
			r->password = config_pct_decode(colon + 1, (size_t)(at - colon - 1));
			if (r->password == NULL)
				goto bad_escape;
		} else if (r->user != NULL) {
			/* "redis://secret@host": a lone userinfo is the password (redis-cli). */
			r->password = r->user;
			r->user = NULL;
		}
		host = at + 1;
	}
	if (*host == '[') {
		const char *rb = memchr(host, ']', (size_t)(end - host));
		char addr[INET6_ADDRSTRLEN];
		struct in6_addr a6;

		hlen = rb != NULL ? (size_t)(rb - host - 1) : 0;
		if (rb == NULL || hlen == 0 || hlen >= sizeof(addr))
			goto bad_host;
		memcpy(addr, host + 1, hlen);
		addr[hlen] = '\0';
		if (inet_pton(AF_INET6, addr, &a6) != 1)
			goto bad_host;
		r->host = strdup(addr);
		if (rb + 1 < end) {
			if (rb[1] != ':')
				goto bad_host;
			port = rb + 2;
		}
	} else {
		const char *colon = memchr(host, ':', (size_t)(end - host));

		hlen = colon != NULL ? (size_t)(colon - host) : (size_t)(end - host);
		if (hlen == 0)
			goto bad_host;
		for (size_t i = 0; i < hlen; i++)
			if (!isalnum((unsigned char)host[i]) && host[i] != '.' && host[i] != '-' &&
			    host[i] != '_')
				goto bad_host;
		r->host = strndup(host, hlen);
		if (colon != NULL)
			port = colon + 1;
	}
	if (r->host == NULL) {
		*why = config_fmt("out of memory");
		return -1;
	}
	r->port = 6379;
	if (port != NULL) {
		if (!config_parse_uint(port, (size_t)(end - port), 65535, &v) || v == 0) {
			*why = config_fmt("bad port \"%.*s\" (expected 1..65535)", (int)(end - port), port);
			return -1;
		}
		r->port = (int)v;
	}
	if (*end == '/' && end[1] != '\0') {
		if (!config_parse_uint(end + 1, strlen(end + 1), INT_MAX, &v)) {
			*why = config_fmt("bad database number \"%.20s\" (expected /0, /1, ...)", end + 1);
			return -1;
		}
		r->db = (int)v;
	}
	return 0;
bad_escape:
	*why = config_fmt("bad %%-escape in the user or password");
	return -1;
bad_host:
	*why = config_fmt("bad host \"%.*s\"", (int)(end - host), host);
	return -1;
}

static int config_check_redis_url(struct config *cfg, const struct config_key *k, char **value,
	char **why)
{
	struct config_redis r = { 0 };
	char *reason = NULL;
	int rc = -1;

	(void)k;
	if (strncmp(*value, "redis://", 8) == 0) {
		if (config_parse_redis_tcp(*value + 8, &r, &reason) < 0)
			goto out;
	} else if (strncmp(*value, "unix://", 7) == 0) {
		if (config_parse_redis_unix(*value + 7, &r, &reason) < 0)
			goto out;
	} else {
		reason = config_fmt("the scheme must be redis:// or unix://");
		goto out;
	}
	config_redis_clear(cfg);
	cfg->redis_host = r.host;
	cfg->redis_unix = r.unix_path;
	cfg->redis_user = r.user;
	cfg->redis_password = r.password;
	cfg->redis_port = r.port;
	cfg->redis_db = r.db;
	memset(&r, 0, sizeof(r));
	rc = 0;
out:
	if (rc < 0) {
		/* The URL may hold a password: say why, not what. */
		*why = config_fmt("expected redis://[[user]:password@]host[:port][/db] or "
			"unix:///path[?db=N]: %s", reason != NULL ? reason : "out of memory");
	}
	free(reason);
	free(r.host);
	free(r.unix_path);
	free(r.user);
	free(r.password);
	return rc;
}

static const struct config_key *config_find_key(const char *name)
{
	for (size_t i = 0; i < CONFIG_NKEYS; i++)
		if (strcmp(config_keys[i].name, name) == 0)
			return &config_keys[i];
	return NULL;
}

/* True if name is a section holding keys ("redis" for "redis.url"). */
static bool config_is_section(const char *name)
{
	size_t n = strlen(name);

	for (size_t i = 0; i < CONFIG_NKEYS; i++)
		if (strncmp(config_keys[i].name, name, n) == 0 && config_keys[i].name[n] == '.')
			return true;
	return false;
}

static bool config_env_matches(const char *key, const char *suffix)
{
	for (; *key != '\0'; key++, suffix++) {
		char c = *key == '.' ? '_' : (char)toupper((unsigned char)*key);
		if (*suffix != c)
			return false;
	}
	return *suffix == '\0';
}

/* Returns the first duplicate key of an object, or NULL. */
static const char *config_duplicate_key(yajl_val obj)
{
	for (size_t i = 1; i < obj->u.object.len; i++)
		for (size_t j = 0; j < i; j++)
			if (strcmp(obj->u.object.keys[i], obj->u.object.keys[j]) == 0)
				return obj->u.object.keys[i];
	return NULL;
}

/* A non-empty string made absolute against the config folder. */
static int config_get_path(struct config_loader *ld, yajl_val v, const char *origin,
	const char *name, char **out, char **cause)
{
	if (!YAJL_IS_STRING(v) || YAJL_GET_STRING(v)[0] == '\0') {
		config_fail_type(cause, origin, name, "a non-empty path string", v);
		return -1;
	}
	*out = config_abs_path(ld->cfg->dir, YAJL_GET_STRING(v));
	if (*out == NULL) {
		config_fail(cause, "%s: out of memory", origin);
		return -1;
	}
	return 0;
}

static int config_get_string(yajl_val v, const char *origin, const char *name, char **out,
	char **cause)
{
	if (!YAJL_IS_STRING(v) || YAJL_GET_STRING(v)[0] == '\0') {
		config_fail_type(cause, origin, name, "a non-empty string", v);
		return -1;
	}
	*out = strdup(v->u.string);
	if (*out == NULL) {
		config_fail(cause, "%s: out of memory", origin);
		return -1;
	}
	return 0;
}

/* {"cert": .., "key": ..} inside "certs". */
static int config_tls_pair(struct config_loader *ld, yajl_val v, const char *origin,
	const char *name, struct config_cert *out, char **cause)
{
	yajl_val cert = NULL, key = NULL;
	char sub[320];
	const char *dup;

	if (!YAJL_IS_OBJECT(v)) {
		config_fail_type(cause, origin, name, "an object with \"cert\" and \"key\"", v);
		return -1;
	}
	if ((dup = config_duplicate_key(v)) != NULL) {
		config_fail(cause, "%s: duplicate key \"%s.%s\"", origin, name, dup);
		return -1;
	}
	for (size_t i = 0; i < v->u.object.len; i++) {
		const char *k = v->u.object.keys[i];

		if (strcmp(k, "cert") == 0) {
			cert = v->u.object.values[i];
		} else if (strcmp(k, "key") == 0) {
			key = v->u.object.values[i];
		} else {
			config_fail(cause, "%s: unknown key \"%s.%s\"", origin, name, k);
			return -1;
		}
	}
	if (cert == NULL || key == NULL) {
		config_fail(cause, "%s: \"%s\": needs both \"cert\" and \"key\"", origin, name);
		return -1;
	}
	snprintf(sub, sizeof(sub), "%s.cert", name);
	if (config_get_path(ld, cert, origin, sub, &out->cert, cause) < 0)
		return -1;
	snprintf(sub, sizeof(sub), "%s.key", name);
	if (config_get_path(ld, key, origin, sub, &out->key, cause) < 0) {
		free(out->cert);
		out->cert = NULL;
		return -1;
	}
	return 0;
}

static int config_set_tls(struct config_loader *ld, const struct config_key *k, yajl_val v,
	const char *origin, char **cause)
{
	struct config_tls t, *dst = (struct config_tls *)((char *)ld->cfg + k->off);
	yajl_val cert = NULL, key = NULL, certs = NULL;
	char sub[256];
	const char *dup;
	int rc = -1;

	memset(&t, 0, sizeof(t));
	t.min_version = TLS1_2_VERSION;
	if (YAJL_IS_NULL(v))
		goto done;
	if (!YAJL_IS_OBJECT(v)) {
		config_fail_type(cause, origin, k->name,
			"an object with \"cert\" and \"key\" or \"certs\"", v);
		goto out;
	}
	if ((dup = config_duplicate_key(v)) != NULL) {
		config_fail(cause, "%s: duplicate key \"%s.%s\"", origin, k->name, dup);
		goto out;
	}
	for (size_t i = 0; i < v->u.object.len; i++) {
		const char *name = v->u.object.keys[i];
		yajl_val val = v->u.object.values[i];

		snprintf(sub, sizeof(sub), "%s.%s", k->name, name);
		if (strcmp(name, "cert") == 0) {
			cert = val;
		} else if (strcmp(name, "key") == 0) {
			key = val;
		} else if (strcmp(name, "certs") == 0) {
			certs = val;
		} else if (strcmp(name, "ciphers") == 0) {
			if (config_get_string(val, origin, sub, &t.ciphers, cause) < 0)
				goto out;
		} else if (strcmp(name, "ciphersuites") == 0) {
			if (config_get_string(val, origin, sub, &t.ciphersuites, cause) < 0)
				goto out;
		} else if (strcmp(name, "min_version") == 0) {
			const char *s = YAJL_GET_STRING(val);
			if (s != NULL && strcmp(s, "1.2") == 0) {
				t.min_version = TLS1_2_VERSION;
			} else if (s != NULL && strcmp(s, "1.3") == 0) {
				t.min_version = TLS1_3_VERSION;
			} else {
				config_fail_type(cause, origin, sub, "\"1.2\" or \"1.3\"", val);
				goto out;
			}
		} else if (strcmp(name, "legacy_device_ciphers") == 0) {
			if (!YAJL_IS_TRUE(val) && !YAJL_IS_FALSE(val)) {
				config_fail_type(cause, origin, sub, "true or false", val);
				goto out;
			}
			t.legacy_device_ciphers = YAJL_IS_TRUE(val);
		} else {
			config_fail(cause, "%s: unknown key \"%s\"", origin, sub);
			goto out;
		}
	}
	if (certs != NULL) {
		if (cert != NULL || key != NULL) {
			config_fail(cause, "%s: \"%s\": give either \"cert\" and \"key\" or \"certs\", "
				"not both", origin, k->name);
			goto out;
		}
		snprintf(sub, sizeof(sub), "%s.certs", k->name);
		if (!YAJL_IS_ARRAY(certs) || certs->u.array.len < 1 ||
		    certs->u.array.len > CONFIG_MAX_CERTS) {
			char what[96];
			snprintf(what, sizeof(what), "a list of 1 to %d {\"cert\", \"key\"} objects",
				CONFIG_MAX_CERTS);
			if (YAJL_IS_ARRAY(certs))
				config_fail(cause, "%s: \"%s\": expected %s, found %zu entries", origin,
					sub, what, certs->u.array.len);
			else
				config_fail_type(cause, origin, sub, what, certs);
			goto out;
		}
		for (size_t i = 0; i < certs->u.array.len; i++) {
			snprintf(sub, sizeof(sub), "%s.certs[%zu]", k->name, i);
			if (config_tls_pair(ld, certs->u.array.values[i], origin, sub,
				    &t.certs[t.ncerts], cause) < 0)
				goto out;
			t.ncerts++;
		}
	} else if (cert != NULL && key != NULL) {
		snprintf(sub, sizeof(sub), "%s.cert", k->name);
		if (config_get_path(ld, cert, origin, sub, &t.certs[0].cert, cause) < 0)
			goto out;
		t.ncerts = 1;
		snprintf(sub, sizeof(sub), "%s.key", k->name);
		if (config_get_path(ld, key, origin, sub, &t.certs[0].key, cause) < 0)
			goto out;
	} else {
		config_fail(cause, "%s: \"%s\": needs \"cert\" and \"key\", or \"certs\"", origin,
			k->name);
		goto out;
	}
	t.enabled = true;
done:
	config_tls_clear(dst);
	*dst = t;
	memset(&t, 0, sizeof(t));
	rc = 0;
out:
	config_tls_clear(&t);
	return rc;
}

/* A list of strings (CONFIG_STRINGS), or one path or a list of paths (CONFIG_PATHS). */
static int config_set_list(struct config_loader *ld, const struct config_key *k, yajl_val v,
	const char *origin, char **cause)
{
	char ***dst = (char ***)((char *)ld->cfg + k->off);
	size_t *count = (size_t *)((char *)ld->cfg + k->count_off);
	yajl_val *items = &v;
	size_t n = 1;
	char **list = NULL, *why = NULL;
	char sub[256];
	int rc = -1;

	if (YAJL_IS_ARRAY(v)) {
		items = v->u.array.values;
		n = v->u.array.len;
	} else if (k->type == CONFIG_STRINGS || !YAJL_IS_STRING(v)) {
		config_fail_type(cause, origin, k->name, k->type == CONFIG_PATHS ?
			"a path or a list of paths" : "a list of strings", v);
		return -1;
	}
	if (k->type == CONFIG_PATHS && n == 0) {
		config_fail(cause, "%s: \"%s\": expected at least one path, found an empty list",
			origin, k->name);
		return -1;
	}
	list = calloc(n + 1, sizeof(*list));
	if (list == NULL) {
		config_fail(cause, "%s: out of memory", origin);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		snprintf(sub, sizeof(sub), "%s[%zu]", k->name, i);
		if (k->type == CONFIG_PATHS) {
			if (config_get_path(ld, items[i], origin, sub, &list[i], cause) < 0)
				goto out;
			continue;
		}
		if (!YAJL_IS_STRING(items[i])) {
			config_fail_type(cause, origin, sub, "a string", items[i]);
			goto out;
		}
		list[i] = strdup(items[i]->u.string);
		if (list[i] == NULL) {
			config_fail(cause, "%s: out of memory", origin);
			goto out;
		}
		if (k->check != NULL && k->check(ld->cfg, k, &list[i], &why) < 0) {
			config_fail(cause, "%s: \"%s\": %s", origin, sub, why != NULL ? why : "invalid");
			goto out;
		}
	}
	config_free_list(*dst);
	*dst = list;
	*count = n;
	list = NULL;
	rc = 0;
out:
	free(why);
	config_free_list(list);
	return rc;
}

/* The one setter: the defaults, the file and the environment all come here. */
static int config_set(struct config_loader *ld, const struct config_key *k, yajl_val v,
	const char *origin, char **cause)
{
	void *field = (char *)ld->cfg + k->off;
	char what[96], *s = NULL, *why = NULL;
	int rc = -1;

	switch (k->type) {
	case CONFIG_INT: {
		long long x;

		if (!YAJL_IS_INTEGER(v) || YAJL_GET_INTEGER(v) < k->min ||
		    YAJL_GET_INTEGER(v) > k->max) {
			snprintf(what, sizeof(what), "an integer in %lld..%lld", k->min, k->max);
			config_fail_type(cause, origin, k->name, what, v);
			goto out;
		}
		x = YAJL_GET_INTEGER(v);
		if (k->size == sizeof(size_t))
			*(size_t *)field = (size_t)x;
		else
			*(int *)field = (int)x;
		break;
	}
	case CONFIG_BOOL:
		if (!YAJL_IS_TRUE(v) && !YAJL_IS_FALSE(v)) {
			config_fail_type(cause, origin, k->name, "true or false", v);
			goto out;
		}
		*(bool *)field = YAJL_IS_TRUE(v);
		break;
	case CONFIG_STRING:
		if (!YAJL_IS_STRING(v)) {
			config_fail_type(cause, origin, k->name, "a string", v);
			goto out;
		}
		s = strdup(v->u.string);
		if (s == NULL) {
			config_fail(cause, "%s: out of memory", origin);
			goto out;
		}
		if (k->check != NULL && k->check(ld->cfg, k, &s, &why) < 0) {
			config_fail(cause, "%s: \"%s\": %s", origin, k->name,
				why != NULL ? why : "invalid value");
			goto out;
		}
		free(*(char **)field);
		*(char **)field = s;
		s = NULL;
		break;
	case CONFIG_PATH:
		if (config_get_path(ld, v, origin, k->name, &s, cause) < 0)
			goto out;
		free(*(char **)field);
		*(char **)field = s;
		s = NULL;
		break;
	case CONFIG_PATHS:
	case CONFIG_STRINGS:
		if (config_set_list(ld, k, v, origin, cause) < 0)
			goto out;
		break;
	case CONFIG_TLS:
		if (config_set_tls(ld, k, v, origin, cause) < 0)
			goto out;
		break;
	}
	rc = 0;
out:
	free(s);
	free(why);
	return rc;
}

static int config_set_from(struct config_loader *ld, const struct config_key *k, yajl_val v,
	const char *origin, char **cause)
{
	size_t i = (size_t)(k - config_keys);
	char *o;

	if (config_set(ld, k, v, origin, cause) < 0)
		return -1;
	o = strdup(origin);
	if (o == NULL) {
		config_fail(cause, "%s: out of memory", origin);
		return -1;
	}
	free(ld->origin[i]);
	ld->origin[i] = o;
	ld->set[i] = true;
	return 0;
}

static int config_apply_defaults(struct config_loader *ld, char **cause)
{
	for (size_t i = 0; i < CONFIG_NKEYS; i++) {
		const struct config_key *k = &config_keys[i];
		yajl_val v = NULL;
		int rc;

		if (k->def == NULL)
			continue;
		if (config_parse_json(k->def, strlen(k->def), "default", &v, cause) < 0)
			return -1;
		rc = config_set(ld, k, v, ld->file, cause);
		yajl_tree_free(v);
		if (rc < 0)
			return -1;
		ld->origin[i] = strdup(ld->file);
		if (ld->origin[i] == NULL) {
			config_fail(cause, "%s: out of memory", ld->file);
			return -1;
		}
	}
	return 0;
}

static int config_walk(struct config_loader *ld, yajl_val obj, const char *prefix, char **cause)
{
	const char *dup = config_duplicate_key(obj);
	char name[256];

	if (dup != NULL) {
		config_fail(cause, "%s: duplicate key \"%s%s%s\"", ld->file, prefix ? prefix : "",
			prefix ? "." : "", dup);
		return -1;
	}
	for (size_t i = 0; i < obj->u.object.len; i++) {
		const char *key = obj->u.object.keys[i];
		yajl_val v = obj->u.object.values[i];
		const struct config_key *k;

		snprintf(name, sizeof(name), "%s%s%s", prefix ? prefix : "", prefix ? "." : "", key);
		/* A dot inside a key must not reach a nested key ({"redis.url": ..}). */
		k = strchr(key, '.') == NULL ? config_find_key(name) : NULL;
		if (k != NULL) {
			if (config_set_from(ld, k, v, ld->file, cause) < 0)
				return -1;
		} else if (strchr(key, '.') == NULL && config_is_section(name)) {
			if (!YAJL_IS_OBJECT(v)) {
				config_fail_type(cause, ld->file, name, "an object", v);
				return -1;
			}
			if (strcmp(name, "geoip") == 0)
				ld->geoip_section = true;
			if (config_walk(ld, v, name, cause) < 0)
				return -1;
		} else if (strcmp(name, "log_level") == 0) {
			config_fail(cause, "%s: unknown key \"log_level\": it is \"log\": {\"level\": ...} now", ld->file);
			return -1;
		} else {
			config_fail(cause, "%s: unknown key \"%s\"", ld->file, name);
			return -1;
		}
	}
	return 0;
}

static int config_apply_env_one(struct config_loader *ld, const struct config_key *k,
	const char *var, const char *value, char **cause)
{
	struct yajl_val_s raw;
	yajl_val v = NULL;
	const char *p = value;
	int rc;

	memset(&raw, 0, sizeof(raw));
	raw.type = yajl_t_string;
	raw.u.string = (char *)value;
	while (isspace((unsigned char)*p))
		p++;
	switch (k->type) {
	case CONFIG_STRING:
	case CONFIG_PATH:
		break;
	case CONFIG_INT:
	case CONFIG_BOOL:
		/* Not JSON: the setter reports the raw text as a string. */
		if (config_parse_json(value, strlen(value), var, &v, NULL) < 0)
			v = NULL;
		break;
	case CONFIG_PATHS:
		if (*p != '[')
			break;
		/* fall through */
	case CONFIG_STRINGS:
	case CONFIG_TLS:
		if (config_parse_json(value, strlen(value), var, &v, cause) < 0)
			return -1;
		break;
	}
	rc = config_set_from(ld, k, v != NULL ? v : &raw, var, cause);
	yajl_tree_free(v);
	return rc;
}

static int config_apply_env(struct config_loader *ld, char *const *envp, char **cause)
{
	const size_t plen = strlen(CONFIG_ENV_PREFIX);

	for (char *const *e = envp; *e != NULL; e++) {
		const char *eq = strchr(*e, '=');
		const struct config_key *k = NULL;
		char *var;
		int rc;

		if (eq == NULL || strncmp(*e, CONFIG_ENV_PREFIX, plen) != 0)
			continue;
		var = strndup(*e, (size_t)(eq - *e));
		if (var == NULL) {
			config_fail(cause, "out of memory");
			return -1;
		}
		if (strncmp(var + plen, "TEST_", 5) == 0 || strncmp(var + plen, "SOURCE_", 7) == 0) {
			free(var);
			continue;
		}
		for (size_t i = 0; i < CONFIG_NKEYS && k == NULL; i++)
			if (config_env_matches(config_keys[i].name, var + plen))
				k = &config_keys[i];
		if (k == NULL) {
			config_fail(cause, "%s: unknown environment variable: it matches no configuration "
				"key (see docs/configuration.md)", var);
			free(var);
			return -1;
		}
		rc = config_apply_env_one(ld, k, var, eq + 1, cause);
		free(var);
		if (rc < 0)
			return -1;
	}
	return 0;
}

static int config_check_readable(struct config_loader *ld, const char *key, const char *what,
	const char *path, char **cause)
{
	const struct config_key *k = config_find_key(key);
	const char *origin = ld->origin[k - config_keys];

	if (access(path, R_OK) == 0)
		return 0;
	config_fail(cause, "%s: \"%s\": cannot read %s \"%s\": %s", origin, key, what, path,
		strerror(errno));
	return -1;
}

static const char *config_getenv(char *const *envp, const char *name)
{
	size_t n = strlen(name);

	for (; envp && *envp; envp++)
		if (strncmp(*envp, name, n) == 0 && (*envp)[n] == '=')
			return *envp + n + 1;
	return NULL;
}

/* The default URL's parts, unused under Sentinel or Cluster. */
static void config_drop_redis_url(struct config *cfg)
{
	free(cfg->redis_host);
	cfg->redis_host = NULL;
	free(cfg->redis_unix);
	cfg->redis_unix = NULL;
	cfg->redis_port = 0;
	cfg->redis_db = 0;
}

/* One Redis topology, and its password from the environment. */
static int config_finish_redis(struct config_loader *ld, char **cause)
{
	struct config *cfg = ld->cfg;
	const struct config_key *url = config_find_key("redis.url");
	const struct config_key *sen = config_find_key("redis.sentinels");
	const struct config_key *clu = config_find_key("redis.cluster");
	const struct config_key *name = config_find_key("redis.master_name");
	const struct config_key *penv = config_find_key("redis.password_env");

	if (cfg->nredis_cluster > 0 && (ld->set[url - config_keys] || cfg->nredis_sentinels > 0)) {
		config_fail(cause, "%s: \"redis.cluster\" and \"%s\": give exactly one Redis topology",
			ld->origin[clu - config_keys], cfg->nredis_sentinels > 0 ? "redis.sentinels" : "redis.url");
		return -1;
	}
	/* The nodes are found at run time; a cluster has one database. */
	if (cfg->nredis_cluster > 0)
		config_drop_redis_url(cfg);
	if (cfg->nredis_sentinels > 0) {
		if (ld->set[url - config_keys]) {
			config_fail(cause, "%s: \"redis.url\" and \"redis.sentinels\": give exactly one Redis topology",
				ld->origin[sen - config_keys]);
			return -1;
		}
		if (cfg->redis_master_name[0] == '\0') {
			config_fail(cause, "%s: \"redis.master_name\" is required with \"redis.sentinels\"",
				ld->origin[sen - config_keys]);
			return -1;
		}
		/* The master is found at run time. */
		config_drop_redis_url(cfg);
	} else if (cfg->redis_master_name[0] != '\0') {
		config_fail(cause, "%s: \"redis.master_name\" needs \"redis.sentinels\"",
			ld->origin[name - config_keys]);
		return -1;
	}
	if (cfg->redis_password_env[0] != '\0') {
		const char *pw = config_getenv(ld->envp, cfg->redis_password_env);

		if (cfg->redis_password != NULL) {
			config_fail(cause, "%s: \"redis.password_env\" and a password in \"redis.url\": give one",
				ld->origin[penv - config_keys]);
			return -1;
		}
		if (pw == NULL || pw[0] == '\0') {
			config_fail(cause, "%s: \"redis.password_env\": the environment variable %s is not set",
				ld->origin[penv - config_keys], cfg->redis_password_env);
			return -1;
		}
		if ((cfg->redis_password = strdup(pw)) == NULL) {
			config_fail(cause, "%s: out of memory", ld->file);
			return -1;
		}
	}
	return 0;
}

/* Checks that need the final values: files exist, geoip is complete. */
static int config_finish(struct config_loader *ld, char **cause)
{
	struct config *cfg = ld->cfg;
	const struct config_listener *listeners[] = { &cfg->public_, &cfg->admin, &cfg->worker };
	const char *tls_keys[] = { "public.tls", "admin.tls", "worker.tls" };
	const struct config_key *db = config_find_key("geoip.database");
	const struct config_key *cc = config_find_key("geoip.country_centroids");
	long n;

	if (config_check_readable(ld, "regions", "the region catalog", cfg->regions, cause) < 0)
		return -1;
	if (config_finish_redis(ld, cause) < 0)
		return -1;
	cfg->geoip_enabled = ld->set[db - config_keys];
	if (!cfg->geoip_enabled && (ld->geoip_section || ld->set[cc - config_keys])) {
		config_fail(cause, "%s: \"geoip.database\" is required when \"geoip\" is configured",
			ld->set[cc - config_keys] ? ld->origin[cc - config_keys] : ld->file);
		return -1;
	}
	for (size_t i = 0; i < cfg->ngeoip_databases; i++)
		if (config_check_readable(ld, "geoip.database", "the GeoIP database",
			    cfg->geoip_databases[i], cause) < 0)
			return -1;
	if (cfg->country_centroids != NULL &&
	    config_check_readable(ld, "geoip.country_centroids", "the country centroids",
		    cfg->country_centroids, cause) < 0)
		return -1;
	for (size_t i = 0; i < 3; i++) {
		const struct config_tls *t = &listeners[i]->tls;

		for (size_t j = 0; j < t->ncerts; j++) {
			if (config_check_readable(ld, tls_keys[i], "certificate file",
				    t->certs[j].cert, cause) < 0 ||
			    config_check_readable(ld, tls_keys[i], "private key file", t->certs[j].key,
				    cause) < 0)
				return -1;
		}
	}
	if (cfg->threads == 0) {
		n = sysconf(_SC_NPROCESSORS_ONLN);
		cfg->threads = n < 1 ? 1 : n > 256 ? 256 : (int)n;
	}
	return 0;
}

static int config_read_file(const char *path, char **text, size_t *len, char **cause)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL, *nbuf;
	size_t cap = 0, n = 0, got;
	int rc = -1;

	*text = NULL;
	if (f == NULL) {
		config_fail(cause, "%s: cannot open: %s", path, strerror(errno));
		return -1;
	}
	for (;;) {
		if (cap - n < 4096) {
			cap = cap == 0 ? 8192 : cap * 2;
			if (cap > CONFIG_MAX_FILE_BYTES + 1)
				cap = CONFIG_MAX_FILE_BYTES + 1;
			nbuf = realloc(buf, cap + 1);
			if (nbuf == NULL) {
				config_fail(cause, "%s: out of memory", path);
				goto out;
			}
			buf = nbuf;
		}
		got = fread(buf + n, 1, cap - n, f);
		n += got;
		if (n > CONFIG_MAX_FILE_BYTES) {
			config_fail(cause, "%s: larger than %u bytes", path, CONFIG_MAX_FILE_BYTES);
			goto out;
		}
		if (got == 0)
			break;
	}
	if (ferror(f)) {
		config_fail(cause, "%s: cannot read: %s", path, strerror(errno));
		goto out;
	}
	buf[n] = '\0';
	*text = buf;
	*len = n;
	buf = NULL;
	rc = 0;
out:
	free(buf);
	fclose(f);
	return rc;
}

/* Sets cfg->path and cfg->dir: the realpath of the file's folder, so a symlinked
 * file still resolves relative paths next to the link. */
static int config_resolve(struct config *cfg, const char *path, char **cause)
{
	char *copy = strdup(path), *slash, *real = NULL;
	const char *dir, *base;
	int rc = -1;

	if (copy == NULL) {
		config_fail(cause, "%s: out of memory", path);
		return -1;
	}
	slash = strrchr(copy, '/');
	if (slash == NULL) {
		dir = ".";
		base = copy;
	} else {
		*slash = '\0';
		dir = slash == copy ? "/" : copy;
		base = slash + 1;
	}
	if (*base == '\0') {
		config_fail(cause, "%s: not a file name", path);
		goto out;
	}
	real = realpath(dir, NULL);
	if (real == NULL) {
		config_fail(cause, "%s: cannot resolve its folder: %s", path, strerror(errno));
		goto out;
	}
	cfg->dir = real;
	cfg->path = config_abs_path(real, base);
	real = NULL;
	if (cfg->path == NULL) {
		config_fail(cause, "%s: out of memory", path);
		goto out;
	}
	rc = 0;
out:
	free(copy);
	return rc;
}

int config_load(const char *path, char *const *envp, struct config **out, char **cause)
{
	struct config_loader ld;
	struct config *cfg;
	yajl_val root = NULL;
	char *text = NULL;
	size_t len = 0;
	int rc = -1;

	*out = NULL;
	memset(&ld, 0, sizeof(ld));
	if (cause != NULL)
		*cause = NULL;
	cfg = calloc(1, sizeof(*cfg));
	if (cfg == NULL) {
		config_fail(cause, "%s: out of memory", path);
		return -1;
	}
	config_tls_clear(&cfg->public_.tls);
	config_tls_clear(&cfg->admin.tls);
	config_tls_clear(&cfg->worker.tls);
	ld.cfg = cfg;
	ld.file = path;

	if (config_read_file(path, &text, &len, cause) < 0)
		goto out;
	if (config_resolve(cfg, path, cause) < 0)
		goto out;
	if (config_parse_json(text, len, path, &root, cause) < 0)
		goto out;
	if (!YAJL_IS_OBJECT(root)) {
		char found[128];
		config_describe(root, found, sizeof(found));
		config_fail(cause, "%s: expected a JSON object at the top, found %s", path, found);
		goto out;
	}
	if (config_apply_defaults(&ld, cause) < 0)
		goto out;
	if (config_walk(&ld, root, NULL, cause) < 0)
		goto out;
	ld.envp = envp != NULL ? envp : environ;
	if (config_apply_env(&ld, ld.envp, cause) < 0)
		goto out;
	if (config_finish(&ld, cause) < 0)
		goto out;
	*out = cfg;
	cfg = NULL;
	rc = 0;
out:
	for (size_t i = 0; i < CONFIG_NKEYS; i++)
		free(ld.origin[i]);
	yajl_tree_free(root);
	free(text);
	config_free(cfg);
	return rc;
}

static void config_listener_clear(struct config_listener *l)
{
	free(l->listen);
	config_tls_clear(&l->tls);
}

void config_free(struct config *cfg)
{
	if (cfg == NULL)
		return;
	free(cfg->path);
	free(cfg->dir);
	config_listener_clear(&cfg->public_);
	config_listener_clear(&cfg->admin);
	config_listener_clear(&cfg->worker);
	config_free_list(cfg->admin_tokens);
	free(cfg->redis_url);
	config_redis_clear(cfg);
	config_free_list(cfg->redis_sentinels);
	config_free_list(cfg->redis_cluster);
	free(cfg->redis_master_name);
	free(cfg->redis_password_env);
	free(cfg->regions);
	free(cfg->secret_key_file);
	config_free_list(cfg->geoip_databases);
	free(cfg->country_centroids);
	config_free_list(cfg->trusted_proxies);
	free(cfg->log_level);
	free(cfg->log_format);
	free(cfg);
}

void config_dump_keys(FILE *f)
{
	for (size_t i = 0; i < CONFIG_NKEYS; i++) {
		const struct config_key *k = &config_keys[i];

		fprintf(f, "%s\t%s\t%s\t%s", k->name, config_type_names[k->type],
			k->def != NULL ? k->def : "(none)", k->desc);
		if (k->type == CONFIG_INT)
			fprintf(f, " [%lld..%lld]", k->min, k->max);
		fputc('\n', f);
	}
}

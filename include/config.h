/* config: the JSON configuration file, its defaults and BOOTSTRAPD_* overrides.
 *
 * One table in config.c describes every key (name, type, default, bounds); the
 * file and the environment go through the same parser. Paths in the result are
 * absolute (relative ones are resolved against the config file's folder). */
#ifndef BOOTSTRAPD_CONFIG_H
#define BOOTSTRAPD_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdio.h>

#define CONFIG_MAX_CERTS 4

struct config_cert {
	char *cert; /* PEM chain file, absolute path */
	char *key;  /* PEM private key file, absolute path */
};

struct config_tls {
	bool enabled; /* false: plain HTTP */
	struct config_cert certs[CONFIG_MAX_CERTS];
	size_t ncerts;
	char *ciphers;      /* TLS <= 1.2 cipher list; NULL = built-in modern list */
	char *ciphersuites; /* TLS 1.3 suites; NULL = OpenSSL default */
	int min_version;    /* TLS1_2_VERSION or TLS1_3_VERSION */
	bool legacy_device_ciphers;
};

struct config_listener {
	char *listen; /* "host:port", "[v6]:port"; empty = off */
	struct config_tls tls;
	bool proxy_protocol;
};

struct config {
	char *path; /* absolute path of the file read */
	char *dir;  /* its folder */

	struct config_listener public_;
	struct config_listener admin;
	struct config_listener worker;
	char **admin_tokens; /* "sha256:<64 hex>" each, NULL-terminated */
	size_t nadmin_tokens;

	int worker_chunk_size;
	int worker_pause_ms;
	int worker_claim_idle_ms;
	int worker_batch_retention_s; /* 0 = keep batch rows and results forever */
	int notify_rate_per_broker;
	int notify_inflight_per_broker;

	int threads; /* resolved: >= 1 (0 in the file = one per CPU) */

	char *redis_url;
	int redis_timeout_ms;
	/* redis_url parsed: TCP (redis_host, redis_port) or a socket (redis_unix). */
	char *redis_host;     /* NULL for unix:// */
	int redis_port;       /* 6379 unless given; 0 for unix:// */
	char *redis_unix;     /* absolute socket path, or NULL for redis:// */
	char *redis_user;     /* ACL user name, or NULL */
	char *redis_password; /* NULL = no AUTH */
	int redis_db;         /* SELECT index, 0 unless given */
	/* Redis Sentinel: the master named redis_master_name, as the sentinels
	 * ("host:port" each, NULL-terminated) say. Empty list: redis_url. */
	char **redis_sentinels;
	size_t nredis_sentinels;
	char *redis_master_name;  /* "" unless Sentinel */
	/* Redis Cluster: seed nodes; the slots are discovered (redis.cluster). */
	char **redis_cluster;
	size_t nredis_cluster;
	char *redis_password_env; /* "" or the variable redis_password came from */
	int redis_wait_replicas;  /* WAIT for this many replicas after durable writes; 0 = no */

	char *regions; /* region catalog file */
	char *secret_key_file; /* 32-byte key (64 hex chars) for device secrets */

	bool geoip_enabled;
	char **geoip_databases; /* NULL-terminated */
	size_t ngeoip_databases;
	char *country_centroids; /* may be NULL */

	char **trusted_proxies; /* CIDR strings, NULL-terminated */
	size_t ntrusted_proxies;

	size_t max_body_bytes;
	int bootstrap_rps_per_ip;
	int batch_max_devices;
	int auth_code_ttl_s;

	int request_timeout_s;   /* a request's first byte to its last */
	int keepalive_timeout_s; /* idle between requests */
	int max_header_bytes;    /* request line and headers */
	int max_connections;     /* resolved by the server: 0 = 90 % of RLIMIT_NOFILE */
	int cache_entries;       /* 0 = no record cache */
	int drain_grace_s;   /* after SIGTERM: still accepting, readyz 503 */
	int drain_timeout_s; /* then: the bound on in-flight work */
	char *log_level;     /* "debug", "info", "warn", "error" */
	char *log_format;    /* "text", "json" */
	bool log_access;     /* a line per answered request */
};

/* Reads and validates FILE, applies the environment (envp style array, NULL =
 * the process environment). On error returns -1 and sets *cause (caller frees)
 * to a message naming the file, line or key, and the reason. */
int config_load(const char *path, char *const *envp, struct config **out, char **cause)
	__attribute__((warn_unused_result));

void config_free(struct config *cfg);

/* Writes one line per key ("name type default description") for docs checks. */
void config_dump_keys(FILE *f);

#endif

/* server: the process in its role. One event loop per thread, each with its
 * own public listener (SO_REUSEPORT), Redis connection and catalog reference;
 * thread 0 also runs the admin (or worker) listener and the signal handlers. */
#ifndef BOOTSTRAPD_SERVER_H
#define BOOTSTRAPD_SERVER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#include "http.h"
#include "netaddr.h"

struct config;
struct catalog;
struct store;
struct token_set;
struct secret_key;
struct bootstrap_cache;
struct ratelimit;
struct worker;
struct geo_db;
struct notify;

enum server_role { SERVER_ROLE_ALL, SERVER_ROLE_API, SERVER_ROLE_WORKER };

struct codes;
struct hooks;
struct hooks_want;

struct server_thread {
	struct server *srv;
	int index;
	pthread_t tid;
	struct event_base *base;
	struct store *store;
	struct store *admin_store; /* thread 0 with an admin listener: operators' own connection */
	struct codes *codes;     /* the records' region and instance codes, synced through store */
	struct hooks_want *hooks; /* push subscriptions' events, queued through store */
	struct catalog *catalog; /* this loop's reference; swapped on reload */
	struct geo_db *geo;      /* likewise; NULL without GeoIP */
	struct token_set *tokens; /* likewise: the admin tokens */
	struct bootstrap_cache *cache;
	struct http_server *public_http;
	struct http_server *admin_http; /* thread 0: admin, or the worker's ops listener */
	struct http_service public_svc, admin_svc;
	struct event *reload_ev, *stop_ev, *drain_timer, *close_timer;
	uint64_t requests; /* for request ids */
	int quiet_ticks;   /* drain: ticks in a row with nothing in flight */
};

struct server {
	const struct config *cfg;
	enum server_role role;
	SSL_CTX *public_tls, *admin_tls;
	struct token_set *tokens; /* the newest admin tokens; threads take references */
	struct secret_key *secret_key;
	struct netaddr_list trusted_proxies;
	struct ratelimit *ratelimit; /* NULL: no per-address limit */
	struct hooks *hooks;         /* the push subscriptions' deliveries (worker role), or NULL */
	pthread_mutex_t catalog_lock;
	struct catalog *catalog; /* the newest; threads take references */
	struct geo_db *geo;       /* the newest GeoIP database, NULL without GeoIP */
	struct server_thread *threads;
	int nthreads;
	struct worker *worker; /* roles all and worker, on thread 0's loop */
	struct notify *notify; /* likewise: bootstrap notify over MQTT */
	struct event *sig_term, *sig_int, *sig_hup;
	struct timespec drain_deadline, drain_grace;
	atomic_bool draining; /* from SIGTERM/SIGINT on */
};

/* Builds every listener and connection; takes references to CATALOG and GEO
 * (NULL without GeoIP). On error returns -1 with *cause (start-up failure). */
int server_new(const struct config *cfg, enum server_role role, struct catalog *catalog,
	struct geo_db *geo, struct server **out, char **cause) __attribute__((warn_unused_result));
/* Runs until SIGTERM/SIGINT and the drain. Returns 0 on a clean stop. */
int server_run(struct server *srv) __attribute__((warn_unused_result));
void server_free(struct server *srv);

/* Reloads the catalog, the GeoIP database and the listeners' TLS
 * certificates from the configured files; each that fails to load is
 * logged and the old one stays in service. */
void server_reload(struct server *srv);
/* True from SIGTERM/SIGINT on (/readyz answers 503). */
bool server_draining(const struct server *srv);

#endif

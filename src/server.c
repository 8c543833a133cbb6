#include "server.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <event2/thread.h>

#include "admin.h"
#include "adminreq.h"
#include "bootstrap.h"
#include "catalog.h"
#include "codes.h"
#include "config.h"
#include "geo.h"
#include "hooks.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "ratelimit.h"
#include "secret.h"
#include "store.h"
#include "tls.h"
#include "token.h"
#include "worker.h"

/* After SIGTERM, open connections get this long to complete a request. */
#define SERVER_DRAIN_GRACE_S 1

static void server_thread_reload(evutil_socket_t fd, short what, void *arg)
{
	struct server_thread *t = arg;
	struct catalog *old = t->catalog;
	struct geo_db *old_geo = t->geo;
	struct token_set *old_tokens = t->tokens;

	(void)fd;
	(void)what;
	pthread_mutex_lock(&t->srv->catalog_lock);
	t->catalog = catalog_ref(t->srv->catalog);
	t->geo = t->srv->geo ? geo_db_ref(t->srv->geo) : NULL;
	t->tokens = token_set_ref(t->srv->tokens);
	if (t->public_http)
		http_server_set_tls(t->public_http, t->srv->public_tls);
	if (t->admin_http)
		http_server_set_tls(t->admin_http, t->srv->admin_tls);
	pthread_mutex_unlock(&t->srv->catalog_lock);
	bootstrap_cache_catalog_changed(t->cache);
	catalog_unref(old);
	geo_db_unref(old_geo);
	token_set_unref(old_tokens);
}

static void server_thread_drain_check(evutil_socket_t fd, short what, void *arg)
{
	struct server_thread *t = arg;
	struct timespec now;

	(void)fd;
	(void)what;
	clock_gettime(CLOCK_MONOTONIC, &now);
	/* Requests still arriving on open connections get the grace period. */
	bool graced = now.tv_sec > t->srv->drain_grace.tv_sec ||
		(now.tv_sec == t->srv->drain_grace.tv_sec && now.tv_nsec >= t->srv->drain_grace.tv_nsec);
	/* Quiet for two ticks: an answer queued in this loop turn is written out
	 * before the connections close. */
	if (http_inflight() == 0 && !worker_busy(t->srv->worker) && graced)
		t->quiet_ticks++;
	else
		t->quiet_ticks = 0;
	if (t->quiet_ticks >= 2 || now.tv_sec > t->srv->drain_deadline.tv_sec ||
	    (now.tv_sec == t->srv->drain_deadline.tv_sec && now.tv_nsec >= t->srv->drain_deadline.tv_nsec)) {
		if (http_inflight() != 0 && t->index == 0)
			log_warn("server", "drain time is over with %ld requests unanswered", http_inflight());
		event_base_loopexit(t->base, NULL);
	}
}

/* Runs in the thread's own loop once the grace period is over: stop
 * accepting, then wait for in-flight work. */
static void server_thread_close(evutil_socket_t fd, short what, void *arg)
{
	struct server_thread *t = arg;
	struct timeval tick = { 0, 20000 };

	(void)fd;
	(void)what;
	if (t->public_http)
		http_server_drain(t->public_http);
	if (t->admin_http)
		http_server_drain(t->admin_http);
	event_add(t->drain_timer, &tick);
	server_thread_drain_check(-1, 0, t);
}

/* Runs in the thread's own loop at SIGTERM: the worker stops taking work;
 * the listeners keep accepting for drain_grace_s (every answer closing its
 * connection) while /readyz says 503, then close. */
static void server_thread_stop(evutil_socket_t fd, short what, void *arg)
{
	struct server_thread *t = arg;
	struct timeval grace = { t->srv->cfg->drain_grace_s, 0 };

	(void)fd;
	(void)what;
	if (t->index == 0) {
		worker_stop(t->srv->worker);
		notify_stop(t->srv->notify);
		hooks_stop(t->srv->hooks);
	}
	if (grace.tv_sec == 0) {
		server_thread_close(-1, 0, t);
		return;
	}
	if (t->public_http)
		http_server_close_soon(t->public_http);
	if (t->admin_http)
		http_server_close_soon(t->admin_http);
	event_add(t->close_timer, &grace);
}

static void server_begin_stop(struct server *srv, const char *why)
{
	const struct config *cfg = srv->cfg;

	if (atomic_exchange(&srv->draining, true))
		return;
	metrics_gauge_add(METRICS_DRAINING, 1);
	if (cfg->drain_grace_s > 0)
		log_info("server", "%s: /readyz answers 503; accepting for %d s more, then draining for up to %d s", why,
			cfg->drain_grace_s, cfg->drain_timeout_s);
	else
		log_info("server", "%s: draining for up to %d s", why, cfg->drain_timeout_s);
	clock_gettime(CLOCK_MONOTONIC, &srv->drain_deadline);
	srv->drain_deadline.tv_sec += cfg->drain_grace_s;
	srv->drain_grace = srv->drain_deadline;
	srv->drain_grace.tv_sec += cfg->drain_timeout_s < SERVER_DRAIN_GRACE_S ? cfg->drain_timeout_s
										: SERVER_DRAIN_GRACE_S;
	srv->drain_deadline.tv_sec += cfg->drain_timeout_s;
	for (int i = 0; i < srv->nthreads; i++)
		event_active(srv->threads[i].stop_ev, EV_READ, 0);
}

bool server_draining(const struct server *srv)
{
	return atomic_load(&srv->draining);
}

static void server_on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct server *srv = arg;

	(void)what;
	if (sig == SIGHUP)
		server_reload(srv);
	else
		server_begin_stop(srv, sig == SIGTERM ? "SIGTERM" : "SIGINT");
}

/* A new context for listener NAME's certificates, or NULL (logged) when
 * they do not load. Session tickets issued before still resume. */
static SSL_CTX *server_tls_reload(const struct config_tls *tls, SSL_CTX *old, const char *name)
{
	unsigned char keys[80];
	SSL_CTX *ctx = NULL;
	char *cause = NULL;

	if (old == NULL || !tls->enabled)
		return NULL;
	if (tls_ctx_new(tls, &ctx, &cause) < 0) {
		log_error("server", "reload rejected, the %s listener's TLS certificates in service stay: %s", name,
			cause ? cause : "error");
		metrics_count(METRICS_TLS_RELOAD_FAILURES);
		free(cause);
		return NULL;
	}
	if (SSL_CTX_get_tlsext_ticket_keys(old, keys, sizeof(keys)) == 1)
		(void)SSL_CTX_set_tlsext_ticket_keys(ctx, keys, sizeof(keys));
	OPENSSL_cleanse(keys, sizeof(keys));
	metrics_count(METRICS_TLS_RELOADS);
	log_info("server", "%s listener's TLS certificates reloaded", name);
	return ctx;
}

/* The admin tokens and log settings of the configuration file as it is now
 * (the environment's overrides applied again); NULL, logged, when the file no
 * longer loads. Every other key keeps its value until a restart. */
static struct token_set *server_config_reload(const struct config *cfg)
{
	struct config *fresh = NULL;
	struct token_set *tokens = NULL;
	char *cause = NULL;

	if (config_load(cfg->path, NULL, &fresh, &cause) < 0 ||
	    token_set_new(fresh->admin_tokens, fresh->nadmin_tokens, &tokens, &cause) < 0) {
		log_error("server", "reload rejected, the admin tokens and log settings in service stay: %s",
			cause ? cause : "error");
		metrics_count(METRICS_CONFIG_RELOAD_FAILURES);
		free(cause);
		config_free(fresh);
		return NULL;
	}
	log_configure(fresh->log_level, fresh->log_format, fresh->log_access);
	log_info("server", "configuration reloaded from %s: %zu admin token%s, log level %s", cfg->path,
		fresh->nadmin_tokens, fresh->nadmin_tokens == 1 ? "" : "s", fresh->log_level);
	metrics_count(METRICS_CONFIG_RELOADS);
	config_free(fresh);
	return tokens;
}

void server_reload(struct server *srv)
{
	const struct config *cfg = srv->cfg;
	struct catalog *cat = NULL, *old = NULL;
	struct geo_db *geo = NULL, *old_geo = NULL;
	const struct config_listener *own = srv->role == SERVER_ROLE_WORKER ? &cfg->worker : &cfg->admin;
	SSL_CTX *pub = server_tls_reload(&cfg->public_.tls, srv->public_tls, "public");
	SSL_CTX *adm = server_tls_reload(&own->tls, srv->admin_tls, srv->role == SERVER_ROLE_WORKER ? "worker" : "admin");
	SSL_CTX *old_pub = NULL, *old_adm = NULL;
	struct token_set *tokens = server_config_reload(cfg), *old_tokens = NULL;
	char *cause = NULL;
	bool changed = pub != NULL || adm != NULL || tokens != NULL;

	if (catalog_load(cfg->regions, &cat, &cause) < 0) {
		log_error("server", "reload rejected, the catalog in service stays: %s", cause ? cause : "error");
		metrics_count(METRICS_CATALOG_RELOAD_FAILURES);
		free(cause);
		cause = NULL;
	}
	if (cfg->geoip_enabled && geo_db_open(cfg->geoip_databases, cfg->ngeoip_databases,
					   cfg->country_centroids, &geo, &cause) < 0) {
		log_error("server", "reload rejected, the GeoIP database in service stays: %s",
			cause ? cause : "error");
		metrics_count(METRICS_GEO_RELOAD_FAILURES);
		free(cause);
	}
	pthread_mutex_lock(&srv->catalog_lock);
	if (tokens) {
		old_tokens = srv->tokens;
		srv->tokens = tokens;
	}
	if (pub) {
		old_pub = srv->public_tls;
		srv->public_tls = pub;
	}
	if (adm) {
		old_adm = srv->admin_tls;
		srv->admin_tls = adm;
	}
	if (cat) {
		old = srv->catalog;
		srv->catalog = cat;
		changed = true;
	}
	if (geo) {
		old_geo = srv->geo;
		srv->geo = geo;
		changed = true;
	}
	pthread_mutex_unlock(&srv->catalog_lock);
	catalog_unref(old);
	geo_db_unref(old_geo);
	/* Each listener holds its own reference until its thread swaps. */
	SSL_CTX_free(old_pub);
	SSL_CTX_free(old_adm);
	token_set_unref(old_tokens);
	if (!changed)
		return;
	for (int i = 0; i < srv->nthreads; i++)
		event_active(srv->threads[i].reload_ev, EV_READ, 0);
	if (cat) {
		notify_catalog(srv->notify, cat);
		metrics_count(METRICS_CATALOG_RELOADS);
		log_info("server", "catalog reloaded from %s: %zu regions", cfg->regions, cat->nregions);
	}
	if (geo) {
		metrics_count(METRICS_GEO_RELOADS);
		log_info("server", "GeoIP database reloaded (%zu file%s)", cfg->ngeoip_databases,
			cfg->ngeoip_databases == 1 ? "" : "s");
	}
}

/* A loop with libevent's precise clock: the record cache tells loop turns
 * apart by the cached time, which the default CLOCK_MONOTONIC_COARSE only
 * moves every few milliseconds, over many turns. */
/* Two priorities: the Redis tracking connection's reads come first in a loop
 * turn (store.c), so that a request never meets a cached record whose
 * invalidation arrived with it. */
static struct event_base *server_base_new(void)
{
	struct event_base *base = event_base_new();

	if (base && event_base_priority_init(base, 2) < 0) {
		event_base_free(base);
		return NULL;
	}
	return base;
}

static int server_thread_init(struct server *srv, struct server_thread *t, int index, char **cause)
{
	const struct config *cfg = srv->cfg;
	evutil_socket_t fd;

	t->srv = srv;
	t->index = index;
	t->base = server_base_new();
	if (t->base == NULL)
		goto nomem;
	t->catalog = catalog_ref(srv->catalog);
	t->geo = srv->geo ? geo_db_ref(srv->geo) : NULL;
	t->tokens = token_set_ref(srv->tokens);
	t->cache = bootstrap_cache_new();
	t->store = store_new(t->base, cfg);
	t->codes = t->store ? codes_new(t->store, cfg->redis_timeout_ms) : NULL;
	t->hooks = t->store ? hooks_want_new(t->store) : NULL;
	t->reload_ev = event_new(t->base, -1, 0, server_thread_reload, t);
	t->stop_ev = event_new(t->base, -1, 0, server_thread_stop, t);
	t->drain_timer = event_new(t->base, -1, EV_PERSIST, server_thread_drain_check, t);
	t->close_timer = evtimer_new(t->base, server_thread_close, t);
	if (!t->cache || !t->store || !t->codes || !t->hooks || !t->reload_ev || !t->stop_ev || !t->drain_timer ||
	    !t->close_timer)
		goto nomem;
	/* Only the codes table is written through it, and must survive a failover. */
	store_durable_replies(t->store);
	/* cache.entries bounds the process: each API thread keeps its share. */
	if (srv->role != SERVER_ROLE_WORKER && cfg->cache_entries > 0) {
		size_t n = (size_t)cfg->cache_entries / (size_t)cfg->threads +
			((size_t)index < (size_t)cfg->cache_entries % (size_t)cfg->threads);
		if (n > 0 && store_cache_enable(t->store, n) < 0)
			goto nomem;
	}
	if (srv->role != SERVER_ROLE_WORKER) {
		if (http_listen(cfg->public_.listen, true, &fd, cause) < 0)
			return -1;
		t->public_svc = (struct http_service){ bootstrap_routes, bootstrap_nroutes, METRICS_PUBLIC_OTHER,
			bootstrap_error, t, NULL };
		t->public_http = http_server_new(t->base, fd, srv->public_tls, cfg->public_.proxy_protocol, cfg,
			&t->public_svc);
		if (t->public_http == NULL) {
			close(fd);
			goto nomem;
		}
	}
	if (index == 0) {
		const struct config_listener *l = srv->role == SERVER_ROLE_WORKER ? &cfg->worker : &cfg->admin;
		if (l->listen && l->listen[0]) {
			if (http_listen(l->listen, false, &fd, cause) < 0)
				return -1;
			if (srv->role != SERVER_ROLE_WORKER && (t->admin_store = store_new(t->base, cfg)) == NULL) {
				close(fd);
				goto nomem;
			}
			if (srv->role == SERVER_ROLE_WORKER)
				t->admin_svc = (struct http_service){ admin_ops_routes, admin_nops_routes, METRICS_OPS,
					adminreq_http_error, t, NULL };
			else
				t->admin_svc = (struct http_service){ admin_routes, admin_nroutes, METRICS_ADMIN,
					adminreq_http_error, t, admin_answered };
			/* An operator told of a write is told after the record caches. */
			if (t->admin_store) {
				store_fence_replies(t->admin_store);
				store_durable_replies(t->admin_store);
			}
			t->admin_http = http_server_new(t->base, fd, srv->admin_tls, l->proxy_protocol, cfg,
				&t->admin_svc);
			if (t->admin_http == NULL) {
				close(fd);
				goto nomem;
			}
		}
	}
	return 0;
nomem:
	*cause = strdup("out of memory");
	return -1;
}

static void server_thread_deinit(struct server_thread *t)
{
	/* Pending Redis callbacks answer their requests before the servers go. */
	store_free(t->store);
	store_free(t->admin_store);
	codes_free(t->codes);
	hooks_want_free(t->hooks);
	http_server_free(t->public_http);
	http_server_free(t->admin_http);
	if (t->reload_ev)
		event_free(t->reload_ev);
	if (t->stop_ev)
		event_free(t->stop_ev);
	if (t->drain_timer)
		event_free(t->drain_timer);
	if (t->close_timer)
		event_free(t->close_timer);
	bootstrap_cache_free(t->cache);
	catalog_unref(t->catalog);
	geo_db_unref(t->geo);
	token_set_unref(t->tokens);
	if (t->base)
		event_base_free(t->base);
}

int server_new(const struct config *cfg, enum server_role role, struct catalog *catalog,
	struct geo_db *geo, struct server **out, char **cause)
{
	struct server *srv = calloc(1, sizeof(*srv));

	*cause = NULL;
	if (srv == NULL || evthread_use_pthreads() < 0) {
		free(srv);
		*cause = strdup("out of memory");
		return -1;
	}
	signal(SIGPIPE, SIG_IGN);
	srv->cfg = cfg;
	srv->role = role;
	pthread_mutex_init(&srv->catalog_lock, NULL);
	srv->catalog = catalog_ref(catalog);
	srv->geo = geo ? geo_db_ref(geo) : NULL;
	if (token_set_new(cfg->admin_tokens, cfg->nadmin_tokens, &srv->tokens, cause) < 0)
		goto fail;
	if (secret_key_load(cfg->secret_key_file, true, &srv->secret_key, cause) < 0)
		goto fail;
	if (netaddr_list_parse(cfg->trusted_proxies, cfg->ntrusted_proxies, &srv->trusted_proxies, cause) < 0)
		goto fail;
	if (cfg->bootstrap_rps_per_ip > 0 &&
	    (srv->ratelimit = ratelimit_new((unsigned)cfg->bootstrap_rps_per_ip, 1u << 18)) == NULL) {
		*cause = strdup("out of memory");
		goto fail;
	}
	if (role != SERVER_ROLE_WORKER && cfg->public_.tls.enabled &&
	    tls_ctx_new(&cfg->public_.tls, &srv->public_tls, cause) < 0)
		goto fail;
	{
		const struct config_listener *l = role == SERVER_ROLE_WORKER ? &cfg->worker : &cfg->admin;
		if (l->tls.enabled && tls_ctx_new(&l->tls, &srv->admin_tls, cause) < 0)
			goto fail;
	}
	http_set_max_connections(cfg);
	srv->nthreads = role == SERVER_ROLE_WORKER ? 1 : cfg->threads;
	srv->threads = calloc((size_t)srv->nthreads, sizeof(*srv->threads));
	if (srv->threads == NULL) {
		*cause = strdup("out of memory");
		goto fail;
	}
	for (int i = 0; i < srv->nthreads; i++)
		if (server_thread_init(srv, &srv->threads[i], i, cause) < 0)
			goto fail;
	if (role != SERVER_ROLE_API && ((srv->notify = notify_new(cfg, catalog)) == NULL ||
					 (srv->worker = worker_new(srv->threads[0].base, cfg, srv->notify)) == NULL ||
					 (srv->hooks = hooks_new(cfg, srv->secret_key)) == NULL)) {
		*cause = strdup("out of memory");
		goto fail;
	}
	srv->sig_term = evsignal_new(srv->threads[0].base, SIGTERM, server_on_signal, srv);
	srv->sig_int = evsignal_new(srv->threads[0].base, SIGINT, server_on_signal, srv);
	srv->sig_hup = evsignal_new(srv->threads[0].base, SIGHUP, server_on_signal, srv);
	if (!srv->sig_term || !srv->sig_int || !srv->sig_hup || evsignal_add(srv->sig_term, NULL) < 0 ||
	    evsignal_add(srv->sig_int, NULL) < 0 || evsignal_add(srv->sig_hup, NULL) < 0) {
		*cause = strdup("cannot install signal handlers");
		goto fail;
	}
	*out = srv;
	return 0;
fail:
	server_free(srv);
	return -1;
}

static void *server_thread_main(void *arg)
{
	struct server_thread *t = arg;

	event_base_dispatch(t->base);
	return NULL;
}

int server_run(struct server *srv)
{
	int rc = 0;

	for (int i = 1; i < srv->nthreads; i++) {
		if (pthread_create(&srv->threads[i].tid, NULL, server_thread_main, &srv->threads[i]) != 0) {
			log_error("server", "cannot start thread %d: %s", i, strerror(errno));
			rc = -1;
			server_begin_stop(srv, "start-up failure");
			break;
		}
	}
	log_info("server", "serving: role %s, %d thread%s, public %s, %s %s",
		srv->role == SERVER_ROLE_ALL ? "all" : srv->role == SERVER_ROLE_API ? "api" : "worker",
		srv->nthreads, srv->nthreads == 1 ? "" : "s",
		srv->role == SERVER_ROLE_WORKER ? "off" : srv->cfg->public_.listen,
		srv->role == SERVER_ROLE_WORKER ? "worker" : "admin",
		srv->role == SERVER_ROLE_WORKER ? (srv->cfg->worker.listen[0] ? srv->cfg->worker.listen : "off")
						: srv->cfg->admin.listen);
	event_base_dispatch(srv->threads[0].base);
	for (int i = 1; i < srv->nthreads; i++)
		if (srv->threads[i].tid)
			pthread_join(srv->threads[i].tid, NULL);
	log_info("server", "stopped");
	return rc;
}

void server_free(struct server *srv)
{
	if (srv == NULL)
		return;
	if (srv->sig_term)
		event_free(srv->sig_term);
	if (srv->sig_int)
		event_free(srv->sig_int);
	if (srv->sig_hup)
		event_free(srv->sig_hup);
	worker_free(srv->worker);
	notify_free(srv->notify);
	hooks_free(srv->hooks);
	for (int i = 0; srv->threads && i < srv->nthreads; i++)
		server_thread_deinit(&srv->threads[i]);
	free(srv->threads);
	SSL_CTX_free(srv->public_tls);
	SSL_CTX_free(srv->admin_tls);
	token_set_unref(srv->tokens);
	secret_key_free(srv->secret_key);
	netaddr_list_clear(&srv->trusted_proxies);
	ratelimit_free(srv->ratelimit);
	catalog_unref(srv->catalog);
	geo_db_unref(srv->geo);
	pthread_mutex_destroy(&srv->catalog_lock);
	free(srv);
}

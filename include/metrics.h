/* metrics: process-wide counters and latency histograms, updated with relaxed
 * atomics from every thread and rendered as Prometheus text. */
#ifndef BOOTSTRAPD_METRICS_H
#define BOOTSTRAPD_METRICS_H

#include <stddef.h>
#include <stdint.h>

enum metrics_route {
	METRICS_BOOTSTRAP,        /* /auth/bootstrap */
	METRICS_BOOTSTRAP_REGION, /* /auth/bootstrap/regionId/{id} */
	METRICS_DYNREG,           /* /auth/register/device, /register/dev, /device/register */
	METRICS_PREAUTH,          /* /auth/devicename */
	METRICS_PUBLIC_OTHER,
	METRICS_ADMIN,            /* /v1/... */
	METRICS_OPS,              /* /healthz /readyz /metrics */
	METRICS_NROUTES
};

enum metrics_counter {
	METRICS_REDIS_ERRORS,
	METRICS_REDIS_TIMEOUTS,
	METRICS_REDIS_RECONNECTS,
	METRICS_REDIS_REDIRECTS,
	METRICS_ACTIVATIONS,
	METRICS_CATALOG_RELOADS,
	METRICS_CATALOG_RELOAD_FAILURES,
	METRICS_BATCH_ITEMS,
	METRICS_BATCH_STEPS,
	METRICS_BATCH_STEP_FAILURES,
	METRICS_BATCH_CLAIMS,
	METRICS_GEO_LOCATED,
	METRICS_GEO_COUNTRY_ONLY,
	METRICS_GEO_NOT_FOUND,
	METRICS_GEO_RELOADS,
	METRICS_GEO_RELOAD_FAILURES,
	METRICS_NOTIFY_QUEUED,
	METRICS_NOTIFY_PUBLISHED,
	METRICS_NOTIFY_SENT,
	METRICS_NOTIFY_ACKED,
	METRICS_NOTIFY_RETRIED,
	METRICS_HTTP_ACCEPTED,
	METRICS_HTTP_RECLAIMED,
	METRICS_HTTP_ACCEPT_ERRORS,
	METRICS_HTTP_TIMEOUTS,
	METRICS_HTTP_REFUSED,
	METRICS_CACHE_HITS,   /* rendered as bootstrapd_cache_requests_total{result} */
	METRICS_CACHE_MISSES,
	METRICS_CACHE_INVALIDATIONS,
	METRICS_CACHE_FLUSHES,
	METRICS_CONFIG_RELOADS,
	METRICS_CONFIG_RELOAD_FAILURES,
	METRICS_TLS_RELOADS,
	METRICS_TLS_RELOAD_FAILURES,
	METRICS_NCOUNTERS
};

enum metrics_gauge {
	METRICS_CACHE_ENTRIES,
	METRICS_REDIS_DOWN,
	METRICS_DRAINING,
	METRICS_NGAUGES
};

/* Records one answered request. STATUS is the HTTP status. */
void metrics_request(enum metrics_route route, int status, double seconds);
void metrics_count(enum metrics_counter c);
/* One Redis command's time from sent to answered (or timed out). */
void metrics_redis_latency(double seconds);
/* Records the process's start time (process_start_time_seconds); call once. */
void metrics_started(void);
/* Moves gauge G by DELTA. */
void metrics_gauge_add(enum metrics_gauge g, int64_t delta);

/* One failed TLS handshake; REASON is an enum tls_failure (tls.h). */
#define METRICS_TLS_REASONS 9
void metrics_tls_failure(int reason);
/* Open connections, up or down by DELTA. */
void metrics_connections(long delta);

/* Renders everything. Returns a malloc'd NUL-terminated string (caller
 * frees) or NULL when out of memory. */
char *metrics_render(void);

#endif

#include "metrics.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static const char *const metrics_route_names[METRICS_NROUTES] = {
	"bootstrap", "bootstrap_region", "dynreg", "preauth", "public_other", "admin", "ops",
};

static const int metrics_statuses[] = { 200, 201, 202, 400, 401, 404, 405, 408, 409, 413, 429, 431, 500, 503 };
#define METRICS_NSTATUS (sizeof(metrics_statuses) / sizeof(metrics_statuses[0]))

static const double metrics_buckets[] = {
	0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
};
#define METRICS_NBUCKETS (sizeof(metrics_buckets) / sizeof(metrics_buckets[0]))

/* Redis answers in tens of microseconds when well: finer at the low end. */
static const double metrics_redis_buckets[] = {
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
};
#define METRICS_NREDIS_BUCKETS (sizeof(metrics_redis_buckets) / sizeof(metrics_redis_buckets[0]))
static atomic_uint_fast64_t metrics_redis_hist[METRICS_NREDIS_BUCKETS + 1];
static atomic_uint_fast64_t metrics_redis_sum_us;
static double metrics_start_time;

static const struct {
	const char *name;
	const char *help;
} metrics_counter_info[METRICS_NCOUNTERS] = {
	{ "bootstrapd_redis_errors_total", "Redis commands that failed or found Redis unreachable." },
	{ "bootstrapd_redis_timeouts_total", "Redis commands that exceeded redis.timeout_ms." },
	{ "bootstrapd_redis_reconnects_total", "Connections made to Redis after the first." },
	{ "bootstrapd_redis_redirects_total", "Commands a Redis Cluster node sent elsewhere (MOVED, ASK)." },
	{ "bootstrapd_activations_total", "Device status changes to active through bootstrap." },
	{ "bootstrapd_catalog_reloads_total", "Region catalog reloads that took effect." },
	{ "bootstrapd_catalog_reload_failures_total", "Region catalog reloads rejected." },
	{ "bootstrapd_batch_items_total", "Batch rows this process recorded a result for." },
	{ "bootstrapd_batch_steps_total", "Batch steps this process applied." },
	{ "bootstrapd_batch_step_failures_total", "Batch steps that Redis refused to apply." },
	{ "bootstrapd_batch_claims_total", "Batch steps taken over from a worker that left them." },
	{ "bootstrapd_geo_lookups_located_total", "GeoIP lookups that found coordinates." },
	{ "bootstrapd_geo_lookups_country_only_total", "GeoIP lookups that found only a country (centroid used)." },
	{ "bootstrapd_geo_lookups_not_found_total", "GeoIP lookups that found nothing (first candidate used)." },
	{ "bootstrapd_geo_reloads_total", "GeoIP database reloads that took effect." },
	{ "bootstrapd_geo_reload_failures_total", "GeoIP database reloads rejected." },
	{ "bootstrapd_notify_queued_total", "Bootstrap notify messages queued for distributed devices." },
	{ "bootstrapd_notify_published_total", "Bootstrap notify messages published (QoS 1)." },
	{ "bootstrapd_notify_sent_total", "Bootstrap notify messages acknowledged by their broker." },
	{ "bootstrapd_notify_acked_total", "Bootstrap notify messages answered by their device." },
	{ "bootstrapd_notify_retried_total", "Bootstrap notify messages published again after a loss." },
	{ "bootstrapd_http_connections_accepted_total", "Client connections accepted, both listeners." },
	{ "bootstrapd_http_connections_reclaimed_total", "Idle keep-alive connections closed to make room for new ones." },
	{ "bootstrapd_http_accept_errors_total", "accept() refusals for lack of descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM)." },
	{ "bootstrapd_http_request_timeouts_total", "Requests that did not arrive whole within limits.request_timeout_s (408)." },
	{ "bootstrapd_http_refused_total", "Requests refused before a route was known (malformed, too large, smuggling shapes)." },
	{ "bootstrapd_cache_requests_total", "Record cache lookups, by result." },
	{ NULL, NULL }, /* the miss series of the line above */
	{ "bootstrapd_cache_invalidations_total", "Keys Redis reported written, over every thread's tracking connection." },
	{ "bootstrapd_cache_flushes_total", "Times a thread's record cache was dropped whole (FLUSHALL, or tracking lost)." },
	{ "bootstrapd_config_reloads_total", "Configuration file re-reads (SIGHUP) whose admin tokens and log settings took effect." },
	{ "bootstrapd_config_reload_failures_total", "Configuration file re-reads rejected (the tokens and log settings in service stay)." },
	{ "bootstrapd_tls_reloads_total", "TLS certificate reloads (SIGHUP) that took effect, per listener." },
	{ "bootstrapd_tls_reload_failures_total", "TLS certificate reloads rejected (the old ones stay in service)." },
};

static const struct {
	const char *name;
	const char *help;
} metrics_gauge_info[METRICS_NGAUGES] = {
	{ "bootstrapd_cache_entries", "Records in the record cache, over every thread." },
	{ "bootstrapd_redis_connections_down", "Redis connections (one per thread and use) not ready for commands; "
	  "requests their thread serves get 503 until it is 0 again." },
	{ "bootstrapd_draining", "1 from SIGTERM/SIGINT on: /readyz answers 503 and the process is about to exit." },
};

static const char *const metrics_tls_reasons[METRICS_TLS_REASONS] = {
	"protocol_version", "no_shared_cipher", "no_shared_signature_algorithm", "not_tls", "client_alert",
	"proxy_header", "eof", "timeout", "other",
};
static atomic_uint_fast64_t metrics_tls[METRICS_TLS_REASONS];
static atomic_long metrics_open_conns;

void metrics_tls_failure(int reason)
{
	if (reason < 0 || reason >= METRICS_TLS_REASONS)
		reason = METRICS_TLS_REASONS - 1;
	atomic_fetch_add_explicit(&metrics_tls[reason], 1, memory_order_relaxed);
}

void metrics_connections(long delta)
{
	atomic_fetch_add_explicit(&metrics_open_conns, delta, memory_order_relaxed);
}

/* The last status slot counts everything not listed. */
static atomic_uint_fast64_t metrics_requests[METRICS_NROUTES][METRICS_NSTATUS + 1];
static atomic_uint_fast64_t metrics_hist[METRICS_NROUTES][METRICS_NBUCKETS + 1];
static atomic_uint_fast64_t metrics_sum_us[METRICS_NROUTES];
static atomic_uint_fast64_t metrics_counters[METRICS_NCOUNTERS];
static atomic_int_fast64_t metrics_gauges[METRICS_NGAUGES];

void metrics_request(enum metrics_route route, int status, double seconds)
{
	size_t s, b;

	for (s = 0; s < METRICS_NSTATUS && metrics_statuses[s] != status; s++)
		;
	for (b = 0; b < METRICS_NBUCKETS && seconds > metrics_buckets[b]; b++)
		;
	atomic_fetch_add_explicit(&metrics_requests[route][s], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&metrics_hist[route][b], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&metrics_sum_us[route], (uint_fast64_t)(seconds * 1e6),
		memory_order_relaxed);
}

void metrics_count(enum metrics_counter c)
{
	atomic_fetch_add_explicit(&metrics_counters[c], 1, memory_order_relaxed);
}

void metrics_redis_latency(double seconds)
{
	size_t b;

	for (b = 0; b < METRICS_NREDIS_BUCKETS && seconds > metrics_redis_buckets[b]; b++)
		;
	atomic_fetch_add_explicit(&metrics_redis_hist[b], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&metrics_redis_sum_us, (uint_fast64_t)(seconds * 1e6), memory_order_relaxed);
}

void metrics_started(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	metrics_start_time = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void metrics_gauge_add(enum metrics_gauge g, int64_t delta)
{
	atomic_fetch_add_explicit(&metrics_gauges[g], delta, memory_order_relaxed);
}

struct metrics_buf {
	char *s;
	size_t len, cap;
	int failed;
};

__attribute__((format(printf, 2, 3)))
static void metrics_printf(struct metrics_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->failed)
		return;
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->failed = 1;
			return;
		}
		if ((size_t)n < b->cap - b->len) {
			b->len += (size_t)n;
			return;
		}
		char *grown = realloc(b->s, b->cap * 2 + (size_t)n);
		if (grown == NULL) {
			b->failed = 1;
			return;
		}
		b->s = grown;
		b->cap = b->cap * 2 + (size_t)n;
	}
}

static uint64_t metrics_load(atomic_uint_fast64_t *v)
{
	return atomic_load_explicit(v, memory_order_relaxed);
}

char *metrics_render(void)
{
	struct metrics_buf b = { .s = malloc(8192), .cap = 8192 };

	if (b.s == NULL)
		return NULL;
	b.s[0] = '\0';
	metrics_printf(&b, "# HELP bootstrapd_http_requests_total HTTP requests answered, by route and status.\n"
		"# TYPE bootstrapd_http_requests_total counter\n");
	for (size_t r = 0; r < METRICS_NROUTES; r++) {
		for (size_t s = 0; s <= METRICS_NSTATUS; s++) {
			uint64_t v = metrics_load(&metrics_requests[r][s]);
			if (v == 0)
				continue;
			if (s < METRICS_NSTATUS)
				metrics_printf(&b, "bootstrapd_http_requests_total{route=\"%s\",status=\"%d\"} %llu\n",
					metrics_route_names[r], metrics_statuses[s], (unsigned long long)v);
			else
				metrics_printf(&b, "bootstrapd_http_requests_total{route=\"%s\",status=\"other\"} %llu\n",
					metrics_route_names[r], (unsigned long long)v);
		}
	}
	metrics_printf(&b, "# HELP bootstrapd_http_request_duration_seconds Time from request to answer.\n"
		"# TYPE bootstrapd_http_request_duration_seconds histogram\n");
	for (size_t r = 0; r < METRICS_NROUTES; r++) {
		uint64_t cum = 0;
		for (size_t i = 0; i <= METRICS_NBUCKETS; i++) {
			cum += metrics_load(&metrics_hist[r][i]);
			if (i < METRICS_NBUCKETS)
				metrics_printf(&b, "bootstrapd_http_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %llu\n",
					metrics_route_names[r], metrics_buckets[i], (unsigned long long)cum);
			else
				metrics_printf(&b, "bootstrapd_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n",
					metrics_route_names[r], (unsigned long long)cum);
		}
		metrics_printf(&b, "bootstrapd_http_request_duration_seconds_sum{route=\"%s\"} %.6f\n",
			metrics_route_names[r], (double)metrics_load(&metrics_sum_us[r]) / 1e6);
		metrics_printf(&b, "bootstrapd_http_request_duration_seconds_count{route=\"%s\"} %llu\n",
			metrics_route_names[r], (unsigned long long)cum);
	}
	for (size_t c = 0; c < METRICS_NCOUNTERS; c++) {
		if (c == METRICS_CACHE_HITS) {
			metrics_printf(&b, "# HELP %s %s\n# TYPE %s counter\n%s{result=\"hit\"} %llu\n"
				"%s{result=\"miss\"} %llu\n", metrics_counter_info[c].name, metrics_counter_info[c].help,
				metrics_counter_info[c].name, metrics_counter_info[c].name,
				(unsigned long long)metrics_load(&metrics_counters[c]), metrics_counter_info[c].name,
				(unsigned long long)metrics_load(&metrics_counters[METRICS_CACHE_MISSES]));
			continue;
		}
		if (c == METRICS_CACHE_MISSES)
			continue;
		metrics_printf(&b, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", metrics_counter_info[c].name,
			metrics_counter_info[c].help, metrics_counter_info[c].name, metrics_counter_info[c].name,
			(unsigned long long)metrics_load(&metrics_counters[c]));
	}
	metrics_printf(&b, "# HELP bootstrapd_tls_handshake_failures_total TLS handshakes that failed, by reason.\n"
		"# TYPE bootstrapd_tls_handshake_failures_total counter\n");
	for (size_t r = 0; r < METRICS_TLS_REASONS; r++)
		metrics_printf(&b, "bootstrapd_tls_handshake_failures_total{reason=\"%s\"} %llu\n", metrics_tls_reasons[r],
			(unsigned long long)metrics_load(&metrics_tls[r]));
	metrics_printf(&b, "# HELP bootstrapd_http_connections Client connections open, both listeners.\n"
		"# TYPE bootstrapd_http_connections gauge\nbootstrapd_http_connections %ld\n",
		atomic_load_explicit(&metrics_open_conns, memory_order_relaxed));
	metrics_printf(&b, "# HELP bootstrapd_redis_command_duration_seconds Redis commands, from sent to answered "
		"(or timed out).\n# TYPE bootstrapd_redis_command_duration_seconds histogram\n");
	{
		uint64_t cum = 0;
		for (size_t i = 0; i <= METRICS_NREDIS_BUCKETS; i++) {
			cum += metrics_load(&metrics_redis_hist[i]);
			if (i < METRICS_NREDIS_BUCKETS)
				metrics_printf(&b, "bootstrapd_redis_command_duration_seconds_bucket{le=\"%g\"} %llu\n",
					metrics_redis_buckets[i], (unsigned long long)cum);
			else
				metrics_printf(&b, "bootstrapd_redis_command_duration_seconds_bucket{le=\"+Inf\"} %llu\n",
					(unsigned long long)cum);
		}
		metrics_printf(&b, "bootstrapd_redis_command_duration_seconds_sum %.6f\n"
			"bootstrapd_redis_command_duration_seconds_count %llu\n",
			(double)metrics_load(&metrics_redis_sum_us) / 1e6, (unsigned long long)cum);
	}
	metrics_printf(&b, "# HELP bootstrapd_build_info The running build.\n# TYPE bootstrapd_build_info gauge\n"
		"bootstrapd_build_info{version=\"%s\"} 1\n", BOOTSTRAPD_VERSION);
	metrics_printf(&b, "# HELP process_start_time_seconds Start time of the process since the Unix epoch.\n"
		"# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds %.3f\n", metrics_start_time);
	for (size_t g = 0; g < METRICS_NGAUGES; g++)
		metrics_printf(&b, "# HELP %s %s\n# TYPE %s gauge\n%s %lld\n", metrics_gauge_info[g].name,
			metrics_gauge_info[g].help, metrics_gauge_info[g].name, metrics_gauge_info[g].name,
			(long long)atomic_load_explicit(&metrics_gauges[g], memory_order_relaxed));
	if (b.failed) {
		free(b.s);
		return NULL;
	}
	return b.s;
}

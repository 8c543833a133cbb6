#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <event2/event.h>
#include <yajl/yajl_gen.h>

enum log_level log_min_level = LOG_INFO;
static enum log_format log_format = LOG_FORMAT_TEXT;
static atomic_bool log_access_enabled;
static _Thread_local char log_rid[LOG_ID_MAX + 1];

static const char *const log_names[] = { "debug", "info", "warn", "error" };
static const char *const log_format_names[] = { "text", "json" };

int log_parse_level(const char *name, enum log_level *out)
{
	for (int i = 0; i <= LOG_ERROR; i++) {
		if (strcmp(name, log_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -1;
}

int log_parse_format(const char *name, enum log_format *out)
{
	for (int i = 0; i <= LOG_FORMAT_JSON; i++) {
		if (strcmp(name, log_format_names[i]) == 0) {
			*out = (enum log_format)i;
			return 0;
		}
	}
	return -1;
}

void log_set_level(enum log_level level)
{
	log_min_level = level;
}

void log_set_format(enum log_format format)
{
	log_format = format;
}

void log_configure(const char *level, const char *format, bool access)
{
	enum log_level l;
	enum log_format f;

	if (log_parse_level(level, &l) == 0)
		log_set_level(l);
	if (log_parse_format(format, &f) == 0)
		log_set_format(f);
	log_set_access(access);
}

void log_set_access(bool on)
{
	atomic_store_explicit(&log_access_enabled, on, memory_order_relaxed);
}

bool log_access_on(void)
{
	return atomic_load_explicit(&log_access_enabled, memory_order_relaxed);
}

void log_context_set(const char *id)
{
	size_t n = id ? strnlen(id, LOG_ID_MAX) : 0;

	memcpy(log_rid, id ? id : "", n);
	log_rid[n] = '\0';
}

const char *log_context(void)
{
	return log_rid;
}

void log_context_copy(char out[LOG_ID_MAX + 1])
{
	memcpy(out, log_rid, strlen(log_rid) + 1);
}

static void log_time(char *out, size_t len)
{
	struct timespec ts;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	snprintf(out, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
		tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
}

/* A message may carry bytes a client sent: in text, a control byte must not
 * start a line of its own; in JSON, yajl wants UTF-8. */
static void log_chomp(char *s)
{
	size_t n = strlen(s);

	while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r'))
		s[--n] = '\0';
}

static void log_clean(char *s, bool ascii)
{
	for (unsigned char *p = (unsigned char *)s; *p; p++)
		if (*p < 0x20 || *p == 0x7f || (ascii && *p >= 0x80))
			*p = '?';
}

struct log_field {
	const char *name;
	const char *text; /* NULL: the number */
	double number;
	int decimals;
};

static void log_gen_str(yajl_gen g, const char *s)
{
	yajl_gen_string(g, (const unsigned char *)s, strlen(s));
}

/* One JSON object a line, its string fields written by yajl. */
static void log_json(enum log_level level, const char *module, char *msg, const struct log_field *fields,
	size_t nfields)
{
	char ts[64], num[32];
	const unsigned char *buf;
	size_t len;
	yajl_gen g = yajl_gen_alloc(NULL);

	if (g == NULL)
		return;
	yajl_gen_config(g, yajl_gen_validate_utf8, 1);
	log_time(ts, sizeof(ts));
	yajl_gen_map_open(g);
	log_gen_str(g, "ts");
	log_gen_str(g, ts);
	log_gen_str(g, "level");
	log_gen_str(g, log_names[level]);
	log_gen_str(g, "module");
	log_gen_str(g, module);
	log_gen_str(g, "msg");
	if (yajl_gen_string(g, (const unsigned char *)msg, strlen(msg)) != yajl_gen_status_ok) {
		log_clean(msg, true);
		log_gen_str(g, msg);
	}
	for (size_t i = 0; i < nfields; i++) {
		log_gen_str(g, fields[i].name);
		if (fields[i].text != NULL) {
			log_gen_str(g, fields[i].text);
		} else {
			int n = snprintf(num, sizeof(num), "%.*f", fields[i].decimals, fields[i].number);
			yajl_gen_number(g, num, (size_t)n);
		}
	}
	if (log_rid[0] != '\0') {
		log_gen_str(g, "request_id");
		log_gen_str(g, log_rid);
	}
	yajl_gen_map_close(g);
	if (yajl_gen_get_buf(g, &buf, &len) == yajl_gen_status_ok)
		fprintf(stderr, "%.*s\n", (int)len, (const char *)buf);
	yajl_gen_free(g);
}

static void log_text(enum log_level level, const char *module, char *msg)
{
	char ts[64];

	log_time(ts, sizeof(ts));
	log_clean(msg, false);
	/* One write per line so lines from several threads do not interleave. */
	if (log_rid[0] != '\0')
		fprintf(stderr, "%s %s %s: %s request_id=%s\n", ts, log_names[level], module, msg, log_rid);
	else
		fprintf(stderr, "%s %s %s: %s\n", ts, log_names[level], module, msg);
}

void log_write(enum log_level level, const char *module, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_chomp(msg);
	if (log_format == LOG_FORMAT_JSON)
		log_json(level, module, msg, NULL, 0);
	else
		log_text(level, module, msg);
}

void log_access(const struct log_access *a)
{
	char msg[512], saved[LOG_ID_MAX + 1];

	log_context_copy(saved);
	log_context_set(a->request_id);
	if (log_format == LOG_FORMAT_JSON) {
		const struct log_field fields[] = {
			{ "method", a->method, 0, 0 },
			{ "route", a->route, 0, 0 },
			{ "status", NULL, a->status, 0 },
			{ "duration_ms", NULL, a->seconds * 1e3, 3 },
			{ "client", a->client, 0, 0 },
		};
		snprintf(msg, sizeof(msg), "%s %s %d", a->method, a->route, a->status);
		log_json(LOG_INFO, "access", msg, fields, sizeof(fields) / sizeof(fields[0]));
	} else {
		snprintf(msg, sizeof(msg), "%s %s %d %.3fms %s", a->method, a->route, a->status, a->seconds * 1e3,
			a->client);
		log_text(LOG_INFO, "access", msg);
	}
	log_context_set(saved);
}

static void log_libevent(int severity, const char *msg)
{
	enum log_level level = LOG_ERROR;

	if (severity == EVENT_LOG_DEBUG)
		level = LOG_DEBUG;
	else if (severity == EVENT_LOG_MSG)
		level = LOG_INFO;
	else if (severity == EVENT_LOG_WARN)
		level = LOG_WARN;
	log_at(level, "libevent", "%s", msg);
}

void log_capture_libevent(void)
{
	event_set_log_callback(log_libevent);
}

bool log_limit_pass(struct log_limit *l, unsigned long *held)
{
	struct timespec now;
	long long ms, next;

	clock_gettime(CLOCK_MONOTONIC, &now);
	ms = (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
	next = atomic_load(&l->next_ms);
	if (ms < next || !atomic_compare_exchange_strong(&l->next_ms, &next, ms + 1000)) {
		atomic_fetch_add(&l->held, 1);
		return false;
	}
	*held = atomic_exchange(&l->held, 0);
	return true;
}

#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <event2/event.h>

enum log_level log_min_level = LOG_INFO;

static const char *const log_names[] = { "debug", "info", "warn", "error" };

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

void log_set_level(enum log_level level)
{
	log_min_level = level;
}

void log_write(enum log_level level, const char *module, const char *fmt, ...)
{
	char line[1024];
	struct timespec ts;
	struct tm tm;
	va_list ap;
	int n;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s: ",
		tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		ts.tv_nsec / 1000000, log_names[level], module);
	if (n < 0 || (size_t)n >= sizeof(line))
		return;
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	/* One write per line so lines from several threads do not interleave. */
	fprintf(stderr, "%s\n", line);
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

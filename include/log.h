/* log: leveled lines on stderr, as text ("time level module: message
 * request_id=...") or as one JSON object a line (log.format). A thread's
 * current request (log_context_set) goes on every line it writes: http sets
 * it while a request is in its handler, store carries it to the request's
 * Redis replies. */
#ifndef BOOTSTRAPD_LOG_H
#define BOOTSTRAPD_LOG_H

#include <stdbool.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };
enum log_format { LOG_FORMAT_TEXT, LOG_FORMAT_JSON };

#define LOG_ID_MAX 64 /* a request id: at most 64 of A-Za-z0-9._- */

extern enum log_level log_min_level;

/* Parse "debug", "info", "warn", "error" / "text", "json". -1 for anything else. */
int log_parse_level(const char *name, enum log_level *out) __attribute__((warn_unused_result));
int log_parse_format(const char *name, enum log_format *out) __attribute__((warn_unused_result));
void log_set_level(enum log_level level);
void log_set_format(enum log_format format);
/* All three settings at once, as the configuration names them (log.level,
 * log.format, log.access); a name that does not parse leaves its setting. */
void log_configure(const char *level, const char *format, bool access);
/* Routes libevent's own messages through log_*. */
void log_capture_libevent(void);

/* The calling thread's current request id: ID is copied (at most LOG_ID_MAX
 * bytes); NULL or "" clears it. log_context returns "" when there is none;
 * the pointer is valid until the thread's next log_context_set. */
void log_context_set(const char *id);
const char *log_context(void);
/* The current id into OUT, for setting it again later (a Redis command's
 * reply comes in another loop turn). */
void log_context_copy(char out[LOG_ID_MAX + 1]);

void log_write(enum log_level level, const char *module, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* log.access: whether http writes an access line per answer (set at start
 * and on reload, read by every thread). */
void log_set_access(bool on);
bool log_access_on(void);

/* One access-log line (written whatever the level: log.access asked for it). */
struct log_access {
	const char *method, *route, *client, *request_id;
	int status;
	double seconds;
};
void log_access(const struct log_access *a);

/* The level is checked before the arguments are formatted. */
#define log_at(lvl, module, ...) \
	do { if ((lvl) >= log_min_level) log_write((lvl), (module), __VA_ARGS__); } while (0)
#define log_debug(module, ...) log_at(LOG_DEBUG, module, __VA_ARGS__)
#define log_info(module, ...) log_at(LOG_INFO, module, __VA_ARGS__)
#define log_warn(module, ...) log_at(LOG_WARN, module, __VA_ARGS__)
#define log_error(module, ...) log_at(LOG_ERROR, module, __VA_ARGS__)

/* At most one line a second for one recurring event (accept failures, 503s
 * during an outage): log_limit_pass says whether to write it now, and how
 * many were held back since the last one. Thread-safe; zero-initialised. */
struct log_limit {
	_Atomic long long next_ms;
	_Atomic unsigned long held;
};
bool log_limit_pass(struct log_limit *l, unsigned long *held);

#endif

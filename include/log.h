/* log: leveled log lines on stderr, "time level module: message". */
#ifndef BOOTSTRAPD_LOG_H
#define BOOTSTRAPD_LOG_H

#include <stdbool.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

extern enum log_level log_min_level;

/* Parses "debug", "info", "warn", "error". Returns -1 for anything else. */
int log_parse_level(const char *name, enum log_level *out) __attribute__((warn_unused_result));
void log_set_level(enum log_level level);
/* Routes libevent's own messages through log_*. */
void log_capture_libevent(void);

void log_write(enum log_level level, const char *module, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* The level is checked before the arguments are formatted. */
#define log_at(lvl, module, ...) \
	do { if ((lvl) >= log_min_level) log_write((lvl), (module), __VA_ARGS__); } while (0)
#define log_debug(module, ...) log_at(LOG_DEBUG, module, __VA_ARGS__)
#define log_info(module, ...) log_at(LOG_INFO, module, __VA_ARGS__)
#define log_warn(module, ...) log_at(LOG_WARN, module, __VA_ARGS__)
#define log_error(module, ...) log_at(LOG_ERROR, module, __VA_ARGS__)

#endif

/* At most one line a second for one recurring event (accept failures, 503s
 * during an outage): log_limit_pass says whether to write it now, and how
 * many were held back since the last one. Thread-safe; zero-initialised. */
struct log_limit {
	_Atomic long long next_ms;
	_Atomic unsigned long held;
};
bool log_limit_pass(struct log_limit *l, unsigned long *held);

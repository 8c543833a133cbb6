/* store: one asynchronous Redis connection per event loop (hiredis with the
 * libevent adapter). Every command is bounded by redis.timeout_ms; a broken or
 * hung connection is dropped and made again with a backoff. */
#ifndef BOOTSTRAPD_STORE_H
#define BOOTSTRAPD_STORE_H

#include <stddef.h>
#include <stdbool.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>

struct config;
struct store;

/* Called exactly once per command: REPLY is the server's answer (it may be an
 * error reply), or NULL when Redis is unreachable, the command timed out or
 * the store is being freed. REPLY is borrowed for the call only. */
typedef void (*store_reply_fn)(redisReply *reply, void *arg);

/* Makes the store and starts connecting. Returns NULL when out of memory or
 * the URL is unusable (the config checked it already). */
struct store *store_new(struct event_base *base, const struct config *cfg);
/* Pending callbacks are called with NULL before this returns. */
void store_free(struct store *st);

bool store_connected(const struct store *st);

/* Sends a command. Returns 0 when queued (FN will be called), or -1 when Redis
 * is not connected (FN is not called). ARGVLEN may be NULL for C strings. */
int store_command(struct store *st, store_reply_fn fn, void *arg, int argc, const char **argv,
	const size_t *argvlen) __attribute__((warn_unused_result));

/* Same, bounded by TIMEOUT_MS instead of redis.timeout_ms (a request's time
 * left, or a longer bound for large admin writes). -1 when TIMEOUT_MS <= 0. */
int store_command_timed(struct store *st, int timeout_ms, store_reply_fn fn, void *arg, int argc,
	const char **argv, const size_t *argvlen) __attribute__((warn_unused_result));

/* Sends a command whose answer nobody waits for (best-effort writes). */
void store_command_noreply(struct store *st, int argc, const char **argv, const size_t *argvlen);

#endif

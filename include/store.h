/* store: one asynchronous Redis connection per event loop (hiredis with the
 * libevent adapter). Every command is bounded by redis.timeout_ms; a broken or
 * hung connection is dropped and made again with a backoff. A store may also
 * keep a record cache exact with Redis client tracking: a second connection
 * on the same loop receives the invalidations (docs/architecture.md). */
#ifndef BOOTSTRAPD_STORE_H
#define BOOTSTRAPD_STORE_H

#include <stddef.h>
#include <stdbool.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>

struct cache;
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

/* A Redis Cluster: a script may only touch keys of one slot (one hash tag),
 * and commands on different slots may run on different nodes. */
bool store_clustered(const struct store *st);

/* Sends a command. Returns 0 when queued (FN will be called), or -1 when Redis
 * is not connected (FN is not called). ARGVLEN may be NULL for C strings. */
int store_command(struct store *st, store_reply_fn fn, void *arg, int argc, const char **argv,
	const size_t *argvlen) __attribute__((warn_unused_result));

/* Same, bounded by TIMEOUT_MS instead of redis.timeout_ms (a request's time
 * left, or a longer bound for large admin writes). -1 when TIMEOUT_MS <= 0. */
int store_command_timed(struct store *st, int timeout_ms, store_reply_fn fn, void *arg, int argc,
	const char **argv, const size_t *argvlen) __attribute__((warn_unused_result));

/* The same for a write that must be durable on a durable store (see
 * store_durable_replies); otherwise exactly store_command(_timed). */
int store_write(struct store *st, store_reply_fn fn, void *arg, int argc, const char **argv,
	const size_t *argvlen) __attribute__((warn_unused_result));
int store_write_timed(struct store *st, int timeout_ms, store_reply_fn fn, void *arg, int argc,
	const char **argv, const size_t *argvlen) __attribute__((warn_unused_result));

/* Sends N commands (ARGCS[i], ARGVS[i], lengths by strlen) at once, each
 * bounded by TIMEOUT_MS, and calls FN once with all their replies: an
 * array reply of N elements in the order sent (error replies included),
 * or NULL when any of them got none. The commands may run on different
 * servers (a Redis Cluster): nothing orders them but this. The array is a
 * copy: FN may take its elements (setting them NULL). Returns 0 when FN
 * will be called, -1 when none was sent (FN is not called). */
int store_gather(struct store *st, int timeout_ms, size_t n, const int *argcs, const char *const *const *argvs,
	store_reply_fn fn, void *arg) __attribute__((warn_unused_result));
/* The same for writes (sent as store_write_timed sends, so durable where
 * the store is), with argument lengths (LENS NULL, or LENS[i][j] where 0
 * means strlen) for binary arguments. */
int store_gather_write(struct store *st, int timeout_ms, size_t n, const int *argcs,
	const char *const *const *argvs, const size_t *const *lens, store_reply_fn fn, void *arg)
	__attribute__((warn_unused_result));

/* Sends a command whose answer nobody waits for (best-effort writes). */
void store_command_noreply(struct store *st, int argc, const char **argv, const size_t *argvlen);

/* From now on each reply reaches its callback only once a PING sent when it
 * arrived has been answered: by then Redis has written out everything of the
 * event-loop pass that produced the reply, the invalidations of the writes
 * it saw included (Redis sends a script's answer before the invalidations
 * the script caused). Whoever learns of a write through this store's replies
 * learns it after every tracking connection was told. One more round trip a
 * command: for the admin connection. */
void store_fence_replies(struct store *st);

/* With redis.wait_replicas N > 0, each reply also waits for `WAIT N` (half
 * of redis.timeout_ms at most): a write is reported done only once N
 * replicas have it, so a failover cannot take back what was acknowledged.
 * Fewer in time: the caller gets NULL (outcome unknown). Only commands sent
 * with store_write(_timed) wait: reads never need a replica. With N = 0
 * this does nothing. For the admin and worker connections. */
void store_durable_replies(struct store *st);

/* Gives the store a record cache of ENTRIES (> 0) entries, allocated now, and
 * starts its tracking connection. Call once, right after store_new(). -1 when
 * out of memory (store_free() still frees everything). */
int store_cache_enable(struct store *st, size_t entries) __attribute__((warn_unused_result));

/* The record cache (owned by the store), or NULL when there is none or Redis
 * is not tracking this connection's reads right now: answer from Redis then.
 * The first call in each event-loop turn first reads the invalidations
 * already received. To fill it: take cache_token() when the read is sent, and
 * in its reply callback call store_cache() again and cache_put() with that
 * token only if it is not NULL. Hits and misses are the caller's to count. */
struct cache *store_cache(struct store *st);

#endif

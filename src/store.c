#include "store.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libevent.h>

#include "cache.h"
#include "cluster.h"
#include "config.h"
#include "log.h"
#include "metrics.h"
#include "netaddr.h"
#include "schema.h"
#include "sentinel.h"

enum store_state { STORE_DOWN, STORE_CONNECTING, STORE_UP };
enum store_track_state { TRACK_DOWN, TRACK_CONNECTING, TRACK_SUBSCRIBED };

#define STORE_INVALIDATE_CHANNEL "__redis__:invalidate"
/* How often a tracked store proves that its tracking connection delivers. */
#define STORE_TICK_MS 100
/* Reads (16 KiB each) of the tracking socket per sync; past that, flush. */
#define STORE_SYNC_READS_MAX 256

struct store {
	struct event_base *base;
	const struct config *cfg;
	redisAsyncContext *ac;
	enum store_state state;
	struct event *retry;     /* reconnect timer */
	struct event *reset;     /* drops a hung connection outside hiredis callbacks */
	int backoff_ms;
	bool ever_connected;
	bool was_down_logged;
	bool freeing;
	bool tcp_up;      /* the connect callback said yes */
	int handshake;    /* AUTH/SELECT answers still to come */
	bool needs_handshake;
	bool fenced;      /* replies held until a PING sent after them is answered */
	bool durable;     /* ... until a WAIT for redis.wait_replicas replicas is */

	/* Under Redis Sentinel (sn not NULL): the master as last named, NULL
	 * until a sentinel names one; gen counts its changes, and each
	 * connection remembers the gen it was made to. */
	struct sentinel *sn;
	char *host;
	int port;
	unsigned gen, dgen, tgen;

	/* Under Redis Cluster: the store the caller holds (map not NULL) has no
	 * connection of its own but a child store per master (nodes[i] for the
	 * map's node i) and per seed node; each child keeps its connections as
	 * any store does, host and port fixed, and points back (parent). */
	struct store *parent;
	struct cluster_map *map;
	struct store **nodes, **seeds, **graves, **extras;
	size_t nnodes, nseeds, ngraves, nextras;
	struct event *refresh;  /* asks for the slot map again */
	struct event *reap;     /* frees retired children, outside their callbacks */
	bool refreshing;        /* a CLUSTER SLOTS is out */
	bool map_logged;
	struct timespec refreshed;

	/* The record cache (NULL: none) and what keeps it exact. A cluster's
	 * children share their parent's. */
	struct cache *cache;
	redisAsyncContext *tac; /* the tracking connection, subscribed to the invalidations */
	enum store_track_state tstate;
	long long tid;          /* its CLIENT ID: the REDIRECT target */
	int tsubs;              /* its subscriptions Redis confirmed (of 2) */
	char channel[40];       /* its own channel, for the liveness round trip */
	struct event *tretry, *treset, *tick;
	int tbackoff_ms;
	bool treset_asked;
	bool tracking_sent;     /* CLIENT TRACKING on REDIRECT tracking_for sent on st->ac */
	long long tracking_for;
	int tracking_inflight;  /* of those, answers still to come on st->ac */
	bool tracking_refused;  /* by this pair of connections: not asked again */
	bool tracked;           /* Redis said OK: the cache may answer */
	struct timeval synced;  /* libevent's cached time at the last sync */
	uint64_t ping_seq;
	long long ping_tid;
	bool ping_out;
	struct timespec ping_at;
	int64_t reported;       /* entries last added to the gauge */
};

/* One issued command. It lives until hiredis hands its reply (or NULL) back,
 * which it always does once; the timer may answer the caller before that. */
struct store_call {
	struct store *st;
	store_reply_fn fn;
	void *arg;
	struct event *timer;
	bool answered;
	redisReply *held; /* a fenced store's reply, waiting for its PING */
	bool write;       /* a durable store's write: held for WAIT */
	struct timespec sent;
	char rid[LOG_ID_MAX + 1]; /* the request it works for: its reply's log lines carry it */
};

/* Calls FN with CALL's request as the thread's log context, then puts the
 * context back (a reply arrives in another request's loop turn). */
static void store_call_answer(struct store_call *call, redisReply *reply)
{
	char saved[LOG_ID_MAX + 1];

	call->answered = true;
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	metrics_redis_latency((double)(now.tv_sec - call->sent.tv_sec) + (double)(now.tv_nsec - call->sent.tv_nsec) / 1e9);
	log_context_copy(saved);
	log_context_set(call->rid);
	call->fn(reply, call->arg);
	log_context_set(saved);
}

static void store_connect(struct store *st);
static void store_track_maybe(struct store *st);
static void store_track_reset_later(struct store *st, const char *why);
static bool store_is(const redisReply *r, const char *s);

static void store_cluster_refresh_soon(struct store *p);

static void store_report(struct store *st)
{
	int64_t n;

	/* A cluster's children share one cache: its parent reports it. */
	if (st->parent != NULL)
		st = st->parent;
	n = st->cache ? (int64_t)cache_count(st->cache) : 0;

	if (n != st->reported) {
		metrics_gauge_add(METRICS_CACHE_ENTRIES, n - st->reported);
		st->reported = n;
	}
}

/* Invalidations may be missed from now on: forget everything and answer from
 * Redis only, until tracking is confirmed again on the connections then up. */
static void store_untrack(struct store *st)
{
	if (st->cache == NULL)
		return;
	if (st->tracked) {
		cache_flush(st->cache);
		metrics_count(METRICS_CACHE_FLUSHES);
		store_report(st);
		log_debug("store", "record cache dropped; answering from Redis until tracking is back");
	}
	st->tracked = false;
	st->tracking_sent = false;
	st->ping_out = false;
}

/* Every change of a data connection's state goes through here, so the gauge
 * of connections not ready for commands stays exact. */
static void store_set_state(struct store *st, enum store_state to)
{
	if ((st->state == STORE_UP) != (to == STORE_UP))
		metrics_gauge_add(METRICS_REDIS_DOWN, to == STORE_UP ? -1 : 1);
	/* A node lost: its slots may have moved (a failover). */
	if (st->parent != NULL && st->state != STORE_DOWN && to == STORE_DOWN && !st->freeing)
		store_cluster_refresh_soon(st->parent);
	st->state = to;
}

/* The master is to be asked for again before the next connection. */
static void store_forget_master(struct store *st)
{
	if (st->sn == NULL || st->host == NULL)
		return;
	free(st->host);
	st->host = NULL;
	st->gen++;
}

/* Arms TIMER (unless armed) after *BACKOFF_MS, which then doubles up to 1 s. */
static void store_backoff(struct store *st, struct event *timer, int *backoff_ms)
{
	struct timeval tv = { *backoff_ms / 1000, (*backoff_ms % 1000) * 1000 };

	if (st->freeing || evtimer_pending(timer, NULL))
		return;
	evtimer_add(timer, &tv);
	*backoff_ms = *backoff_ms * 2 > 1000 ? 1000 : *backoff_ms * 2;
}

static void store_schedule_retry(struct store *st)
{
	store_backoff(st, st->retry, &st->backoff_ms);
}

static void store_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	store_connect(arg);
}

/* Connected, and AUTH/SELECT (if any) accepted: commands may flow. */
static void store_up(struct store *st)
{
	if (st->ever_connected)
		metrics_count(METRICS_REDIS_RECONNECTS);
	if (st->was_down_logged || st->ever_connected)
		log_info("store", "connected to Redis");
	st->ever_connected = true;
	st->was_down_logged = false;
	store_set_state(st, STORE_UP);
	st->backoff_ms = 50;
	evtimer_del(st->reset);
	store_track_maybe(st);
}

/* AUTH or SELECT answered. A refusal drops the connection: commands sent to
 * the wrong database or unauthenticated must never be answered from. */
static void store_handshake(struct store *st, redisReply *r, const char *what)
{
	if (st->freeing || st->ac == NULL || st->handshake < 0)
		return;
	if (r == NULL || r->type == REDIS_REPLY_ERROR) {
		log_error("store", "Redis refused %s: %s", what, r ? r->str : "no answer");
		st->handshake = -1;
		event_active(st->reset, EV_TIMEOUT, 0);
		return;
	}
	if (--st->handshake == 0 && st->tcp_up)
		store_up(st);
}

static void store_auth_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
	(void)ac;
	store_handshake(privdata, reply, "AUTH");
}

static void store_select_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
	(void)ac;
	store_handshake(privdata, reply, "SELECT");
}

static void store_on_connect(const redisAsyncContext *ac, int status)
{
	struct store *st = ac->data;

	if (status != REDIS_OK) {
		if (!st->was_down_logged)
			log_warn("store", "cannot connect to Redis: %s", ac->errstr);
		st->was_down_logged = true;
		store_forget_master(st);
		/* hiredis frees the context after this callback. */
		st->ac = NULL;
		store_set_state(st, STORE_DOWN);
		store_schedule_retry(st);
		return;
	}
	st->tcp_up = true;
	if (st->handshake == 0)
		store_up(st);
}

static void store_on_disconnect(const redisAsyncContext *ac, int status)
{
	struct store *st = ac->data;

	st->ac = NULL;
	store_set_state(st, STORE_DOWN);
	store_untrack(st);
	if (st->freeing)
		return;
	if (status != REDIS_OK)
		log_warn("store", "lost the Redis connection: %s", ac->errstr);
	st->was_down_logged = true;
	store_forget_master(st);
	store_schedule_retry(st);
}

static void store_drop(struct store *st)
{
	redisAsyncContext *ac = st->ac;

	if (ac == NULL)
		return;
	st->ac = NULL;
	store_set_state(st, STORE_DOWN);
	store_untrack(st);
	/* Calls every pending callback with NULL, then the disconnect callback. */
	redisAsyncFree(ac);
}

static void store_reset_cb(evutil_socket_t fd, short what, void *arg)
{
	struct store *st = arg;

	(void)fd;
	(void)what;
	if (st->ac == NULL)
		return;
	if (st->handshake >= 0)
		log_warn("store", "Redis did not answer in time; reconnecting");
	store_drop(st);
	store_forget_master(st);
	if (!st->freeing)
		store_schedule_retry(st);
}

/* The master a sentinel named (HOST NULL: none did). */
static void store_master_found(void *arg, const char *host, int port)
{
	struct store *st = arg;

	/* A late answer while a connection is up or on its way (a switch made
	 * it): the follower and the 5 s recheck see to changes. */
	if (st->freeing || st->ac != NULL)
		return;
	if (host == NULL) {
		st->was_down_logged = true;
		store_schedule_retry(st);
		return;
	}
	if (st->host == NULL || strcmp(st->host, host) != 0 || st->port != port) {
		char *h = strdup(host);
		if (h == NULL) {
			store_schedule_retry(st);
			return;
		}
		free(st->host);
		st->host = h;
		st->port = port;
		st->gen++;
	}
	store_connect(st);
}

/* A sentinel announced a new master, or named one after (re)subscribing:
 * connections elsewhere are dropped and made again to it. */
static void store_master_switched(void *arg, const char *host, int port)
{
	struct store *st = arg;

	if (st->freeing || (st->host != NULL && strcmp(st->host, host) == 0 && st->port == port))
		return;
	if (st->ac != NULL || st->host != NULL)
		log_info("store", "following the Redis master to %s:%d", host, port);
	store_drop(st);
	if (st->tac != NULL)
		store_track_reset_later(st, "the Redis master moved");
	evtimer_del(st->retry);
	st->backoff_ms = 50;
	store_master_found(st, host, port);
}

/* ROLE, the last step of a connection made under Sentinel: only the master
 * is written to. A demoted master (a replica now) is left at once. */
static void store_role_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct store *st = privdata;
	redisReply *r = reply;

	(void)ac;
	if (st->freeing || st->ac == NULL || st->handshake < 0 || r == NULL)
		return;
	if (r->type == REDIS_REPLY_ARRAY && r->elements > 0 && store_is(r->element[0], "master")) {
		store_handshake(st, r, "ROLE");
		return;
	}
	log_warn("store", "Redis at %s:%d is not the master (%s); asking the Sentinels again",
		st->host ? st->host : "?", st->port,
		r->type == REDIS_REPLY_ERROR ? r->str
		: r->type == REDIS_REPLY_ARRAY && r->elements > 0 && r->element[0]->type == REDIS_REPLY_STRING
			? r->element[0]->str : "unexpected ROLE answer");
	store_forget_master(st);
	st->handshake = -1;
	event_active(st->reset, EV_TIMEOUT, 0);
}

static void store_connect(struct store *st)
{
	const struct config *cfg = st->cfg;
	struct timeval tv = { cfg->redis_timeout_ms / 1000, (cfg->redis_timeout_ms % 1000) * 1000 };
	redisAsyncContext *ac;

	if (st->freeing || st->ac != NULL)
		return;
	if (st->sn != NULL && st->host == NULL) {
		/* A question already out answers the follower; ask again later. */
		if (sentinel_ask(st->sn, store_master_found, st) < 0)
			store_schedule_retry(st);
		return;
	}
	if (st->host != NULL)
		ac = redisAsyncConnect(st->host, st->port);
	else if (cfg->redis_unix && cfg->redis_unix[0])
		ac = redisAsyncConnectUnix(cfg->redis_unix);
	else
		ac = redisAsyncConnect(cfg->redis_host, cfg->redis_port);
	if (ac == NULL || ac->err) {
		if (!st->was_down_logged)
			log_warn("store", "cannot connect to Redis: %s", ac ? ac->errstr : "out of memory");
		st->was_down_logged = true;
		if (ac)
			redisAsyncFree(ac);
		store_schedule_retry(st);
		return;
	}
	ac->data = st;
	if (redisLibeventAttach(ac, st->base) != REDIS_OK) {
		redisAsyncFree(ac);
		store_schedule_retry(st);
		return;
	}
	redisAsyncSetConnectCallback(ac, store_on_connect);
	redisAsyncSetDisconnectCallback(ac, store_on_disconnect);
	st->ac = ac;
	store_set_state(st, STORE_CONNECTING);
	st->tcp_up = false;
	st->handshake = 0;
	st->tracking_refused = false;
	st->tracking_inflight = 0;
	/* AUTH and SELECT go first; nothing else is sent until both said OK. */
	if (cfg->redis_password && cfg->redis_password[0]) {
		bool user = cfg->redis_user && cfg->redis_user[0];
		const char *argv[] = { "AUTH", user ? cfg->redis_user : cfg->redis_password, cfg->redis_password };
		st->handshake++;
		redisAsyncCommandArgv(ac, store_auth_reply, st, user ? 3 : 2, argv, NULL);
	}
	if (cfg->redis_db != 0) {
		char db[16];
		snprintf(db, sizeof(db), "%d", cfg->redis_db);
		const char *argv[] = { "SELECT", db };
		st->handshake++;
		redisAsyncCommandArgv(ac, store_select_reply, st, 2, argv, NULL);
	}
	/* Named, so that an operator's CLIENT LIST tells ours apart. */
	redisAsyncCommand(ac, NULL, NULL, "CLIENT SETNAME bootstrapd");
	if (st->sn != NULL) {
		const char *argv[] = { "ROLE" };
		st->handshake++;
		st->dgen = st->gen;
		redisAsyncCommandArgv(ac, store_role_reply, st, 1, argv, NULL);
	}
	st->needs_handshake = st->handshake > 0;
	/* A connect that hangs is dropped like a hung command. */
	evtimer_add(st->reset, &tv);
}

/* The tracking connection. It runs on the same loop as the data connection:
 * CLIENT ID, then SUBSCRIBE to Redis' invalidation channel and to a channel
 * of its own; the data connection then sends CLIENT TRACKING on REDIRECT
 * <that id>, and the cache answers once Redis said OK. Whenever either
 * connection breaks, or anything looks wrong, the cache is dropped whole. */

static void store_track_connect(struct store *st);

static void store_track_schedule(struct store *st)
{
	store_backoff(st, st->tretry, &st->tbackoff_ms);
}

static void store_track_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	store_track_connect(arg);
}

static void store_track_drop(struct store *st)
{
	redisAsyncContext *ac = st->tac;

	if (st->treset)
		evtimer_del(st->treset);
	st->tac = NULL;
	st->tstate = TRACK_DOWN;
	store_untrack(st);
	/* Its callbacks see ac != st->tac and do nothing. */
	if (ac)
		redisAsyncFree(ac);
}

/* Stops using the cache now and makes the tracking connection again on the
 * next loop turn (never inside its own callbacks). */
static void store_track_reset_later(struct store *st, const char *why)
{
	if (st->tac == NULL || st->treset_asked)
		return;
	log_warn("store", "%s; dropping the record cache and tracking again", why);
	st->treset_asked = true;
	store_untrack(st);
	event_active(st->treset, EV_TIMEOUT, 0);
}

static void store_track_reset_cb(evutil_socket_t fd, short what, void *arg)
{
	struct store *st = arg;

	(void)fd;
	(void)what;
	if (st->tac == NULL)
		return;
	if (!st->treset_asked)
		log_warn("store", "the Redis tracking connection was not set up in time; retrying");
	store_track_drop(st);
	store_track_schedule(st);
}

static bool store_is(const redisReply *r, const char *s)
{
	size_t len = strlen(s);

	return r->type == REDIS_REPLY_STRING && r->len == len && memcmp(r->str, s, len) == 0;
}

static void store_tracking_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct store *st = privdata;
	redisReply *r = reply;

	if (st->freeing || ac != st->ac)
		return;
	/* Answers come in order: only the last one sent counts, and only while
	 * the tracking connection it names is still the one subscribed. */
	if (--st->tracking_inflight > 0 || r == NULL || !st->tracking_sent || st->tstate != TRACK_SUBSCRIBED ||
	    st->tracking_for != st->tid)
		return;
	if (r->type == REDIS_REPLY_STATUS && strcmp(r->str, "OK") == 0) {
		st->tracked = true;
		st->ping_out = false;
		st->synced = (struct timeval){ 0, 0 };
		log_debug("store", "record cache in use: Redis tracks reads for client %lld", st->tid);
		return;
	}
	log_warn("store", "Redis refused CLIENT TRACKING (%s); no record cache until it reconnects",
		r->type == REDIS_REPLY_ERROR ? r->str : "unexpected answer");
	st->tracking_refused = true;
}

/* Both connections up and nothing asked yet: ask Redis to track. */
static void store_track_maybe(struct store *st)
{
	char id[24];

	if (st->cache == NULL || st->freeing || st->ac == NULL || st->state != STORE_UP ||
	    st->tstate != TRACK_SUBSCRIBED || st->tracking_sent || st->tracking_refused)
		return;
	/* Client ids are per server: both connections must be to the same one. */
	if (st->sn != NULL && (st->tgen != st->dgen || st->dgen != st->gen)) {
		store_track_reset_later(st, "the Redis tracking connection is not on the current master");
		return;
	}
	snprintf(id, sizeof(id), "%lld", st->tid);
	const char *argv[] = { "CLIENT", "TRACKING", "on", "REDIRECT", id };
	if (redisAsyncCommandArgv(st->ac, store_tracking_reply, st, 5, argv, NULL) != REDIS_OK)
		return;
	st->tracking_inflight++;
	st->tracking_sent = true;
	st->tracking_for = st->tid;
}

static void store_track_invalidate(struct store *st, const redisReply *keys)
{
	if (keys->type == REDIS_REPLY_NIL) {
		/* FLUSHALL or FLUSHDB: Redis forgot what it tracked, and so do we. */
		cache_flush(st->cache);
		metrics_count(METRICS_CACHE_FLUSHES);
	} else {
		for (size_t i = 0; i < keys->elements; i++) {
			cache_invalidate(st->cache, keys->element[i]->str, keys->element[i]->len);
			metrics_count(METRICS_CACHE_INVALIDATIONS);
		}
	}
	store_report(st);
}

/* Every message of the subscribed connection: confirmations, invalidations
 * and the liveness round trip. Anything else means it can no longer be
 * trusted to have told us everything. */
static void store_track_message(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct store *st = privdata;
	redisReply *r = reply;
	char seq[24];

	if (ac != st->tac || r == NULL || st->treset_asked)
		return;
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 3)
		goto odd;
	if (store_is(r->element[0], "message") && store_is(r->element[1], STORE_INVALIDATE_CHANNEL)) {
		const redisReply *keys = r->element[2];
		if (keys->type != REDIS_REPLY_NIL && keys->type != REDIS_REPLY_ARRAY)
			goto odd;
		for (size_t i = 0; keys->type == REDIS_REPLY_ARRAY && i < keys->elements; i++)
			if (keys->element[i]->type != REDIS_REPLY_STRING)
				goto odd;
		store_track_invalidate(st, keys);
		return;
	}
	if (store_is(r->element[0], "message") && store_is(r->element[1], st->channel)) {
		snprintf(seq, sizeof(seq), "%llu", (unsigned long long)st->ping_seq);
		if (st->ping_out && store_is(r->element[2], seq))
			st->ping_out = false;
		return;
	}
	if (store_is(r->element[0], "subscribe") &&
	    (store_is(r->element[1], STORE_INVALIDATE_CHANNEL) || store_is(r->element[1], st->channel))) {
		if (++st->tsubs == 2) {
			st->tstate = TRACK_SUBSCRIBED;
			st->tbackoff_ms = 50;
			evtimer_del(st->treset);
			store_track_maybe(st);
		}
		return;
	}
odd:
	store_track_reset_later(st, "unexpected message on the Redis tracking connection");
}

static void store_track_id_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct store *st = privdata;
	redisReply *r = reply;

	if (ac != st->tac || r == NULL || st->treset_asked)
		return;
	if (r->type != REDIS_REPLY_INTEGER) {
		store_track_reset_later(st, r->type == REDIS_REPLY_ERROR ? r->str : "CLIENT ID failed");
		return;
	}
	st->tid = r->integer;
	snprintf(st->channel, sizeof(st->channel), SCHEMA_SYNC_CHANNEL_PREFIX "%lld", st->tid);
	const char *argv[] = { "SUBSCRIBE", STORE_INVALIDATE_CHANNEL, st->channel };
	if (redisAsyncCommandArgv(ac, store_track_message, st, 3, argv, NULL) != REDIS_OK)
		store_track_reset_later(st, "cannot subscribe on the Redis tracking connection");
}

static void store_track_auth_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct store *st = privdata;
	redisReply *r = reply;

	if (ac == st->tac && r != NULL && r->type == REDIS_REPLY_ERROR)
		store_track_reset_later(st, "Redis refused AUTH on the tracking connection");
}

static void store_track_on_connect(const redisAsyncContext *ac, int status)
{
	struct store *st = ac->data;

	if (ac != st->tac || status == REDIS_OK)
		return;
	/* hiredis frees the context after this callback. */
	st->tac = NULL;
	st->tstate = TRACK_DOWN;
	evtimer_del(st->treset);
	store_track_schedule(st);
}

static void store_track_on_disconnect(const redisAsyncContext *ac, int status)
{
	struct store *st = ac->data;
	bool was_up = st->tstate == TRACK_SUBSCRIBED;

	if (ac != st->tac)
		return;
	st->tac = NULL;
	st->tstate = TRACK_DOWN;
	evtimer_del(st->treset);
	store_untrack(st);
	if (st->freeing)
		return;
	if (was_up)
		log_warn("store", "lost the Redis tracking connection (%s); record cache dropped",
			status == REDIS_OK ? "closed" : ac->errstr);
	store_track_schedule(st);
}

static void store_track_connect(struct store *st)
{
	const struct config *cfg = st->cfg;
	struct timeval tv = { cfg->redis_timeout_ms / 1000, (cfg->redis_timeout_ms % 1000) * 1000 };
	redisAsyncContext *ac;

	if (st->freeing || st->tac != NULL)
		return;
	if (st->sn != NULL && st->host == NULL) {
		store_track_schedule(st); /* once a sentinel named the master */
		return;
	}
	st->tgen = st->gen;
	if (st->host != NULL)
		ac = redisAsyncConnect(st->host, st->port);
	else if (cfg->redis_unix && cfg->redis_unix[0])
		ac = redisAsyncConnectUnix(cfg->redis_unix);
	else
		ac = redisAsyncConnect(cfg->redis_host, cfg->redis_port);
	if (ac == NULL || ac->err) {
		if (ac)
			redisAsyncFree(ac);
		store_track_schedule(st);
		return;
	}
	ac->data = st;
	if (redisLibeventAttach(ac, st->base) != REDIS_OK) {
		redisAsyncFree(ac);
		store_track_schedule(st);
		return;
	}
	/* Invalidations are read before anything else of the same loop turn. */
	event_priority_set(((redisLibeventEvents *)ac->ev.data)->rev, 0);
	redisAsyncSetConnectCallback(ac, store_track_on_connect);
	redisAsyncSetDisconnectCallback(ac, store_track_on_disconnect);
	st->tac = ac;
	st->tstate = TRACK_CONNECTING;
	st->tsubs = 0;
	st->tid = 0;
	st->channel[0] = '\0';
	st->treset_asked = false;
	st->tracking_refused = false;
	if (cfg->redis_password && cfg->redis_password[0]) {
		bool user = cfg->redis_user && cfg->redis_user[0];
		const char *argv[] = { "AUTH", user ? cfg->redis_user : cfg->redis_password, cfg->redis_password };
		redisAsyncCommandArgv(ac, store_track_auth_reply, st, user ? 3 : 2, argv, NULL);
	}
	redisAsyncCommand(ac, NULL, NULL, "CLIENT SETNAME bootstrapd-tracking");
	const char *argv[] = { "CLIENT", "ID" };
	redisAsyncCommandArgv(ac, store_track_id_reply, st, 2, argv, NULL);
	/* Not subscribed by then: made again (the reset timer doubles as the deadline). */
	evtimer_add(st->treset, &tv);
}

static void store_ping_reply(redisReply *reply, void *arg)
{
	struct store *st = arg;

	/* NULL: the data connection failed, and is dropped and made again. */
	if (st->freeing || reply == NULL || !st->tracked || st->ping_tid != st->tid)
		return;
	if (reply->type == REDIS_REPLY_INTEGER && reply->integer >= 1)
		return;
	if (reply->type == REDIS_REPLY_INTEGER) {
		store_track_reset_later(st, "the Redis tracking connection lost its subscription");
		return;
	}
	log_warn("store", "Redis refused PUBLISH %s (%s); no record cache until it reconnects", st->channel,
		reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected answer");
	st->tracking_refused = true;
	store_untrack(st);
}

/* Proves the tracking connection still delivers: a message published through
 * the data connection must come back through it within redis.timeout_ms.
 * A Redis that hangs or a network that silently drops the connection would
 * otherwise leave the cache answering without hearing of writes. */
static void store_tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct store *st = arg;
	struct timespec now;
	char seq[24];

	(void)fd;
	(void)what;
	store_report(st);
	store_track_maybe(st);
	if (!st->tracked)
		return;
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (st->ping_out) {
		long long ms = (now.tv_sec - st->ping_at.tv_sec) * 1000LL + (now.tv_nsec - st->ping_at.tv_nsec) / 1000000;
		if (ms > st->cfg->redis_timeout_ms)
			store_track_reset_later(st, "the Redis tracking connection did not deliver in time");
		return;
	}
	snprintf(seq, sizeof(seq), "%llu", (unsigned long long)++st->ping_seq);
	const char *argv[] = { "PUBLISH", st->channel, seq };
	if (store_command(st, store_ping_reply, st, 3, argv, NULL) == 0) {
		st->ping_out = true;
		st->ping_at = now;
		st->ping_tid = st->tid;
	}
}

/* Starts the tracking connection and its timers; the cache is set. */
static int store_track_start(struct store *st)
{
	struct timeval tick = { 0, STORE_TICK_MS * 1000 };

	st->tretry = evtimer_new(st->base, store_track_retry_cb, st);
	st->treset = evtimer_new(st->base, store_track_reset_cb, st);
	st->tick = event_new(st->base, -1, EV_PERSIST, store_tick_cb, st);
	if (st->tretry == NULL || st->treset == NULL || st->tick == NULL)
		return -1;
	st->tbackoff_ms = 50;
	event_add(st->tick, &tick);
	store_track_connect(st);
	return 0;
}

int store_cache_enable(struct store *st, size_t entries)
{
	if ((st->cache = cache_new(entries)) == NULL)
		return -1;
	if (st->map == NULL)
		return store_track_start(st);
	/* Each node tracks what was read from it into the one cache. */
	for (size_t i = 0; i < st->nnodes; i++) {
		if (st->nodes[i] == NULL)
			continue;
		st->nodes[i]->cache = st->cache;
		if (store_track_start(st->nodes[i]) < 0)
			return -1;
	}
	return 0;
}

/* Reads what the tracking socket holds now, to its end. A request that came
 * after a write completed finds the write's invalidation here (it left Redis
 * before the write's answer did). */
static void store_track_sync(struct store *st)
{
	char b;
	int i;

	for (i = 0; i < STORE_SYNC_READS_MAX && st->tac != NULL && st->tracked; i++) {
		ssize_t n = recv(st->tac->c.fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			break;
		/* Data, the end of the stream or an error: hiredis takes it from here. */
		redisAsyncHandleRead(st->tac);
	}
	if (i == STORE_SYNC_READS_MAX && st->tracked) {
		cache_flush(st->cache);
		metrics_count(METRICS_CACHE_FLUSHES);
		store_report(st);
	}
	/* Redis closed the data connection: its reads are no longer tracked. */
	if (st->tracked && st->ac != NULL) {
		ssize_t n = recv(st->ac->c.fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
			store_untrack(st);
	}
}

/* A cluster's nodes made later copy these from their parent. */
void store_durable_replies(struct store *st)
{
	st->durable = st->cfg->redis_wait_replicas > 0;
	for (size_t i = 0; i < st->nnodes; i++)
		if (st->nodes[i] != NULL)
			store_durable_replies(st->nodes[i]);
}

void store_fence_replies(struct store *st)
{
	st->fenced = true;
	for (size_t i = 0; i < st->nnodes; i++)
		if (st->nodes[i] != NULL)
			store_fence_replies(st->nodes[i]);
}

struct cache *store_cache(struct store *st)
{
	struct timeval now;
	bool sync;

	if (st->map != NULL) {
		/* Any key may be on any node: the cache answers only while every
		 * node serving slots is tracked, so no write goes unheard. */
		if (st->freeing || st->cache == NULL || !cluster_map_complete(st->map))
			return NULL;
		for (size_t i = 0; i < st->nnodes; i++)
			if (cluster_map_serves(st->map, i) && (st->nodes[i] == NULL || !st->nodes[i]->tracked))
				return NULL;
	} else if (!st->tracked) {
		return NULL;
	}
	/* libevent's cached time changes once per loop turn. */
	event_base_gettimeofday_cached(st->base, &now);
	sync = now.tv_sec != st->synced.tv_sec || now.tv_usec != st->synced.tv_usec;
	if (sync)
		st->synced = now;
	if (st->map == NULL) {
		if (sync)
			store_track_sync(st);
		return st->tracked ? st->cache : NULL;
	}
	for (size_t i = 0; i < st->nnodes; i++) {
		if (!cluster_map_serves(st->map, i))
			continue;
		if (sync)
			store_track_sync(st->nodes[i]);
		if (!st->nodes[i]->tracked)
			return NULL;
	}
	return st->cache;
}

/* A store with its own connections (one server, the Sentinels' master, or
 * one node of a cluster when HOST is given). */
static struct store *store_single_new(struct event_base *base, const struct config *cfg, struct store *parent,
	const char *host, int port)
{
	struct store *st = calloc(1, sizeof(*st));

	if (st == NULL)
		return NULL;
	st->base = base;
	st->cfg = cfg;
	st->parent = parent;
	st->backoff_ms = 50;
	metrics_gauge_add(METRICS_REDIS_DOWN, 1); /* born down */
	st->retry = evtimer_new(base, store_retry_cb, st);
	st->reset = evtimer_new(base, store_reset_cb, st);
	if (st->retry == NULL || st->reset == NULL || (host != NULL && (st->host = strdup(host)) == NULL) ||
	    (host == NULL && cfg->nredis_sentinels > 0 &&
		    (st->sn = sentinel_new(base, cfg, store_master_switched, st)) == NULL)) {
		store_free(st);
		return NULL;
	}
	st->port = port;
	if (parent != NULL) {
		st->fenced = parent->fenced;
		st->durable = parent->durable;
		st->cache = parent->cache;
		if (st->cache != NULL && store_track_start(st) < 0) {
			store_free(st);
			return NULL;
		}
	}
	store_connect(st);
	return st;
}

static void store_cluster_refresh_cb(evutil_socket_t fd, short what, void *arg);

static void store_reap_cb(evutil_socket_t fd, short what, void *arg)
{
	struct store *p = arg;

	(void)fd;
	(void)what;
	for (size_t i = 0; i < p->ngraves; i++)
		store_free(p->graves[i]);
	p->ngraves = 0;
}

/* A child no longer wanted: freed on the next loop turn (this may be one
 * of its own callbacks). */
static bool store_cluster_retire(struct store *p, struct store *child)
{
	struct store **g = realloc(p->graves, (p->ngraves + 1) * sizeof(*g));

	if (g == NULL)
		return false; /* kept where it is: it only costs a connection */
	p->graves = g;
	p->graves[p->ngraves++] = child;
	event_active(p->reap, EV_TIMEOUT, 0);
	return true;
}

/* One child per node that serves slots, none for the others. */
static void store_cluster_sync_nodes(struct store *p)
{
	size_t n = cluster_map_nodes(p->map);

	if (n > p->nnodes) {
		struct store **grown = realloc(p->nodes, n * sizeof(*grown));
		if (grown == NULL)
			return;
		memset(grown + p->nnodes, 0, (n - p->nnodes) * sizeof(*grown));
		p->nodes = grown;
		p->nnodes = n;
	}
	for (size_t i = 0; i < p->nnodes; i++) {
		bool serves = cluster_map_serves(p->map, i);
		if (serves && p->nodes[i] == NULL) {
			/* An importer an ASK made us connect to already. */
			for (size_t k = 0; k < p->nextras; k++) {
				if (p->extras[k]->port == cluster_map_port(p->map, i) &&
				    strcmp(p->extras[k]->host, cluster_map_host(p->map, i)) == 0) {
					p->nodes[i] = p->extras[k];
					p->extras[k] = p->extras[--p->nextras];
					break;
				}
			}
			if (p->nodes[i] == NULL)
				p->nodes[i] = store_single_new(p->base, p->cfg, p, cluster_map_host(p->map, i),
					cluster_map_port(p->map, i));
			if (p->nodes[i] != NULL)
				log_info("store", "Redis Cluster node %s:%d serves slots", cluster_map_host(p->map, i),
					cluster_map_port(p->map, i));
		} else if (!serves && p->nodes[i] != NULL) {
			log_info("store", "Redis Cluster node %s:%d serves no slot now", p->nodes[i]->host,
				p->nodes[i]->port);
			if (store_cluster_retire(p, p->nodes[i]))
				p->nodes[i] = NULL;
		}
	}
}

/* Every slot served, by a node that is connected. */
static bool store_cluster_ready(const struct store *p)
{
	if (p->freeing || !cluster_map_complete(p->map))
		return false;
	for (size_t i = 0; i < p->nnodes; i++)
		if (cluster_map_serves(p->map, i) && (p->nodes[i] == NULL || p->nodes[i]->state != STORE_UP))
			return false;
	return true;
}

/* While anything is missing the map is asked for every 200 ms, else every
 * 5 s (and at once on a MOVED or a lost node, at most every 100 ms). */
static void store_cluster_refresh_in(struct store *p, int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	if (p->freeing)
		return;
	evtimer_del(p->refresh);
	evtimer_add(p->refresh, &tv);
}

static void store_cluster_refresh_soon(struct store *p)
{
	struct timespec now;
	long long ms;

	if (p->freeing || p->refreshing)
		return;
	clock_gettime(CLOCK_MONOTONIC, &now);
	ms = (now.tv_sec - p->refreshed.tv_sec) * 1000LL + (now.tv_nsec - p->refreshed.tv_nsec) / 1000000;
	store_cluster_refresh_in(p, ms >= 100 ? 0 : (int)(100 - ms));
}

struct store_slots_ask {
	struct store *p;
	char host[CLUSTER_HOST_MAX + 1];
};

static void store_cluster_slots_reply(redisReply *reply, void *arg)
{
	struct store_slots_ask *q = arg;
	struct store *p = q->p;
	char *cause = NULL;

	p->refreshing = false;
	if (p->freeing) {
		free(q);
		return;
	}
	if (reply != NULL && reply->type == REDIS_REPLY_ARRAY && cluster_map_load(p->map, reply, q->host, &cause) == 0) {
		if (p->map_logged || !cluster_map_complete(p->map))
			log_info("store", "Redis Cluster slot map from %s: %zu nodes, %s", q->host, cluster_map_nodes(p->map),
				cluster_map_complete(p->map) ? "every slot served" : "some slots served by none");
		p->map_logged = !cluster_map_complete(p->map);
		store_cluster_sync_nodes(p);
	} else if (!p->map_logged) {
		log_warn("store", "no usable Redis Cluster slot map from %s: %s", q->host,
			cause ? cause : reply == NULL ? "no answer" : reply->type == REDIS_REPLY_ERROR ? reply->str
			: "unexpected answer");
		p->map_logged = true;
	}
	free(cause);
	free(q);
	store_cluster_refresh_in(p, store_cluster_ready(p) ? 5000 : 200);
}

/* Asks a connected node (a serving one first, else a seed) for the slots. */
static void store_cluster_refresh_cb(evutil_socket_t fd, short what, void *arg)
{
	struct store *p = arg;
	struct store *from = NULL;
	struct store_slots_ask *q;

	(void)fd;
	(void)what;
	if (p->freeing || p->refreshing)
		return;
	for (size_t i = 0; i < p->nnodes && from == NULL; i++)
		if (p->nodes[i] != NULL && p->nodes[i]->state == STORE_UP)
			from = p->nodes[i];
	for (size_t i = 0; i < p->nseeds && from == NULL; i++)
		if (p->seeds[i] != NULL && p->seeds[i]->state == STORE_UP)
			from = p->seeds[i];
	clock_gettime(CLOCK_MONOTONIC, &p->refreshed);
	if (from == NULL || (q = calloc(1, sizeof(*q))) == NULL) {
		store_cluster_refresh_in(p, 200);
		return;
	}
	q->p = p;
	snprintf(q->host, sizeof(q->host), "%s", from->host);
	const char *argv[] = { "CLUSTER", "SLOTS" };
	if (store_command(from, store_cluster_slots_reply, q, 2, argv, NULL) < 0) {
		free(q);
		store_cluster_refresh_in(p, 200);
		return;
	}
	p->refreshing = true;
}

/* The parent of a cluster's children: the seeds' connections find the slot
 * map; the nodes' are made as it names them. */
static struct store *store_cluster_new(struct event_base *base, const struct config *cfg)
{
	struct store *p = calloc(1, sizeof(*p));

	if (p == NULL)
		return NULL;
	p->base = base;
	p->cfg = cfg;
	if ((p->map = cluster_map_new()) == NULL) {
		free(p);
		return NULL;
	}
	p->refresh = evtimer_new(base, store_cluster_refresh_cb, p);
	p->reap = event_new(base, -1, 0, store_reap_cb, p);
	p->seeds = calloc(cfg->nredis_cluster, sizeof(*p->seeds));
	if (p->refresh == NULL || p->reap == NULL || p->seeds == NULL) {
		store_free(p);
		return NULL;
	}
	for (size_t i = 0; i < cfg->nredis_cluster; i++) {
		char host[CLUSTER_HOST_MAX + 1];
		int port;
		if (!netaddr_split_hostport(cfg->redis_cluster[i], host, sizeof(host), &port))
			continue; /* the config checked it */
		if ((p->seeds[p->nseeds] = store_single_new(base, cfg, p, host, port)) == NULL) {
			store_free(p);
			return NULL;
		}
		p->nseeds++;
	}
	/* The first ask goes as soon as a seed is connected. */
	store_cluster_refresh_in(p, 10);
	return p;
}

struct store *store_new(struct event_base *base, const struct config *cfg)
{
	if (cfg->nredis_cluster > 0)
		return store_cluster_new(base, cfg);
	return store_single_new(base, cfg, NULL, NULL, 0);
}

void store_free(struct store *st)
{
	if (st == NULL)
		return;
	st->freeing = true;
	if (st->map != NULL) {
		/* The children's pending callbacks run (with NULL) as they go. */
		for (size_t i = 0; i < st->nnodes; i++) {
			store_free(st->nodes[i]);
			st->nodes[i] = NULL;
		}
		for (size_t i = 0; i < st->nseeds; i++) {
			store_free(st->seeds[i]);
			st->seeds[i] = NULL;
		}
		for (size_t i = 0; i < st->nextras; i++) {
			store_free(st->extras[i]);
			st->extras[i] = NULL;
		}
		store_reap_cb(-1, 0, st);
		free(st->nodes);
		free(st->seeds);
		free(st->graves);
		free(st->extras);
		cluster_map_free(st->map);
		if (st->refresh)
			event_free(st->refresh);
		if (st->reap)
			event_free(st->reap);
		cache_free(st->cache);
		st->cache = NULL;
		store_report(st);
		free(st);
		return;
	}
	sentinel_free(st->sn);
	st->sn = NULL;
	store_track_drop(st);
	store_drop(st);
	free(st->host);
	store_set_state(st, STORE_DOWN);
	metrics_gauge_add(METRICS_REDIS_DOWN, -1);
	if (st->retry)
		event_free(st->retry);
	if (st->reset)
		event_free(st->reset);
	if (st->tretry)
		event_free(st->tretry);
	if (st->treset)
		event_free(st->treset);
	if (st->tick)
		event_free(st->tick);
	if (st->parent == NULL)
		cache_free(st->cache);
	st->cache = NULL;
	if (st->parent == NULL)
		store_report(st);
	free(st);
}

bool store_clustered(const struct store *st)
{
	return st->map != NULL;
}

bool store_connected(const struct store *st)
{
	if (st->map != NULL)
		return store_cluster_ready(st);
	return st->state == STORE_UP;
}

static void store_call_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct store_call *call = arg;
	struct store *st = call->st;

	(void)fd;
	(void)what;
	if (call->answered)
		return;
	metrics_count(METRICS_REDIS_TIMEOUTS);
	store_call_answer(call, NULL);
	/* The connection is stuck behind this command: drop it on the next turn. */
	if (st->ac)
		event_active(st->reset, EV_TIMEOUT, 0);
}

static void store_call_deliver(struct store_call *call, redisReply *reply)
{
	struct store *st = call->st;

	/* Under Sentinel a write refused by a replica means the master moved. */
	if (st->sn != NULL && reply != NULL && reply->type == REDIS_REPLY_ERROR && reply->str != NULL &&
	    strstr(reply->str, "READONLY") != NULL && st->ac != NULL && !st->freeing) {
		log_warn("store", "Redis at %s:%d refused a write as a replica; asking the Sentinels again",
			st->host ? st->host : "?", st->port);
		store_forget_master(st);
		st->handshake = -1; /* logged here, not as a timeout */
		event_active(st->reset, EV_TIMEOUT, 0);
	}
	if (!call->answered) {
		if (reply == NULL || reply->type == REDIS_REPLY_ERROR)
			metrics_count(METRICS_REDIS_ERRORS);
		store_call_answer(call, reply);
	}
	event_free(call->timer);
	freeReplyObject(call->held);
	free(call);
}

/* A deep copy made with the allocator freeReplyObject() frees with. */
static redisReply *store_reply_copy(const redisReply *r)
{
	redisReply *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	c->type = r->type;
	c->integer = r->integer;
	if (r->str != NULL) {
		if ((c->str = malloc(r->len + 1)) == NULL)
			goto fail;
		memcpy(c->str, r->str, r->len);
		c->str[r->len] = '\0';
		c->len = r->len;
	}
	if (r->element != NULL) {
		if ((c->element = calloc(r->elements ? r->elements : 1, sizeof(*c->element))) == NULL)
			goto fail;
		c->elements = r->elements;
		for (size_t i = 0; i < r->elements; i++)
			if (r->element[i] != NULL && (c->element[i] = store_reply_copy(r->element[i])) == NULL)
				goto fail;
	}
	return c;
fail:
	freeReplyObject(c);
	return NULL;
}

static struct log_limit store_wait_log;

/* The PING (or WAIT) behind a fenced reply: Redis read it only after writing
 * out everything of the pass that produced the reply. */
static void store_fence_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct store_call *call = privdata;
	struct store *st = call->st;
	redisReply *r = reply;
	unsigned long held;

	(void)ac;
	if (call->write && st->durable && st->cfg->redis_wait_replicas > 0 && call->held != NULL &&
	    call->held->type != REDIS_REPLY_ERROR && (r == NULL || r->type != REDIS_REPLY_INTEGER || r->integer < st->cfg->redis_wait_replicas)) {
		if (r != NULL && log_limit_pass(&store_wait_log, &held))
			log_warn("store", "%lld of %d replicas confirmed a write in time; reported as unknown "
				"(%lu more not logged)", r->type == REDIS_REPLY_INTEGER ? r->integer : -1LL,
				st->cfg->redis_wait_replicas, held);
		metrics_count(METRICS_REDIS_TIMEOUTS);
		store_call_deliver(call, NULL);
		return;
	}
	/* A PING's own failure does not undo the command: deliver what it answered. */
	store_call_deliver(call, call->held);
}

static void store_call_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct store_call *call = privdata;
	struct store *st = call->st;

	if ((st->fenced || (call->write && st->durable)) && reply != NULL && !call->answered && !st->freeing && ac == st->ac &&
	    (call->held = store_reply_copy(reply)) != NULL) {
		int rc;
		/* An error reply wrote nothing to wait for (and on a demoted
		 * master WAIT itself fails, hiding the READONLY). */
		if (call->write && st->durable && st->cfg->redis_wait_replicas > 0 &&
		    ((redisReply *)reply)->type != REDIS_REPLY_ERROR)
			rc = redisAsyncCommand(ac, store_fence_reply, call, "WAIT %d %d", st->cfg->redis_wait_replicas,
				st->cfg->redis_timeout_ms / 2 > 0 ? st->cfg->redis_timeout_ms / 2 : 1);
		else
			rc = redisAsyncCommand(ac, store_fence_reply, call, "PING");
		if (rc == REDIS_OK)
			return;
		freeReplyObject(call->held);
		call->held = NULL;
	}
	store_call_deliver(call, reply);
}

int store_command(struct store *st, store_reply_fn fn, void *arg, int argc, const char **argv,
	const size_t *argvlen)
{
	return store_command_timed(st, st->cfg->redis_timeout_ms, fn, arg, argc, argv, argvlen);
}

static int store_send(struct store *st, int timeout_ms, bool write, store_reply_fn fn, void *arg, int argc,
	const char **argv, const size_t *argvlen);

int store_command_timed(struct store *st, int timeout_ms, store_reply_fn fn, void *arg, int argc,
	const char **argv, const size_t *argvlen)
{
	return store_send(st, timeout_ms, false, fn, arg, argc, argv, argvlen);
}

int store_write_timed(struct store *st, int timeout_ms, store_reply_fn fn, void *arg, int argc,
	const char **argv, const size_t *argvlen)
{
	return store_send(st, timeout_ms, true, fn, arg, argc, argv, argvlen);
}

int store_write(struct store *st, store_reply_fn fn, void *arg, int argc, const char **argv,
	const size_t *argvlen)
{
	return store_send(st, st->cfg->redis_timeout_ms, true, fn, arg, argc, argv, argvlen);
}

/* Sends on this store's own connection: ARGV, or CMD (LEN bytes, already
 * in the protocol) when CMD is not NULL. */
static int store_send_own(struct store *st, int timeout_ms, bool write, store_reply_fn fn, void *arg, int argc,
	const char **argv, const size_t *argvlen, const char *cmd, size_t len, bool asking)
{
	struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
	struct store_call *call;
	int rc;

	if (timeout_ms <= 0) {
		metrics_count(METRICS_REDIS_TIMEOUTS);
		return -1;
	}

	/* While connecting, hiredis holds commands until the connection is up;
	 * each is still bounded by its own timer. */
	if (st->ac == NULL || st->state == STORE_DOWN || (st->state == STORE_CONNECTING && st->needs_handshake)) {
		metrics_count(METRICS_REDIS_ERRORS);
		return -1;
	}
	call = calloc(1, sizeof(*call));
	if (call == NULL)
		return -1;
	call->st = st;
	call->write = write;
	call->fn = fn;
	call->arg = arg;
	clock_gettime(CLOCK_MONOTONIC, &call->sent);
	log_context_copy(call->rid);
	call->timer = evtimer_new(st->base, store_call_timeout, call);
	if (call->timer == NULL) {
		free(call);
		return -1;
	}
	/* ASKING goes right before its command, on the same connection, once
	 * nothing can fail between them. */
	if (asking && redisAsyncCommand(st->ac, NULL, NULL, "ASKING") != REDIS_OK)
		rc = REDIS_ERR;
	else if (cmd != NULL)
		rc = redisAsyncFormattedCommand(st->ac, store_call_reply, call, cmd, len);
	else
		rc = redisAsyncCommandArgv(st->ac, store_call_reply, call, argc, argv, argvlen);
	if (rc != REDIS_OK) {
		event_free(call->timer);
		free(call);
		metrics_count(METRICS_REDIS_ERRORS);
		return -1;
	}
	evtimer_add(call->timer, &tv);
	return 0;
}

/* --- Redis Cluster: routing a command to the node of its key's slot --- */

#define STORE_REDIRECTS_MAX 5

/* A command on its way through a cluster: it keeps its bytes so that a
 * MOVED or ASK answer can send it again elsewhere, within its time. */
struct store_ccall {
	struct store *p;
	store_reply_fn fn;
	void *arg;
	bool write, keyless, asking;
	unsigned slot;
	int redirects;
	struct store *ask_to;  /* the node an ASK named, this command only */
	struct store *sent_to;
	struct timespec deadline;
	struct event *later;   /* sends it again: a node still connecting, TRYAGAIN */
	char *cmd;
	size_t len;
};

static void store_ccall_free(struct store_ccall *c)
{
	if (c->later)
		event_free(c->later);
	redisFreeCommand(c->cmd);
	free(c);
}

static int store_ms_left(const struct timespec *deadline)
{
	struct timespec now;
	long long ms;

	clock_gettime(CLOCK_MONOTONIC, &now);
	ms = (deadline->tv_sec - now.tv_sec) * 1000LL + (deadline->tv_nsec - now.tv_nsec) / 1000000;
	return ms <= 0 ? 0 : ms > 600000 ? 600000 : (int)ms;
}

static void store_cluster_reply(redisReply *reply, void *arg);

#define STORE_RETRY_MS 10       /* a node still connecting: look again after */
#define STORE_TRYAGAIN_MS 25     /* a slot being moved refused a multi-key command */

static void store_cluster_deliver(struct store_ccall *c, redisReply *reply)
{
	struct store *p = c->p;

	/* A read from a node whose tracking is not on (an importer an ASK
	 * named, a node just connected) is heard of by nobody: no insert of a
	 * read sent before now may be kept. */
	if (reply != NULL && p->cache != NULL && c->sent_to != NULL && !c->sent_to->tracked && !p->freeing) {
		cache_flush(p->cache);
		metrics_count(METRICS_CACHE_FLUSHES);
	}
	c->fn(reply, c->arg);
	store_ccall_free(c);
}

static int store_cluster_dispatch(struct store_ccall *c);

static void store_cluster_later_cb(evutil_socket_t fd, short what, void *arg)
{
	struct store_ccall *c = arg;

	(void)fd;
	(void)what;
	if (c->p->freeing || store_cluster_dispatch(c) < 0)
		store_cluster_deliver(c, NULL);
}

/* Sends C again after MS, within its time. False when there is none left. */
static bool store_cluster_later(struct store_ccall *c, int ms)
{
	struct timeval tv = { 0, ms * 1000 };

	if (store_ms_left(&c->deadline) <= ms)
		return false;
	if (c->later == NULL && (c->later = evtimer_new(c->p->base, store_cluster_later_cb, c)) == NULL)
		return false;
	evtimer_add(c->later, &tv);
	return true;
}

/* A node that serves no slot (yet) but that an ASK names: a migration's
 * importer, before the map knows it. Kept until the parent goes. */
static struct store *store_cluster_extra(struct store *p, const char *host, int port)
{
	struct store **grown;

	for (size_t i = 0; i < p->nextras; i++)
		if (p->extras[i]->port == port && strcmp(p->extras[i]->host, host) == 0)
			return p->extras[i];
	if ((grown = realloc(p->extras, (p->nextras + 1) * sizeof(*grown))) == NULL)
		return NULL;
	p->extras = grown;
	if ((p->extras[p->nextras] = store_single_new(p->base, p->cfg, p, host, port)) == NULL)
		return NULL;
	return p->extras[p->nextras++];
}

/* The node for the command now: an ASK's target, any serving node for a
 * keyless command, else the one the map names for its slot. Returns 0 when
 * sent, 1 when it waits for a node still connecting, -1 when it cannot go. */
static int store_cluster_dispatch(struct store_ccall *c)
{
	struct store *p = c->p, *to = c->ask_to;
	int left = store_ms_left(&c->deadline);

	if (to == NULL && c->keyless) {
		for (size_t i = 0; i < p->nnodes && to == NULL; i++)
			if (p->nodes[i] != NULL && p->nodes[i]->state == STORE_UP)
				to = p->nodes[i];
	} else if (to == NULL) {
		int i = cluster_map_node_for_slot(p->map, c->slot);
		to = i >= 0 && (size_t)i < p->nnodes ? p->nodes[i] : NULL;
	}
	if (to != NULL && to->state == STORE_CONNECTING && store_cluster_later(c, STORE_RETRY_MS))
		return 1; /* a node just named (MOVED, ASK, a new map) */
	if (to == NULL || to->state != STORE_UP || left <= 0) {
		metrics_count(METRICS_REDIS_ERRORS);
		store_cluster_refresh_soon(p);
		return -1;
	}
	c->sent_to = to;
	return store_send_own(to, left, c->write, store_cluster_reply, c, 0, NULL, NULL, c->cmd, c->len, c->asking);
}

/* The node HOST:PORT of the table when it serves slots, else one kept for
 * ASKs. */
static struct store *store_cluster_node(struct store *p, const char *host, int port)
{
	int i = cluster_map_find(p->map, host, port);

	if (i >= 0 && (size_t)i < p->nnodes && p->nodes[i] != NULL)
		return p->nodes[i];
	return store_cluster_extra(p, host, port);
}

static bool store_is_error(const redisReply *r, const char *prefix)
{
	size_t n = strlen(prefix);

	return r != NULL && r->type == REDIS_REPLY_ERROR && r->len >= n && memcmp(r->str, prefix, n) == 0;
}

static void store_cluster_reply(redisReply *reply, void *arg)
{
	struct store_ccall *c = arg;
	struct store *p = c->p;
	struct cluster_redirect rd;

	if (p->freeing) {
		store_cluster_deliver(c, reply);
		return;
	}
	if (reply != NULL && reply->type == REDIS_REPLY_ERROR && cluster_redirect_parse(reply->str, reply->len, &rd) == 0) {
		const char *host = rd.host[0] ? rd.host : c->sent_to->host;
		int rc;
		if (++c->redirects > STORE_REDIRECTS_MAX) {
			store_cluster_deliver(c, NULL); /* going round: unknown, as with a timeout */
			return;
		}
		c->ask_to = NULL;
		c->asking = false;
		if (rd.ask) {
			/* A slot on its way: this command only goes to the importer. */
			if ((c->ask_to = store_cluster_node(p, host, rd.port)) == NULL) {
				store_cluster_deliver(c, NULL);
				return;
			}
			c->asking = true;
		} else {
			/* The slot moved for good: the map learns it now, the rest of
			 * the topology with the next refresh. */
			if (cluster_map_moved(p->map, rd.slot, host, rd.port) == 0)
				store_cluster_sync_nodes(p);
			store_cluster_refresh_soon(p);
		}
		metrics_count(METRICS_REDIS_REDIRECTS);
		if ((rc = store_cluster_dispatch(c)) < 0)
			store_cluster_deliver(c, NULL);
		return;
	}
	/* A multi-key command on a slot being moved, or a cluster without a
	 * master for some slot for a moment: again shortly, within its time. */
	if ((store_is_error(reply, "TRYAGAIN") || store_is_error(reply, "CLUSTERDOWN")) &&
	    store_cluster_later(c, STORE_TRYAGAIN_MS)) {
		if (store_is_error(reply, "CLUSTERDOWN"))
			store_cluster_refresh_soon(p);
		return;
	}
	store_cluster_deliver(c, reply);
}

static int store_cluster_send(struct store *p, int timeout_ms, bool write, store_reply_fn fn, void *arg, int argc,
	const char **argv, const size_t *argvlen)
{
	struct store_ccall *c;
	const char *key;
	size_t klen;
	int route = cluster_command_key(argc, argv, argvlen, &key, &klen);
	long long len;

	if (p->freeing)
		return -1;
	if (route < 0) {
		log_error("store", "%s: a command that a Redis Cluster cannot route", argc > 0 ? argv[0] : "?");
		return -1;
	}
	if (timeout_ms <= 0 || (c = calloc(1, sizeof(*c))) == NULL)
		return -1;
	c->p = p;
	c->fn = fn;
	c->arg = arg;
	c->write = write;
	c->keyless = route == 1;
	c->slot = route == 0 ? cluster_key_slot(key, klen) : 0;
	clock_gettime(CLOCK_MONOTONIC, &c->deadline);
	c->deadline.tv_sec += timeout_ms / 1000;
	c->deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (c->deadline.tv_nsec >= 1000000000L) {
		c->deadline.tv_sec++;
		c->deadline.tv_nsec -= 1000000000L;
	}
	if ((len = redisFormatCommandArgv(&c->cmd, argc, argv, argvlen)) < 0) {
		free(c);
		return -1;
	}
	c->len = (size_t)len;
	if (store_cluster_dispatch(c) < 0) {
		store_ccall_free(c);
		return -1;
	}
	return 0; /* sent, or waiting for its node: FN will be called */
}

static int store_send(struct store *st, int timeout_ms, bool write, store_reply_fn fn, void *arg, int argc,
	const char **argv, const size_t *argvlen)
{
	if (st->map != NULL)
		return store_cluster_send(st, timeout_ms, write, fn, arg, argc, argv, argvlen);
	return store_send_own(st, timeout_ms, write, fn, arg, argc, argv, argvlen, NULL, 0, false);
}

struct store_gather {
	store_reply_fn fn;
	void *arg;
	size_t pending;
	bool failed;
	redisReply *all;              /* an array reply of the copies */
	struct store_gather **slots;  /* slot i points here: each reply knows its place */
};

static void store_gather_free(struct store_gather *g)
{
	if (g == NULL)
		return;
	freeReplyObject(g->all);
	free(g->slots);
	free(g);
}

static void store_gather_reply(redisReply *reply, void *arg)
{
	struct store_gather **slot = arg;
	struct store_gather *g = *slot;
	size_t i = (size_t)(slot - g->slots);

	if (reply == NULL || (g->all->element[i] = store_reply_copy(reply)) == NULL)
		g->failed = true;
	if (--g->pending == 0) {
		g->fn(g->failed ? NULL : g->all, g->arg);
		store_gather_free(g);
	}
}

static int store_gather_send(struct store *st, int timeout_ms, bool write, size_t n, const int *argcs,
	const char *const *const *argvs, const size_t *const *lens, store_reply_fn fn, void *arg);

int store_gather(struct store *st, int timeout_ms, size_t n, const int *argcs, const char *const *const *argvs,
	store_reply_fn fn, void *arg)
{
	return store_gather_send(st, timeout_ms, false, n, argcs, argvs, NULL, fn, arg);
}

int store_gather_write(struct store *st, int timeout_ms, size_t n, const int *argcs,
	const char *const *const *argvs, const size_t *const *lens, store_reply_fn fn, void *arg)
{
	return store_gather_send(st, timeout_ms, true, n, argcs, argvs, lens, fn, arg);
}

static int store_gather_send(struct store *st, int timeout_ms, bool write, size_t n, const int *argcs,
	const char *const *const *argvs, const size_t *const *lens, store_reply_fn fn, void *arg)
{
	struct store_gather *g = calloc(1, sizeof(*g));
	size_t sent = 0;

	if (g == NULL || n == 0 || (g->all = calloc(1, sizeof(*g->all))) == NULL ||
	    (g->all->element = calloc(n, sizeof(*g->all->element))) == NULL ||
	    (g->slots = calloc(n, sizeof(*g->slots))) == NULL) {
		store_gather_free(g);
		return -1;
	}
	g->all->type = REDIS_REPLY_ARRAY;
	g->all->elements = n;
	g->fn = fn;
	g->arg = arg;
	g->pending = n + 1; /* one held until every command is out */
	for (size_t i = 0; i < n; i++) {
		g->slots[i] = g;
		size_t *len = NULL;
		if (lens != NULL && lens[i] != NULL) {
			/* Zero means a C string: filled in here, on a copy. */
			if ((len = calloc((size_t)argcs[i], sizeof(*len))) == NULL) {
				g->failed = true;
				g->pending--;
				continue;
			}
			for (int j = 0; j < argcs[i]; j++)
				len[j] = lens[i][j] ? lens[i][j] : strlen(argvs[i][j]);
		}
		int rc = store_send(st, timeout_ms, write, store_gather_reply, &g->slots[i], argcs[i],
			(const char **)argvs[i], len);
		free(len);
		if (rc < 0) {
			g->failed = true;
			g->pending--;
			continue;
		}
		sent++;
	}
	if (sent == 0) {
		store_gather_free(g);
		return -1;
	}
	if (--g->pending == 0) {
		g->fn(g->failed ? NULL : g->all, g->arg);
		store_gather_free(g);
	}
	return 0;
}

static void store_noreply(redisReply *reply, void *arg)
{
	(void)reply;
	(void)arg;
}

void store_command_noreply(struct store *st, int argc, const char **argv, const size_t *argvlen)
{
	if (st->map != NULL) {
		(void)store_cluster_send(st, st->cfg->redis_timeout_ms, false, store_noreply, NULL, argc, argv, argvlen);
		return;
	}
	if (st->ac != NULL && (st->state == STORE_UP || (st->state == STORE_CONNECTING && !st->needs_handshake)))
		redisAsyncCommandArgv(st->ac, NULL, NULL, argc, argv, argvlen);
}

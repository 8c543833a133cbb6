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
#include "config.h"
#include "log.h"
#include "metrics.h"
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

	/* The record cache (NULL: none) and what keeps it exact. */
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
};

static void store_connect(struct store *st);
static void store_track_maybe(struct store *st);
static void store_track_reset_later(struct store *st, const char *why);
static bool store_is(const redisReply *r, const char *s);

static void store_report(struct store *st)
{
	int64_t n = st->cache ? (int64_t)cache_count(st->cache) : 0;

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
	if (st->sn != NULL)
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
	snprintf(st->channel, sizeof(st->channel), "bd:sync:%lld", st->tid);
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
	if (st->sn != NULL)
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

int store_cache_enable(struct store *st, size_t entries)
{
	struct timeval tick = { 0, STORE_TICK_MS * 1000 };

	st->cache = cache_new(entries);
	st->tretry = evtimer_new(st->base, store_track_retry_cb, st);
	st->treset = evtimer_new(st->base, store_track_reset_cb, st);
	st->tick = event_new(st->base, -1, EV_PERSIST, store_tick_cb, st);
	if (st->cache == NULL || st->tretry == NULL || st->treset == NULL || st->tick == NULL)
		return -1;
	st->tbackoff_ms = 50;
	event_add(st->tick, &tick);
	store_track_connect(st);
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

void store_durable_replies(struct store *st)
{
	st->durable = st->cfg->redis_wait_replicas > 0;
}

void store_fence_replies(struct store *st)
{
	st->fenced = true;
}

struct cache *store_cache(struct store *st)
{
	struct timeval now;

	if (!st->tracked)
		return NULL;
	/* libevent's cached time changes once per loop turn. */
	event_base_gettimeofday_cached(st->base, &now);
	if (now.tv_sec != st->synced.tv_sec || now.tv_usec != st->synced.tv_usec) {
		st->synced = now;
		store_track_sync(st);
	}
	return st->tracked ? st->cache : NULL;
}

struct store *store_new(struct event_base *base, const struct config *cfg)
{
	struct store *st = calloc(1, sizeof(*st));

	if (st == NULL)
		return NULL;
	st->base = base;
	st->cfg = cfg;
	st->backoff_ms = 50;
	metrics_gauge_add(METRICS_REDIS_DOWN, 1); /* born down */
	st->retry = evtimer_new(base, store_retry_cb, st);
	st->reset = evtimer_new(base, store_reset_cb, st);
	if (st->retry == NULL || st->reset == NULL ||
	    (cfg->nredis_sentinels > 0 && (st->sn = sentinel_new(base, cfg, store_master_switched, st)) == NULL)) {
		store_free(st);
		return NULL;
	}
	store_connect(st);
	return st;
}

void store_free(struct store *st)
{
	if (st == NULL)
		return;
	st->freeing = true;
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
	cache_free(st->cache);
	st->cache = NULL;
	store_report(st);
	free(st);
}

bool store_connected(const struct store *st)
{
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
	call->answered = true;
	metrics_count(METRICS_REDIS_TIMEOUTS);
	call->fn(NULL, call->arg);
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
		call->answered = true;
		if (reply == NULL || reply->type == REDIS_REPLY_ERROR)
			metrics_count(METRICS_REDIS_ERRORS);
		call->fn(reply, call->arg);
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

static int store_send(struct store *st, int timeout_ms, bool write, store_reply_fn fn, void *arg, int argc,
	const char **argv, const size_t *argvlen)
{
	struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
	struct store_call *call;

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
	call->timer = evtimer_new(st->base, store_call_timeout, call);
	if (call->timer == NULL) {
		free(call);
		return -1;
	}
	if (redisAsyncCommandArgv(st->ac, store_call_reply, call, argc, argv, argvlen) != REDIS_OK) {
		event_free(call->timer);
		free(call);
		metrics_count(METRICS_REDIS_ERRORS);
		return -1;
	}
	evtimer_add(call->timer, &tv);
	return 0;
}

void store_command_noreply(struct store *st, int argc, const char **argv, const size_t *argvlen)
{
	if (st->ac != NULL && (st->state == STORE_UP || (st->state == STORE_CONNECTING && !st->needs_handshake)))
		redisAsyncCommandArgv(st->ac, NULL, NULL, argc, argv, argvlen);
}

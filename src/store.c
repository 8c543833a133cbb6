#include "store.h"

#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libevent.h>

#include "config.h"
#include "log.h"
#include "metrics.h"

enum store_state { STORE_DOWN, STORE_CONNECTING, STORE_UP };

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
};

/* One issued command. It lives until hiredis hands its reply (or NULL) back,
 * which it always does once; the timer may answer the caller before that. */
struct store_call {
	struct store *st;
	store_reply_fn fn;
	void *arg;
	struct event *timer;
	bool answered;
};

static void store_connect(struct store *st);

static void store_schedule_retry(struct store *st)
{
	struct timeval tv = { st->backoff_ms / 1000, (st->backoff_ms % 1000) * 1000 };

	if (st->freeing || evtimer_pending(st->retry, NULL))
		return;
	evtimer_add(st->retry, &tv);
	st->backoff_ms = st->backoff_ms * 2 > 1000 ? 1000 : st->backoff_ms * 2;
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
	st->state = STORE_UP;
	st->backoff_ms = 50;
	evtimer_del(st->reset);
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
		/* hiredis frees the context after this callback. */
		st->ac = NULL;
		st->state = STORE_DOWN;
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
	st->state = STORE_DOWN;
	if (st->freeing)
		return;
	if (status != REDIS_OK)
		log_warn("store", "lost the Redis connection: %s", ac->errstr);
	st->was_down_logged = true;
	store_schedule_retry(st);
}

static void store_drop(struct store *st)
{
	redisAsyncContext *ac = st->ac;

	if (ac == NULL)
		return;
	st->ac = NULL;
	st->state = STORE_DOWN;
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
	if (!st->freeing)
		store_schedule_retry(st);
}

static void store_connect(struct store *st)
{
	const struct config *cfg = st->cfg;
	struct timeval tv = { cfg->redis_timeout_ms / 1000, (cfg->redis_timeout_ms % 1000) * 1000 };
	redisAsyncContext *ac;

	if (cfg->redis_unix && cfg->redis_unix[0])
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
	st->state = STORE_CONNECTING;
	st->tcp_up = false;
	st->handshake = 0;
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
	st->needs_handshake = st->handshake > 0;
	/* A connect that hangs is dropped like a hung command. */
	evtimer_add(st->reset, &tv);
}

struct store *store_new(struct event_base *base, const struct config *cfg)
{
	struct store *st = calloc(1, sizeof(*st));

	if (st == NULL)
		return NULL;
	st->base = base;
	st->cfg = cfg;
	st->backoff_ms = 50;
	st->retry = evtimer_new(base, store_retry_cb, st);
	st->reset = evtimer_new(base, store_reset_cb, st);
	if (st->retry == NULL || st->reset == NULL) {
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
	store_drop(st);
	if (st->retry)
		event_free(st->retry);
	if (st->reset)
		event_free(st->reset);
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

static void store_call_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct store_call *call = privdata;

	(void)ac;
	if (!call->answered) {
		call->answered = true;
		if (reply == NULL || ((redisReply *)reply)->type == REDIS_REPLY_ERROR)
			metrics_count(METRICS_REDIS_ERRORS);
		call->fn(reply, call->arg);
	}
	event_free(call->timer);
	free(call);
}

int store_command(struct store *st, store_reply_fn fn, void *arg, int argc, const char **argv,
	const size_t *argvlen)
{
	return store_command_timed(st, st->cfg->redis_timeout_ms, fn, arg, argc, argv, argvlen);
}

int store_command_timed(struct store *st, int timeout_ms, store_reply_fn fn, void *arg, int argc,
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

#include "sentinel.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libevent.h>

#include "config.h"
#include "log.h"
#include "netaddr.h"

#define SENTINEL_HOST_MAX 256
#define SENTINEL_BACKOFF_MAX_MS 1000
/* How often the master is asked for even when no switch was announced: a
 * subscription can die without a word (a sentinel's host gone silent). */
#define SENTINEL_RECHECK_MS 5000

struct sentinel {
	struct event_base *base;
	const struct config *cfg;
	sentinel_addr_fn on_switch;
	void *arg;
	bool freeing;
	size_t good; /* the sentinel that answered last: asked first */

	/* The question being asked, one sentinel after the other. */
	bool asking;
	sentinel_addr_fn qfn;
	void *qarg;
	redisAsyncContext *qac;
	size_t qidx, qtried;
	struct event *qnext;  /* the next step, outside hiredis' callbacks */
	struct event *qtimer; /* the current sentinel's deadline */
	bool qdone;           /* the answer is in qhost/qport */
	char qhost[SENTINEL_HOST_MAX];
	int qport;
	bool all_failed_logged;

	/* The subscription to +switch-master. */
	redisAsyncContext *sac;
	size_t sidx;
	bool subscribed;
	int sbackoff_ms;
	struct event *sretry;  /* reconnect */
	struct event *stimer;  /* subscribed in time, or dropped */
	bool sdown_logged;
	struct event *recheck; /* asks again every SENTINEL_RECHECK_MS */
};

static void sentinel_sub_connect(struct sentinel *sn);
static void sentinel_sub_schedule(struct sentinel *sn);

/* A connection that failed to connect is freed by hiredis right after this,
 * without its disconnect callback: forget it here. */
static void sentinel_on_connect(const redisAsyncContext *ac, int status)
{
	struct sentinel *sn = ac->data;

	if (status == REDIS_OK || sn == NULL)
		return;
	if (ac == sn->qac) {
		sn->qac = NULL;
		event_active(sn->qnext, EV_TIMEOUT, 0);
	} else if (ac == sn->sac) {
		sn->sac = NULL;
		evtimer_del(sn->stimer);
		sentinel_sub_schedule(sn);
	}
}

/* A connection to sentinel I, AUTH sent when a password is configured (a
 * sentinel without one refuses it, which changes nothing). NULL on failure. */
static redisAsyncContext *sentinel_open(struct sentinel *sn, size_t i,
	void (*on_disconnect)(const redisAsyncContext *, int))
{
	const struct config *cfg = sn->cfg;
	char host[SENTINEL_HOST_MAX];
	redisAsyncContext *ac;
	int port;

	if (!netaddr_split_hostport(cfg->redis_sentinels[i], host, sizeof(host), &port))
		return NULL;
	ac = redisAsyncConnect(host, port);
	if (ac == NULL || ac->err) {
		if (ac)
			redisAsyncFree(ac);
		return NULL;
	}
	ac->data = sn;
	if (redisLibeventAttach(ac, sn->base) != REDIS_OK) {
		redisAsyncFree(ac);
		return NULL;
	}
	redisAsyncSetConnectCallback(ac, sentinel_on_connect);
	redisAsyncSetDisconnectCallback(ac, on_disconnect);
	if (cfg->redis_password && cfg->redis_password[0]) {
		const char *argv[] = { "AUTH", cfg->redis_password };
		redisAsyncCommandArgv(ac, NULL, NULL, 2, argv, NULL);
	}
	return ac;
}

/* Closes AC, which must no longer be sn->qac or sn->sac: its callbacks then
 * find nothing to do. */
static void sentinel_close(redisAsyncContext *ac)
{
	if (ac != NULL)
		redisAsyncFree(ac);
}

/* --- asking --- */

static void sentinel_on_disconnect(const redisAsyncContext *ac, int status)
{
	struct sentinel *sn = ac->data;

	(void)status;
	if (sn == NULL || ac != sn->qac)
		return;
	/* Dropped before it answered: the next one. */
	sn->qac = NULL;
	event_active(sn->qnext, EV_TIMEOUT, 0);
}

static void sentinel_ask_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct sentinel *sn = privdata;
	redisReply *r = reply;

	if (sn->freeing || ac != sn->qac)
		return;
	if (r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
	    r->element[0]->type == REDIS_REPLY_STRING && r->element[1]->type == REDIS_REPLY_STRING &&
	    r->element[0]->len > 0 && r->element[0]->len < sizeof(sn->qhost)) {
		int port = atoi(r->element[1]->str);
		if (port > 0 && port < 65536) {
			memcpy(sn->qhost, r->element[0]->str, r->element[0]->len + 1);
			sn->qport = port;
			sn->qdone = true;
			sn->good = sn->qidx;
		}
	}
	if (!sn->qdone)
		log_debug("sentinel", "%s does not name master %s (%s)", sn->cfg->redis_sentinels[sn->qidx],
			sn->cfg->redis_master_name,
			r == NULL ? "no answer" : r->type == REDIS_REPLY_ERROR ? r->str : "not known");
	/* Its disconnect callback finds nothing to do. NULL: hiredis is
	 * dropping it already. */
	sn->qac = NULL;
	ac->data = NULL;
	if (r != NULL)
		redisAsyncDisconnect(ac);
	event_active(sn->qnext, EV_TIMEOUT, 0);
}

static void sentinel_finish(struct sentinel *sn, const char *host, int port)
{
	sentinel_addr_fn fn = sn->qfn;

	sn->asking = false;
	evtimer_del(sn->qtimer);
	if (host == NULL && !sn->all_failed_logged) {
		log_warn("sentinel", "no Sentinel of %zu named master %s", sn->cfg->nredis_sentinels,
			sn->cfg->redis_master_name);
		sn->all_failed_logged = true;
	} else if (host != NULL) {
		sn->all_failed_logged = false;
	}
	fn(sn->qarg, host, port);
}

/* One step of the question: the answer, or the next sentinel, or none left. */
static void sentinel_qnext_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sentinel *sn = arg;
	const struct config *cfg = sn->cfg;
	struct timeval tv = { cfg->redis_timeout_ms / 1000, (cfg->redis_timeout_ms % 1000) * 1000 };

	(void)fd;
	(void)what;
	if (!sn->asking || sn->qac != NULL)
		return;
	if (sn->qdone) {
		sentinel_finish(sn, sn->qhost, sn->qport);
		return;
	}
	while (sn->qtried < cfg->nredis_sentinels) {
		const char *argv[] = { "SENTINEL", "get-master-addr-by-name", cfg->redis_master_name };
		size_t i = (sn->good + sn->qtried++) % cfg->nredis_sentinels;
		redisAsyncContext *ac = sentinel_open(sn, i, sentinel_on_disconnect);

		if (ac == NULL)
			continue;
		sn->qac = ac;
		sn->qidx = i;
		redisAsyncCommandArgv(ac, sentinel_ask_reply, sn, 3, argv, NULL);
		evtimer_add(sn->qtimer, &tv);
		return;
	}
	sentinel_finish(sn, NULL, 0);
}

/* The sentinel asked did not answer in time. */
static void sentinel_qtimer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sentinel *sn = arg;
	redisAsyncContext *ac = sn->qac;

	(void)fd;
	(void)what;
	if (ac == NULL)
		return;
	log_debug("sentinel", "%s did not answer in time", sn->cfg->redis_sentinels[sn->qidx]);
	sn->qac = NULL;
	ac->data = NULL;
	sentinel_close(ac);
	event_active(sn->qnext, EV_TIMEOUT, 0);
}

int sentinel_ask(struct sentinel *sn, sentinel_addr_fn fn, void *arg)
{
	if (sn->asking || sn->freeing)
		return -1;
	sn->asking = true;
	sn->qfn = fn;
	sn->qarg = arg;
	sn->qtried = 0;
	sn->qdone = false;
	event_active(sn->qnext, EV_TIMEOUT, 0);
	return 0;
}

/* --- following --- */

bool sentinel_parse_switch(const char *payload, const char *name, char *host, size_t cap, int *port)
{
	char n[256], oldh[SENTINEL_HOST_MAX], newh[SENTINEL_HOST_MAX], tail;
	int oldp, newp;

	if (strlen(payload) >= 600 ||
	    sscanf(payload, "%255s %255s %d %255s %d %c", n, oldh, &oldp, newh, &newp, &tail) != 5)
		return false;
	if (strcmp(n, name) != 0 || newp <= 0 || newp > 65535 || strlen(newh) >= cap)
		return false;
	memcpy(host, newh, strlen(newh) + 1);
	*port = newp;
	return true;
}

static void sentinel_sub_schedule(struct sentinel *sn)
{
	struct timeval tv = { sn->sbackoff_ms / 1000, (sn->sbackoff_ms % 1000) * 1000 };

	if (sn->freeing || evtimer_pending(sn->sretry, NULL))
		return;
	sn->sidx = (sn->sidx + 1) % sn->cfg->nredis_sentinels;
	evtimer_add(sn->sretry, &tv);
	sn->sbackoff_ms = sn->sbackoff_ms * 2 > SENTINEL_BACKOFF_MAX_MS ? SENTINEL_BACKOFF_MAX_MS : sn->sbackoff_ms * 2;
}

static void sentinel_sub_on_disconnect(const redisAsyncContext *ac, int status)
{
	struct sentinel *sn = ac->data;

	if (sn == NULL || ac != sn->sac)
		return;
	sn->sac = NULL;
	evtimer_del(sn->stimer);
	if (sn->freeing)
		return;
	if (sn->subscribed && !sn->sdown_logged) {
		log_warn("sentinel", "lost the subscription to %s (%s); following failovers again once a Sentinel "
			"answers", sn->cfg->redis_sentinels[sn->sidx], status == REDIS_OK ? "closed" : ac->errstr);
		sn->sdown_logged = true;
	}
	sn->subscribed = false;
	sentinel_sub_schedule(sn);
}

static void sentinel_caught_up(void *arg, const char *host, int port)
{
	struct sentinel *sn = arg;

	if (host != NULL)
		sn->on_switch(sn->arg, host, port);
}

static void sentinel_sub_msg(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct sentinel *sn = privdata;
	redisReply *r = reply;
	char host[SENTINEL_HOST_MAX];
	int port;

	if (sn->freeing || ac != sn->sac || r == NULL)
		return;
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 || r->element[0]->type != REDIS_REPLY_STRING)
		return;
	if (strcmp(r->element[0]->str, "subscribe") == 0) {
		sn->subscribed = true;
		sn->sdown_logged = false;
		sn->sbackoff_ms = 50;
		evtimer_del(sn->stimer);
		/* A switch while nobody listened is found by asking once. */
		if (!sn->asking)
			sentinel_ask(sn, sentinel_caught_up, sn);
		return;
	}
	if (strcmp(r->element[0]->str, "message") == 0 && r->element[2]->type == REDIS_REPLY_STRING &&
	    sentinel_parse_switch(r->element[2]->str, sn->cfg->redis_master_name, host, sizeof(host), &port)) {
		log_info("sentinel", "master %s switched to %s:%d", sn->cfg->redis_master_name, host, port);
		sn->on_switch(sn->arg, host, port);
	}
}

static void sentinel_sub_connect(struct sentinel *sn)
{
	const struct config *cfg = sn->cfg;
	struct timeval tv = { cfg->redis_timeout_ms / 1000, (cfg->redis_timeout_ms % 1000) * 1000 };
	const char *argv[] = { "SUBSCRIBE", "+switch-master" };
	redisAsyncContext *ac;

	if (sn->freeing || sn->sac != NULL)
		return;
	ac = sentinel_open(sn, sn->sidx, sentinel_sub_on_disconnect);
	if (ac == NULL) {
		sentinel_sub_schedule(sn);
		return;
	}
	sn->sac = ac;
	redisAsyncCommandArgv(ac, sentinel_sub_msg, sn, 2, argv, NULL);
	evtimer_add(sn->stimer, &tv);
}

static void sentinel_recheck_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sentinel *sn = arg;

	(void)fd;
	(void)what;
	if (!sn->asking)
		sentinel_ask(sn, sentinel_caught_up, sn);
}

static void sentinel_sretry_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	sentinel_sub_connect(arg);
}

/* Not subscribed in time: that sentinel is no use, the next one. */
static void sentinel_stimer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sentinel *sn = arg;
	redisAsyncContext *ac = sn->sac;

	(void)fd;
	(void)what;
	if (ac == NULL || sn->subscribed)
		return;
	sn->sac = NULL;
	ac->data = NULL;
	sentinel_close(ac);
	sentinel_sub_schedule(sn);
}

struct sentinel *sentinel_new(struct event_base *base, const struct config *cfg, sentinel_addr_fn on_switch,
	void *arg)
{
	struct sentinel *sn = calloc(1, sizeof(*sn));

	if (sn == NULL)
		return NULL;
	sn->base = base;
	sn->cfg = cfg;
	sn->on_switch = on_switch;
	sn->arg = arg;
	sn->sbackoff_ms = 50;
	sn->qnext = event_new(base, -1, 0, sentinel_qnext_cb, sn);
	sn->qtimer = evtimer_new(base, sentinel_qtimer_cb, sn);
	sn->sretry = evtimer_new(base, sentinel_sretry_cb, sn);
	sn->stimer = evtimer_new(base, sentinel_stimer_cb, sn);
	sn->recheck = event_new(base, -1, EV_PERSIST, sentinel_recheck_cb, sn);
	if (sn->qnext == NULL || sn->qtimer == NULL || sn->sretry == NULL || sn->stimer == NULL || sn->recheck == NULL) {
		sentinel_free(sn);
		return NULL;
	}
	{
		struct timeval tv = { SENTINEL_RECHECK_MS / 1000, (SENTINEL_RECHECK_MS % 1000) * 1000 };
		event_add(sn->recheck, &tv);
	}
	sentinel_sub_connect(sn);
	return sn;
}

void sentinel_free(struct sentinel *sn)
{
	redisAsyncContext *ac;

	if (sn == NULL)
		return;
	sn->freeing = true;
	if ((ac = sn->qac) != NULL) {
		sn->qac = NULL;
		ac->data = NULL;
		sentinel_close(ac);
	}
	if ((ac = sn->sac) != NULL) {
		sn->sac = NULL;
		ac->data = NULL;
		sentinel_close(ac);
	}
	if (sn->qnext)
		event_free(sn->qnext);
	if (sn->qtimer)
		event_free(sn->qtimer);
	if (sn->sretry)
		event_free(sn->sretry);
	if (sn->stimer)
		event_free(sn->stimer);
	if (sn->recheck)
		event_free(sn->recheck);
	free(sn);
}

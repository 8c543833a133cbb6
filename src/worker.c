#include "worker.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <hiredis/hiredis.h>

#include "codes.h"
#include "config.h"
#include "hooks.h"
#include "log.h"
#include "lua.h"
#include "metrics.h"
#include "notify.h"
#include "schema.h"
#include "step.h"
#include "store.h"

/* How long a worker waits for new work in one read. */
#define WORKER_BLOCK_MS 1000
/* Rounds of one step whose records keep changing under it, before it waits. */
#define WORKER_ROUNDS_MAX 10
/* Batches looked at by one pruning script; how often pruning runs at most. */
#define WORKER_PRUNE_BATCH 50
#define WORKER_PRUNE_EVERY_MS 60000

struct worker {
	struct event_base *base;
	const struct config *cfg;
	struct store *store;
	struct codes *codes; /* the records' region and instance codes */
	struct hooks_want *hooks; /* push subscriptions' events of the steps */
	struct notify *notify;
	char consumer[128];
	struct event *tick;
	bool stopping;
	bool busy; /* a worker command is outstanding */
	bool group_ready;
	bool schema_ok;   /* the store holds the layout this binary writes */
	bool schema_logged;
	struct timespec next_claim;
	struct timespec next_prune;
	uint64_t prune_from; /* batches up to this seq need no more pruning */
	uint64_t prune_scan; /* the page of this round starts after this seq */
	uint64_t prune_last; /* the last seq of the page being pruned */
	bool prune_round;    /* a round over every batch is under way */
	/* The step being applied. */
	char entry_id[64];
	char seq[24], start[24], count[24];
	int rounds;
};

static void worker_next(struct worker *w);

static bool worker_due(const struct timespec *now, const struct timespec *at)
{
	return now->tv_sec > at->tv_sec || (now->tv_sec == at->tv_sec && now->tv_nsec >= at->tv_nsec);
}

static void worker_later(struct timespec *at, const struct timespec *now, int ms)
{
	*at = *now;
	at->tv_sec += ms / 1000;
	at->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (at->tv_nsec >= 1000000000L) {
		at->tv_sec++;
		at->tv_nsec -= 1000000000L;
	}
}

/* Pruning runs a quarter of the retention apart (between 1 s and a minute). */
static void worker_prune_later(struct worker *w)
{
	struct timespec now;

	w->prune_round = false;
	long long ms = (long long)w->cfg->worker_batch_retention_s * 250;

	clock_gettime(CLOCK_MONOTONIC, &now);
	worker_later(&w->next_prune, &now,
		ms < 1000 ? 1000 : ms > WORKER_PRUNE_EVERY_MS ? WORKER_PRUNE_EVERY_MS : (int)ms);
}

static void worker_schedule(struct worker *w, int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	w->busy = false;
	if (!w->stopping)
		evtimer_add(w->tick, &tv);
}

static void worker_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	worker_next(arg);
}

static int worker_send(struct worker *w, store_reply_fn fn, int argc, const char **argv)
{
	w->busy = true;
	if (store_write(w->store, fn, w, argc, argv, NULL) < 0) {
		/* Redis is down: look again shortly; nothing is lost meanwhile. */
		worker_schedule(w, 200);
		return -1;
	}
	return 0;
}

static void worker_after_step(struct worker *w)
{
	worker_schedule(w, w->cfg->worker_pause_ms);
}

static void worker_acked(redisReply *reply, void *arg)
{
	struct worker *w = arg;

	(void)reply;
	worker_after_step(w);
}

/* Acknowledges the step and removes it from the stream. */
static void worker_ack(struct worker *w)
{
	const char *ack[] = { "XACK", WORKER_STREAM, WORKER_GROUP, w->entry_id };
	const char *del[] = { "XDEL", WORKER_STREAM, w->entry_id };

	store_command_noreply(w->store, 4, ack, NULL);
	worker_send(w, worker_acked, 3, del);
}

static void worker_failed_reply(redisReply *reply, void *arg)
{
	struct worker *w = arg;

	if (reply && reply->type == REDIS_REPLY_INTEGER && reply->integer == 1) {
		log_error("worker", "batch %s failed: rows from %s could not be applied %d times", w->seq,
			w->start, WORKER_MAX_ATTEMPTS);
		worker_ack(w);
		return;
	}
	/* Left pending: taken again after worker.claim_idle_ms. */
	worker_after_step(w);
}

static void worker_run_step(struct worker *w);

static void worker_applied(enum step_rc rc, const struct step_outcome *out, const char *error, void *arg)
{
	struct worker *w = arg;

	if (rc == STEP_UNKNOWN) {
		/* Unknown how far it got; the step stays pending and running it again is harmless. */
		worker_schedule(w, 200);
		return;
	}
	if (rc == STEP_DONE || rc == STEP_AGAIN) {
		long long n = out->succeeded + out->failed;
		metrics_count(METRICS_BATCH_STEPS);
		for (long long i = 0; i < n; i++)
			metrics_count(METRICS_BATCH_ITEMS);
		for (long long i = 0; i < out->queued; i++)
			metrics_count(METRICS_NOTIFY_QUEUED);
		if (out->queued > 0)
			notify_kick(w->notify);
		log_debug("worker", "batch %s rows %s+%s: %lld recorded%s", w->seq, w->start, w->count, n,
			rc == STEP_AGAIN ? ", some again" : "");
		if (rc == STEP_DONE) {
			worker_ack(w);
		} else if (++w->rounds < WORKER_ROUNDS_MAX) {
			worker_run_step(w);
		} else {
			w->rounds = 0;
			worker_schedule(w, 200);
		}
		return;
	}
	metrics_count(METRICS_BATCH_STEP_FAILURES);
	{
		/* Out of memory: trying again cannot help until an operator acts,
		 * so the batch fails now, with the reason, and can be retried. */
		bool oom = strncmp(error, "OOM", 3) == 0;
		char reason[200], now[24];
		if (oom)
			snprintf(reason, sizeof(reason), "rows from %s: Redis is out of memory (maxmemory); free memory "
				"or raise maxmemory, then retry the batch", w->start);
		else
			snprintf(reason, sizeof(reason), "rows from %s: %.150s", w->start, error);
		log_warn("worker", "batch %s: %s", w->seq, reason);
		snprintf(now, sizeof(now), "%lld", (long long)time(NULL));
		char attempts[8];
		snprintf(attempts, sizeof(attempts), "%d", oom ? 1 : WORKER_MAX_ATTEMPTS);
		char bkey[SCHEMA_KEY_MAX];
		if (schema_batch_key(bkey, sizeof(bkey), strtoull(w->seq, NULL, 10)) < 0) {
			worker_ack(w);
			return;
		}
		const char *argv[] = { "EVAL", lua_fail, "2", bkey, SCHEMA_STATS_BATCHES_KEY, w->seq, w->start, reason, now,
			attempts };
		worker_send(w, worker_failed_reply, 10, argv);
	}
}

/* The brokers of the worker's catalog: the step picks each moved device's
 * old instance's outbox from them. */
static void worker_run_step(struct worker *w)
{
	size_t nmap;
	const char *const *map = notify_broker_map(w->notify, &nmap);

	w->busy = true;
	if (step_run(w->store, w->codes, w->hooks, strtoull(w->seq, NULL, 10), strtoul(w->start, NULL, 10), strtoul(w->count, NULL, 10),
		    map, nmap, worker_applied, w) < 0)
		worker_schedule(w, 200);
}

static void worker_pruned(redisReply *reply, void *arg)
{
	struct worker *w = arg;

	if (reply != NULL && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
	    reply->element[0]->type == REDIS_REPLY_INTEGER && reply->element[1]->type == REDIS_REPLY_INTEGER) {
		if (reply->element[0]->integer > 0)
			log_info("worker", "batch retention: rows and results of %lld batches removed",
				reply->element[0]->integer);
		/* The settled run counts only from where nothing is left to do. */
		if (w->prune_scan == w->prune_from && (uint64_t)reply->element[1]->integer > w->prune_from)
			w->prune_from = (uint64_t)reply->element[1]->integer;
		/* The next page at once: a batch that must wait does not hide
		 * the ones after it. */
		w->prune_scan = w->prune_last;
		worker_schedule(w, 0);
		return;
	} else if (reply != NULL) {
		log_warn("worker", "batch retention: %s", reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected answer");
	}
	worker_prune_later(w);
	worker_schedule(w, 0);
}

/* The batches after prune_from, oldest first: pruned in one script that is
 * given each one's keys. */
static void worker_prune_list(redisReply *reply, void *arg)
{
	struct worker *w = arg;
	char cutoff[24], now[24];
	char (*keys)[5][SCHEMA_KEY_MAX + 4];
	const char **argv;
	size_t n, argc = 0;

	if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements == 0) {
		/* The end of the round (or Redis away): the next in a while. */
		worker_prune_later(w);
		worker_schedule(w, reply == NULL ? 200 : 0);
		return;
	}
	n = reply->elements;
	w->prune_last = strtoull(reply->element[n - 1]->str ? reply->element[n - 1]->str : "0", NULL, 10);
	keys = calloc(n, sizeof(*keys));
	argv = calloc(4 + 6 * n + 2, sizeof(*argv));
	if (keys == NULL || argv == NULL) {
		free(keys);
		free(argv);
		worker_prune_later(w);
		worker_schedule(w, 200);
		return;
	}
	snprintf(cutoff, sizeof(cutoff), "%lld", (long long)time(NULL) - w->cfg->worker_batch_retention_s);
	snprintf(now, sizeof(now), "%lld", (long long)time(NULL));
	argv[argc++] = "EVAL";
	argv[argc++] = lua_prune;
	argc++; /* numkeys, below */
	argv[argc++] = SCHEMA_STATS_BATCHES_KEY;
	for (size_t i = 0; i < n; i++) {
		uint64_t seq = strtoull(reply->element[i]->str ? reply->element[i]->str : "0", NULL, 10);
		if (schema_batch_key(keys[i][0], sizeof(keys[i][0]), seq) < 0 ||
		    schema_batch_part_key(keys[i][1], sizeof(keys[i][1]), seq, 'i') < 0 ||
		    schema_batch_part_key(keys[i][2], sizeof(keys[i][2]), seq, 'r') < 0 ||
		    schema_batch_part_key(keys[i][3], sizeof(keys[i][3]), seq, 'n') < 0 ||
		    schema_batch_part_key(keys[i][4], sizeof(keys[i][4]), seq, 'f') < 0)
			break; /* cannot happen for a decimal seq; the script gets those before */
		for (int k = 0; k < 5; k++)
			argv[argc++] = keys[i][k];
	}
	size_t nkeys = argc - 3, nbatches = (nkeys - 1) / 5;
	char numkeys[24];
	snprintf(numkeys, sizeof(numkeys), "%zu", nkeys);
	argv[2] = numkeys;
	argv[argc++] = cutoff;
	argv[argc++] = now;
	for (size_t i = 0; i < n && i < nbatches; i++)
		argv[argc++] = reply->element[i]->str;
	worker_send(w, worker_pruned, (int)argc, argv);
	free(argv);
	free(keys);
}

static void worker_prune(struct worker *w)
{
	char from[32], count[16];

	if (!w->prune_round) {
		w->prune_round = true;
		w->prune_scan = w->prune_from;
	}
	snprintf(from, sizeof(from), "(%" PRIu64, w->prune_scan);
	snprintf(count, sizeof(count), "%d", WORKER_PRUNE_BATCH);
	const char *argv[] = { "ZRANGEBYSCORE", SCHEMA_BATCHES_KEY, from, "+inf", "LIMIT", "0", count };
	w->busy = true;
	if (store_command(w->store, worker_prune_list, w, 7, argv, NULL) < 0)
		worker_schedule(w, 200);
}

/* ENTRY is [id, [field, value, ...]] from XREADGROUP or XAUTOCLAIM. */
static bool worker_take(struct worker *w, redisReply *entry)
{
	redisReply *fields;

	if (entry->type != REDIS_REPLY_ARRAY || entry->elements != 2 ||
	    entry->element[0]->type != REDIS_REPLY_STRING || entry->element[1]->type != REDIS_REPLY_ARRAY)
		return false;
	fields = entry->element[1];
	snprintf(w->entry_id, sizeof(w->entry_id), "%s", entry->element[0]->str);
	w->seq[0] = w->start[0] = w->count[0] = '\0';
	for (size_t i = 0; i + 1 < fields->elements; i += 2) {
		const char *k = fields->element[i]->str, *v = fields->element[i + 1]->str;
		if (fields->element[i]->type != REDIS_REPLY_STRING || fields->element[i + 1]->type != REDIS_REPLY_STRING)
			continue;
		if (strcmp(k, "b") == 0)
			snprintf(w->seq, sizeof(w->seq), "%s", v);
		else if (strcmp(k, "s") == 0)
			snprintf(w->start, sizeof(w->start), "%s", v);
		else if (strcmp(k, "n") == 0)
			snprintf(w->count, sizeof(w->count), "%s", v);
	}
	if (!w->seq[0] || !w->start[0] || !w->count[0]) {
		log_error("worker", "dropping malformed step %s", w->entry_id);
		worker_ack(w);
		return true;
	}
	w->rounds = 0;
	worker_run_step(w);
	return true;
}

static void worker_read_reply(redisReply *reply, void *arg)
{
	struct worker *w = arg;
	redisReply *entries;

	if (reply == NULL) {
		worker_schedule(w, 200);
		return;
	}
	/* [[stream, [[id, fields]]]] or nil when nothing came within BLOCK. */
	if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 1 &&
	    reply->element[0]->type == REDIS_REPLY_ARRAY && reply->element[0]->elements == 2 &&
	    (entries = reply->element[0]->element[1])->type == REDIS_REPLY_ARRAY && entries->elements > 0 &&
	    worker_take(w, entries->element[0]))
		return;
	if (reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "NOGROUP", 7) == 0)
		w->group_ready = false;
	worker_schedule(w, reply->type == REDIS_REPLY_ERROR ? 500 : 0);
}

static void worker_claim_reply(redisReply *reply, void *arg)
{
	struct worker *w = arg;

	if (reply == NULL) {
		worker_schedule(w, 200);
		return;
	}
	/* [next-id, [[id, fields] ...], [deleted ids]] */
	if (reply->type == REDIS_REPLY_ARRAY && reply->elements >= 2 &&
	    reply->element[1]->type == REDIS_REPLY_ARRAY) {
		for (size_t i = 0; i < reply->element[1]->elements; i++) {
			if (worker_take(w, reply->element[1]->element[i])) {
				metrics_count(METRICS_BATCH_CLAIMS);
				log_info("worker", "took over batch %s rows from %s, left by another worker", w->seq,
					w->start);
				return;
			}
		}
	}
	worker_schedule(w, 0);
}

static void worker_group_reply(redisReply *reply, void *arg)
{
	struct worker *w = arg;

	if (reply && (reply->type == REDIS_REPLY_STATUS ||
			     (reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "BUSYGROUP", 9) == 0))) {
		w->group_ready = true;
		worker_schedule(w, 0);
		return;
	}
	worker_schedule(w, 500);
}

static void worker_schema_reply(redisReply *reply, void *arg)
{
	struct worker *w = arg;

	if (reply != NULL && reply->type == REDIS_REPLY_STRING && strcmp(reply->str, SCHEMA_VERSION) == 0) {
		w->schema_ok = true;
		worker_schedule(w, 0);
		return;
	}
	if (reply != NULL && reply->type == REDIS_REPLY_STRING && !w->schema_logged) {
		log_error("worker", "Redis holds data layout %s, this binary writes %s (docs/key-schema.md): "
			"no batch is applied", reply->str, SCHEMA_VERSION);
		w->schema_logged = true;
	}
	worker_schedule(w, reply == NULL ? 200 : 5000);
}

static void worker_next(struct worker *w)
{
	struct timespec now;
	char idle[24], block[24];

	if (w->stopping || w->busy)
		return;
	if (!store_connected(w->store)) {
		worker_schedule(w, 200);
		return;
	}
	if (!w->schema_ok) {
		const char *argv[] = { "EVAL", lua_schema_check, "1", SCHEMA_VERSION_KEY, SCHEMA_VERSION };
		worker_send(w, worker_schema_reply, 5, argv);
		return;
	}
	if (!w->group_ready) {
		const char *argv[] = { "XGROUP", "CREATE", WORKER_STREAM, WORKER_GROUP, "0", "MKSTREAM" };
		worker_send(w, worker_group_reply, 6, argv);
		return;
	}
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (w->cfg->worker_batch_retention_s > 0 && worker_due(&now, &w->next_prune)) {
		worker_prune(w);
		return;
	}
	if (worker_due(&now, &w->next_claim)) {
		int every = w->cfg->worker_claim_idle_ms / 2;
		if (every > 5000)
			every = 5000;
		worker_later(&w->next_claim, &now, every);
		snprintf(idle, sizeof(idle), "%d", w->cfg->worker_claim_idle_ms);
		const char *argv[] = { "XAUTOCLAIM", WORKER_STREAM, WORKER_GROUP, w->consumer, idle, "0-0",
			"COUNT", "1" };
		worker_send(w, worker_claim_reply, 8, argv);
		return;
	}
	/* An idle wait of BLOCK ms, bounded by BLOCK + redis.timeout_ms. */
	snprintf(block, sizeof(block), "%d", WORKER_BLOCK_MS);
	const char *argv[] = { "XREADGROUP", "GROUP", WORKER_GROUP, w->consumer, "COUNT", "1", "BLOCK", block,
		"STREAMS", WORKER_STREAM, ">" };
	w->busy = true;
	if (store_command_timed(w->store, WORKER_BLOCK_MS + w->cfg->redis_timeout_ms, worker_read_reply, w, 11, argv,
		    NULL) < 0)
		worker_schedule(w, 200);
}

struct worker *worker_new(struct event_base *base, const struct config *cfg, struct notify *notify)
{
	struct worker *w = calloc(1, sizeof(*w));
	char host[64] = "worker";

	if (w == NULL)
		return NULL;
	w->base = base;
	w->cfg = cfg;
	w->notify = notify;
	gethostname(host, sizeof(host) - 1);
	snprintf(w->consumer, sizeof(w->consumer), "%s-%ld-%lx", host, (long)getpid(), (unsigned long)time(NULL));
	w->store = store_new(base, cfg);
	w->codes = w->store ? codes_new(w->store, cfg->redis_timeout_ms) : NULL;
	w->hooks = w->store ? hooks_want_new(w->store) : NULL;
	w->tick = evtimer_new(base, worker_tick, w);
	if (w->store == NULL || w->codes == NULL || w->hooks == NULL || w->tick == NULL) {
		worker_free(w);
		return NULL;
	}
	/* A step counts once the replicas redis.wait_replicas asks for have it. */
	store_durable_replies(w->store);
	/* First look: steps a dead worker left are taken at once if idle long enough. */
	worker_schedule(w, 50);
	return w;
}

void worker_stop(struct worker *w)
{
	if (w == NULL)
		return;
	w->stopping = true;
	evtimer_del(w->tick);
}

bool worker_busy(const struct worker *w)
{
	return w != NULL && w->busy;
}

void worker_free(struct worker *w)
{
	if (w == NULL)
		return;
	w->stopping = true;
	/* Pending callbacks run (with NULL) while the store goes. */
	store_free(w->store);
	codes_free(w->codes);
	hooks_want_free(w->hooks);
	if (w->tick)
		event_free(w->tick);
	free(w);
}

#include "notify.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <hiredis/hiredis.h>
#include <yajl/yajl_gen.h>
#include <yajl/yajl_tree.h>

#include "catalog.h"
#include "config.h"
#include "form.h"
#include "log.h"
#include "lua.h"
#include "metrics.h"
#include "mqtt.h"
#include "schema.h"
#include "store.h"

#define NOTIFY_TICK_MS 100
#define NOTIFY_STREAM_MAX 160
#define NOTIFY_BATCH_READ 50

/* A message published and waiting for its PUBACK. */
struct notify_msg {
	int mid;
	struct timespec at; /* when published */
	char entry[48];
	uint64_t seq;
	unsigned idx;
	char pk[CATALOG_PRODUCT_KEY_MAX + 1];
	char dn[CATALOG_DEVICE_NAME_MAX + 1];
};

struct notify_broker {
	struct notify *n;
	char *key;     /* broker URL (and user): names the outbox */
	char stream[NOTIFY_STREAM_MAX];
	char *url, *username, *password_env, *ca_file, *cert_file, *key_file;
	struct mqtt *mqtt;
	bool connected;
	bool group_ready;
	bool reading;  /* an outbox read is outstanding */
	bool malformed_logged;
	char reason[160];
	struct notify_msg *inflight;
	size_t ninflight;
	double tokens;
	struct timespec refilled;
	struct timespec next_claim;
	uint64_t published, sent, acked, retried, malformed;
};

/* Everything but the map, the kick and the hand-offs below lives on the
 * notify thread, so that libmosquitto's blocking name lookups never stall
 * the threads that serve requests. */
struct notify {
	struct event_base *base; /* the notify thread's own */
	pthread_t thread;
	bool running;
	const struct config *cfg;
	struct store *store;
	struct event *tick, *kick, *reload;
	char consumer[128];
	struct notify_broker **brokers;
	size_t nbrokers;
	atomic_bool stopping;
	/* The caller's thread: the map its worker hands the apply script. */
	char **map; /* instance, broker key, instance, broker key, ... */
	size_t nmap;
	/* Hand-offs between the threads, under lock. */
	pthread_mutex_t lock;
	struct catalog *pending; /* a catalog for the notify thread to take */
	char **snap_keys, **snap_states; /* brokers' state for /readyz */
	size_t snap_n;
	char *snap_metrics;
};

static void notify_snapshot(struct notify *n);

void notify_message_id(uint64_t seq, unsigned idx, char out[32])
{
	snprintf(out, 32, "%" PRIu64 "%06u", seq, idx);
}

int notify_payload(const char *id, char *out, size_t outlen)
{
	yajl_gen g = yajl_gen_alloc(NULL);
	const unsigned char *buf;
	size_t len;
	int rc = -1;

	if (g == NULL)
		return -1;
	yajl_gen_map_open(g);
	yajl_gen_string(g, (const unsigned char *)"id", 2);
	yajl_gen_string(g, (const unsigned char *)id, strlen(id));
	yajl_gen_string(g, (const unsigned char *)"version", 7);
	yajl_gen_string(g, (const unsigned char *)"1.0", 3);
	yajl_gen_string(g, (const unsigned char *)"method", 6);
	yajl_gen_string(g, (const unsigned char *)"thing.bootstrap.notify", 22);
	yajl_gen_string(g, (const unsigned char *)"params", 6);
	yajl_gen_map_open(g);
	yajl_gen_string(g, (const unsigned char *)"cmd", 3);
	yajl_gen_integer(g, 0);
	yajl_gen_map_close(g);
	yajl_gen_map_close(g);
	if (yajl_gen_get_buf(g, &buf, &len) == yajl_gen_status_ok && len < outlen) {
		memcpy(out, buf, len);
		out[len] = '\0';
		rc = (int)len;
	}
	yajl_gen_free(g);
	return rc;
}

int notify_parse_reply_topic(const char *topic, char pk[33], char dn[33])
{
	static const char prefix[] = "/sys/", suffix[] = "/thing/bootstrap/notify_reply";
	const char *p, *slash, *end;
	size_t tl = strlen(topic), sl = sizeof(suffix) - 1;

	if (strncmp(topic, prefix, sizeof(prefix) - 1) != 0 || tl < sizeof(prefix) - 1 + sl ||
	    strcmp(topic + tl - sl, suffix) != 0)
		return -1;
	p = topic + sizeof(prefix) - 1;
	end = topic + tl - sl;
	slash = memchr(p, '/', (size_t)(end - p));
	if (slash == NULL || slash == p || slash + 1 >= end || (size_t)(slash - p) > 32 ||
	    (size_t)(end - slash - 1) > 32 || memchr(slash + 1, '/', (size_t)(end - slash - 1)))
		return -1;
	memcpy(pk, p, (size_t)(slash - p));
	pk[slash - p] = '\0';
	memcpy(dn, slash + 1, (size_t)(end - slash - 1));
	dn[end - slash - 1] = '\0';
	return form_valid_product_key(pk) && form_valid_device_name(dn) ? 0 : -1;
}

int notify_parse_reply(const void *payload, size_t len, char id[32])
{
	const char *code_path[] = { "code", NULL }, *id_path[] = { "id", NULL };
	char text[1024], err[64];
	yajl_val root, code, v;
	const char *s = NULL;
	char num[32];
	int rc = -1;

	id[0] = '\0';
	if (len == 0 || len >= sizeof(text) || memchr(payload, '\0', len))
		return -1;
	memcpy(text, payload, len);
	text[len] = '\0';
	root = yajl_tree_parse(text, err, sizeof(err));
	if (root == NULL || !YAJL_IS_OBJECT(root))
		goto out;
	code = yajl_tree_get(root, code_path, yajl_t_any);
	if (code == NULL || !(YAJL_IS_INTEGER(code) || YAJL_IS_STRING(code)))
		goto out;
	if ((YAJL_IS_INTEGER(code) && YAJL_GET_INTEGER(code) != 200) ||
	    (YAJL_IS_STRING(code) && strcmp(code->u.string, "200") != 0)) {
		rc = 0;
		goto out;
	}
	rc = 1;
	v = yajl_tree_get(root, id_path, yajl_t_any);
	if (v && YAJL_IS_STRING(v)) {
		s = v->u.string;
	} else if (v && YAJL_IS_INTEGER(v)) {
		snprintf(num, sizeof(num), "%lld", YAJL_GET_INTEGER(v));
		s = num;
	}
	if (s) {
		/* The id may come back re-quoted: "\"12000345\"". */
		size_t sl = strlen(s);
		while (sl >= 2 && (s[0] == '"' || s[0] == '\'') && s[sl - 1] == s[0]) {
			s++;
			sl -= 2;
		}
		bool digits = sl >= 7 && sl < 32;
		for (size_t i = 0; digits && i < sl; i++)
			digits = s[i] >= '0' && s[i] <= '9';
		if (digits) {
			memcpy(id, s, sl);
			id[sl] = '\0';
		}
	}
out:
	yajl_tree_free(root);
	return rc;
}

static double notify_since(const struct timespec *t)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - t->tv_sec) + (double)(now.tv_nsec - t->tv_nsec) / 1e9;
}

static void notify_sent_reply(redisReply *reply, void *arg)
{
	struct notify_broker *b = arg;

	if (reply == NULL || reply->type == REDIS_REPLY_ERROR)
		log_warn("notify", "%s: could not record a PUBACK; the message will be sent again", b->key);
}

/* The outbox entry of a message whose states are marked. */
struct notify_done {
	struct notify_broker *b;
	char entry[48];
};

/* Both states marked (each in its own slot, maybe on another node): only
 * then does the outbox entry go. Anything else leaves it there, to be sent
 * again after worker.claim_idle_ms, rather than gone with its states still
 * "pending". */
static void notify_marked(redisReply *all, void *arg)
{
	struct notify_done *d = arg;
	struct notify_broker *b = d->b;

	if (all == NULL || all->elements != 2 || all->element[0]->type == REDIS_REPLY_ERROR ||
	    all->element[1]->type == REDIS_REPLY_ERROR) {
		log_warn("notify", "%s: could not record a PUBACK; the message will be sent again", b->key);
		free(d);
		return;
	}
	const char *ack[] = { "XACK", b->stream, NOTIFY_GROUP, d->entry };
	const char *del[] = { "XDEL", b->stream, d->entry };
	if (store_command(b->n->store, notify_sent_reply, b, 4, ack, NULL) == 0)
		store_command_noreply(b->n->store, 3, del, NULL);
	free(d);
}

static void notify_on_puback(struct mqtt *m, int mid, void *arg)
{
	struct notify_broker *b = arg;
	char field[SCHEMA_FIELD_MAX], seq[24], idx[16];

	(void)m;
	for (size_t i = 0; i < b->ninflight; i++) {
		struct notify_msg *msg = &b->inflight[i];
		struct notify_done *d;
		if (msg->mid != mid)
			continue;
		char ndkey[SCHEMA_KEY_MAX], nkey[SCHEMA_KEY_MAX];
		snprintf(field, sizeof(field), "%s/%s", msg->pk, msg->dn);
		snprintf(seq, sizeof(seq), "%" PRIu64, msg->seq);
		snprintf(idx, sizeof(idx), "%u", msg->idx);
		if (schema_device_key(ndkey, sizeof(ndkey), msg->pk, msg->dn) < 0 ||
		    schema_batch_part_key(nkey, sizeof(nkey), msg->seq, 'n') < 0)
			ndkey[0] = nkey[0] = '\0';
		const char *dev[] = { "EVAL", lua_notify_sent, "1", ndkey, seq, idx, field };
		const char *row[] = { "EVAL", lua_notify_mark, "2", nkey, SCHEMA_STATS_BATCHES_KEY, idx, "sent" };
		const char *const *argvs[] = { dev, row };
		const int argcs[] = { 7, 7 };
		if ((d = calloc(1, sizeof(*d))) == NULL) {
			log_warn("notify", "%s: out of memory; an acknowledged notify will be sent again", b->key);
		} else {
			d->b = b;
			snprintf(d->entry, sizeof(d->entry), "%s", msg->entry);
			if (store_gather_write(b->n->store, b->n->cfg->redis_timeout_ms, 2, argcs, argvs, NULL, notify_marked,
				    d) < 0) {
				log_warn("notify", "%s: Redis unreachable; an acknowledged notify will be sent again", b->key);
				free(d);
			}
		}
		b->sent++;
		metrics_count(METRICS_NOTIFY_SENT);
		b->inflight[i] = b->inflight[--b->ninflight];
		notify_snapshot(b->n);
		return;
	}
}

/* A device's answer, in up to three steps: is the id it answered a row of
 * ours, one with a notify state (the batch's slot)? is it the device's latest notify (the device's
 * slot)? then that row is marked acked (the batch's slot). */
struct notify_ackreq {
	struct notify_broker *b;
	char field[SCHEMA_FIELD_MAX];
	char id[32];
	char ndkey[SCHEMA_KEY_MAX];
	char nkey[SCHEMA_KEY_MAX];
	char idx[16];
};

static void notify_ack_marked(redisReply *reply, void *arg)
{
	struct notify_ackreq *q = arg;

	if (reply == NULL || reply->type == REDIS_REPLY_ERROR)
		log_warn("notify", "%s: a device's acknowledgement was not recorded in its batch", q->b->key);
	free(q);
}

static void notify_ack_reply(redisReply *reply, void *arg)
{
	struct notify_ackreq *q = arg;
	struct notify_broker *b = q->b;
	uint64_t seq;
	unsigned long idx;
	const char *semi;

	if (reply == NULL || reply->type != REDIS_REPLY_STRING || reply->len == 0 ||
	    (semi = memchr(reply->str, ';', reply->len)) == NULL ||
	    schema_parse_u64(reply->str, (size_t)(semi - reply->str), &seq) < 0 ||
	    (idx = strtoul(semi + 1, NULL, 10)) > 999999 ||
	    schema_batch_part_key(q->nkey, sizeof(q->nkey), seq, 'n') < 0) {
		free(q);
		return;
	}
	b->acked++;
	metrics_count(METRICS_NOTIFY_ACKED);
	notify_snapshot(b->n);
	snprintf(q->idx, sizeof(q->idx), "%lu", idx);
	const char *argv[] = { "EVAL", lua_notify_mark, "2", q->nkey, SCHEMA_STATS_BATCHES_KEY, q->idx, "acked" };
	if (store_command(b->n->store, notify_ack_marked, q, 7, argv, NULL) < 0)
		free(q);
}

static void notify_ack_send(struct notify_ackreq *q, bool ours)
{
	const char *argv[] = { "EVAL", lua_notify_ack, "1", q->ndkey, q->field, q->id, ours ? "1" : "0" };

	if (store_command(q->b->n->store, notify_ack_reply, q, 7, argv, NULL) < 0) {
		log_warn("notify", "%s: Redis unreachable; a device's notify reply was not recorded", q->b->key);
		free(q);
	}
}

static void notify_ack_ours_reply(redisReply *reply, void *arg)
{
	struct notify_ackreq *q = arg;

	if (reply == NULL || reply->type != REDIS_REPLY_STRING) {
		free(q);
		return;
	}
	/* The row's notify state: a byte, zero (or none) when it has none. */
	notify_ack_send(q, reply->len == 1 && reply->str[0] != '\0');
}

static void notify_on_message(struct mqtt *m, const char *topic, const void *payload, size_t len, void *arg)
{
	struct notify_broker *b = arg;
	char pk[33], dn[33], id[32];
	struct notify_ackreq *q;
	uint64_t seq;
	size_t idlen;
	int rc;

	(void)m;
	if (notify_parse_reply_topic(topic, pk, dn) < 0 || (rc = notify_parse_reply(payload, len, id)) < 0) {
		b->malformed++;
		if (!b->malformed_logged)
			log_warn("notify", "%s: ignoring a malformed notify reply on %.128s (logged once)", b->key, topic);
		b->malformed_logged = true;
		notify_snapshot(b->n);
		return;
	}
	if (rc == 0)
		return; /* the device refused (code other than 200): nothing to mark */
	if ((q = calloc(1, sizeof(*q))) == NULL)
		return;
	q->b = b;
	snprintf(q->field, sizeof(q->field), "%s/%s", pk, dn);
	snprintf(q->id, sizeof(q->id), "%s", id);
	if (schema_device_key(q->ndkey, sizeof(q->ndkey), pk, dn) < 0) {
		free(q);
		return;
	}
	/* Our ids are the batch number and the row in 6 digits. */
	idlen = strlen(id);
	if (idlen > 6 && schema_parse_u64(id, idlen - 6, &seq) == 0 && strspn(id + idlen - 6, "0123456789") == 6 &&
	    schema_batch_part_key(q->nkey, sizeof(q->nkey), seq, 'n') >= 0) {
		snprintf(q->idx, sizeof(q->idx), "%lu", strtoul(id + idlen - 6, NULL, 10));
		const char *argv[] = { "GETRANGE", q->nkey, q->idx, q->idx };
		if (store_command(b->n->store, notify_ack_ours_reply, q, 4, argv, NULL) < 0) {
			log_warn("notify", "%s: Redis unreachable; a device's notify reply was not recorded", b->key);
			free(q);
		}
		return;
	}
	notify_ack_send(q, false);
}

static void notify_on_state(struct mqtt *m, bool connected, const char *why, void *arg)
{
	struct notify_broker *b = arg;

	(void)m;
	b->connected = connected;
	if (connected) {
		b->reason[0] = '\0';
		log_info("notify", "%s: connected", b->key);
		/* libmosquitto sends what was in flight again itself (same ids);
		 * anything it lost is taken again from the outbox after
		 * worker.claim_idle_ms. */
	} else {
		snprintf(b->reason, sizeof(b->reason), "%s", why && why[0] ? why : "disconnected");
		log_warn("notify", "%s: down: %s", b->key, b->reason);
	}
	notify_snapshot(b->n);
}

/* Publishes the outbox entries in READ ([[id, [f, v, ...]], ...]). */
static void notify_publish_entries(struct notify_broker *b, const redisReply *entries, bool claimed)
{
	char id[32], payload[160], topic[128];

	for (size_t i = 0; i < entries->elements; i++) {
		const redisReply *e = entries->element[i], *f;
		struct notify_msg msg = { 0 };
		int len, mid;

		if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 || e->element[0]->type != REDIS_REPLY_STRING ||
		    (f = e->element[1])->type != REDIS_REPLY_ARRAY)
			continue;
		snprintf(msg.entry, sizeof(msg.entry), "%s", e->element[0]->str);
		for (size_t k = 0; k + 1 < f->elements; k += 2) {
			const char *name = f->element[k]->str, *v = f->element[k + 1]->str;
			if (f->element[k]->type != REDIS_REPLY_STRING || f->element[k + 1]->type != REDIS_REPLY_STRING)
				continue;
			if (strcmp(name, "b") == 0)
				msg.seq = strtoull(v, NULL, 10);
			else if (strcmp(name, "i") == 0)
				msg.idx = (unsigned)strtoul(v, NULL, 10);
			else if (strcmp(name, "p") == 0)
				snprintf(msg.pk, sizeof(msg.pk), "%s", v);
			else if (strcmp(name, "d") == 0)
				snprintf(msg.dn, sizeof(msg.dn), "%s", v);
		}
		if (msg.seq == 0 || !msg.pk[0] || !msg.dn[0] || !form_valid_product_key(msg.pk) ||
		    !form_valid_device_name(msg.dn)) {
			/* Not one of ours: drop it rather than take it again forever. */
			const char *ack[] = { "XACK", b->stream, NOTIFY_GROUP, msg.entry };
			const char *del[] = { "XDEL", b->stream, msg.entry };
			log_warn("notify", "%s: dropping malformed outbox entry %s", b->key, msg.entry);
			store_command_noreply(b->n->store, 4, ack, NULL);
			store_command_noreply(b->n->store, 3, del, NULL);
			continue;
		}
		notify_message_id(msg.seq, msg.idx, id);
		len = notify_payload(id, payload, sizeof(payload));
		snprintf(topic, sizeof(topic), "/sys/%s/%s/thing/bootstrap/notify", msg.pk, msg.dn);
		if (len < 0 || (mid = mqtt_publish(b->mqtt, topic, payload, (size_t)len)) < 0)
			continue; /* left in the outbox: published again later */
		msg.mid = mid;
		clock_gettime(CLOCK_MONOTONIC, &msg.at);
		b->inflight[b->ninflight++] = msg;
		b->tokens -= 1;
		b->published++;
		metrics_count(METRICS_NOTIFY_PUBLISHED);
		if (claimed) {
			b->retried++;
			metrics_count(METRICS_NOTIFY_RETRIED);
		}
	}
	notify_snapshot(b->n);
}

static void notify_read_reply(redisReply *reply, void *arg)
{
	struct notify_broker *b = arg;

	b->reading = false;
	if (reply == NULL || !b->connected)
		return;
	if (reply->type == REDIS_REPLY_ERROR) {
		if (strncmp(reply->str, "NOGROUP", 7) == 0)
			b->group_ready = false;
		return;
	}
	/* [[stream, [[id, fields], ...]]] or nil */
	if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 1 && reply->element[0]->type == REDIS_REPLY_ARRAY &&
	    reply->element[0]->elements == 2 && reply->element[0]->element[1]->type == REDIS_REPLY_ARRAY)
		notify_publish_entries(b, reply->element[0]->element[1], false);
}

static void notify_claim_reply(redisReply *reply, void *arg)
{
	struct notify_broker *b = arg;

	b->reading = false;
	if (reply == NULL || !b->connected || reply->type != REDIS_REPLY_ARRAY || reply->elements < 2 ||
	    reply->element[1]->type != REDIS_REPLY_ARRAY)
		return;
	if (reply->element[1]->elements)
		log_info("notify", "%s: taking over %zu notifications another worker left", b->key,
			reply->element[1]->elements);
	notify_publish_entries(b, reply->element[1], true);
}

static void notify_group_reply(redisReply *reply, void *arg)
{
	struct notify_broker *b = arg;

	b->reading = false;
	if (reply && (reply->type == REDIS_REPLY_STATUS ||
			     (reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "BUSYGROUP", 9) == 0)))
		b->group_ready = true;
}

/* One look at a broker's outbox, when it can take more. */
static void notify_pump(struct notify_broker *b)
{
	struct notify *n = b->n;
	const struct config *cfg = n->cfg;
	double elapsed = notify_since(&b->refilled);
	size_t room;
	char count[16], idle[24];

	/* A message unacknowledged for worker.claim_idle_ms gives up its place:
	 * the outbox hands it out again, and that copy's PUBACK is the one counted. */
	for (size_t i = 0; i < b->ninflight;) {
		if (notify_since(&b->inflight[i].at) * 1000 > cfg->worker_claim_idle_ms)
			b->inflight[i] = b->inflight[--b->ninflight];
		else
			i++;
	}
	b->tokens += elapsed * cfg->notify_rate_per_broker;
	if (b->tokens > cfg->notify_rate_per_broker)
		b->tokens = cfg->notify_rate_per_broker;
	clock_gettime(CLOCK_MONOTONIC, &b->refilled);
	if (!b->connected || b->reading || atomic_load(&n->stopping) || !store_connected(n->store))
		return;
	if (!b->group_ready) {
		const char *argv[] = { "XGROUP", "CREATE", b->stream, NOTIFY_GROUP, "0", "MKSTREAM" };
		b->reading = store_command(n->store, notify_group_reply, b, 6, argv, NULL) == 0;
		return;
	}
	room = (size_t)cfg->notify_inflight_per_broker - b->ninflight;
	if (room > (size_t)b->tokens)
		room = (size_t)b->tokens;
	if (room > NOTIFY_BATCH_READ)
		room = NOTIFY_BATCH_READ;
	if (room == 0)
		return;
	snprintf(count, sizeof(count), "%zu", room);
	if (notify_since(&b->next_claim) >= 0) {
		int every = cfg->worker_claim_idle_ms / 2 > 5000 ? 5000 : cfg->worker_claim_idle_ms / 2;
		clock_gettime(CLOCK_MONOTONIC, &b->next_claim);
		b->next_claim.tv_sec += every / 1000;
		b->next_claim.tv_nsec += (long)(every % 1000) * 1000000L;
		if (b->next_claim.tv_nsec >= 1000000000L) {
			b->next_claim.tv_sec++;
			b->next_claim.tv_nsec -= 1000000000L;
		}
		snprintf(idle, sizeof(idle), "%d", cfg->worker_claim_idle_ms);
		const char *argv[] = { "XAUTOCLAIM", b->stream, NOTIFY_GROUP, n->consumer, idle, "0-0", "COUNT",
			count };
		b->reading = store_command(n->store, notify_claim_reply, b, 8, argv, NULL) == 0;
		return;
	}
	const char *argv[] = { "XREADGROUP", "GROUP", NOTIFY_GROUP, n->consumer, "COUNT", count, "STREAMS",
		b->stream, ">" };
	b->reading = store_command(n->store, notify_read_reply, b, 9, argv, NULL) == 0;
}

static char *notify_render_metrics(const struct notify *n);

static void notify_snapshot_clear(struct notify *n)
{
	for (size_t i = 0; i < n->snap_n; i++) {
		free(n->snap_keys[i]);
		free(n->snap_states[i]);
	}
	free(n->snap_keys);
	free(n->snap_states);
	free(n->snap_metrics);
	n->snap_keys = n->snap_states = NULL;
	n->snap_metrics = NULL;
	n->snap_n = 0;
}

/* What other threads may read: the brokers' states and counters. */
static void notify_snapshot(struct notify *n)
{
	char **keys = calloc(n->nbrokers + 1, sizeof(char *)), **states = calloc(n->nbrokers + 1, sizeof(char *));
	char *metrics = notify_render_metrics(n);
	size_t k = 0;

	for (size_t i = 0; keys && states && i < n->nbrokers; i++) {
		const struct notify_broker *b = n->brokers[i];
		char state[200];
		snprintf(state, sizeof(state), b->connected ? "connected" : "down: %s", b->reason);
		keys[k] = strdup(b->key);
		states[k] = strdup(state);
		if (keys[k] == NULL || states[k] == NULL) {
			free(keys[k]);
			free(states[k]);
			continue;
		}
		k++;
	}
	pthread_mutex_lock(&n->lock);
	notify_snapshot_clear(n);
	n->snap_keys = keys;
	n->snap_states = states;
	n->snap_n = keys && states ? k : 0;
	n->snap_metrics = metrics;
	pthread_mutex_unlock(&n->lock);
}

static void notify_tick(evutil_socket_t fd, short what, void *arg)
{
	struct notify *n = arg;

	(void)fd;
	(void)what;
	for (size_t i = 0; i < n->nbrokers; i++)
		notify_pump(n->brokers[i]);
	if (what & EV_TIMEOUT)
		notify_snapshot(n);
}

void notify_kick(struct notify *n)
{
	if (n)
		event_active(n->kick, EV_READ, 0);
}

static struct notify_broker *notify_find(const struct notify *n, const char *key)
{
	for (size_t i = 0; i < n->nbrokers; i++)
		if (strcmp(n->brokers[i]->key, key) == 0)
			return n->brokers[i];
	return NULL;
}

static void notify_broker_free(struct notify_broker *b)
{
	if (b == NULL)
		return;
	mqtt_free(b->mqtt);
	free(b->inflight);
	free(b->key);
	free(b->url);
	free(b->username);
	free(b->password_env);
	free(b->ca_file);
	free(b->cert_file);
	free(b->key_file);
	free(b);
}

static const struct mqtt_callbacks notify_mqtt_callbacks = {
	.on_state = notify_on_state,
	.on_puback = notify_on_puback,
	.on_message = notify_on_message,
};

/* The broker key: its URL, and the user when there is one. */
static int notify_broker_key(const struct catalog_notify *nc, char *out, size_t len)
{
	int n = snprintf(out, len, "%s%s%s", nc->broker, nc->username ? "#" : "", nc->username ? nc->username : "");

	return n < 0 || (size_t)n >= len ? -1 : 0;
}

static struct notify_broker *notify_broker_new(struct notify *n, const struct catalog_notify *nc, const char *key)
{
	struct notify_broker *b = calloc(1, sizeof(*b));
	struct mqtt_options opt = { 0 };
	char client_id[160], *cause = NULL;
	const char *password = NULL;

	if (b == NULL)
		return NULL;
	b->n = n;
	b->key = strdup(key);
	b->url = strdup(nc->broker);
	b->username = nc->username ? strdup(nc->username) : NULL;
	b->password_env = nc->password_env ? strdup(nc->password_env) : NULL;
	b->ca_file = nc->ca_file ? strdup(nc->ca_file) : NULL;
	b->cert_file = nc->cert_file ? strdup(nc->cert_file) : NULL;
	b->key_file = nc->key_file ? strdup(nc->key_file) : NULL;
	b->inflight = calloc((size_t)n->cfg->notify_inflight_per_broker, sizeof(*b->inflight));
	if (!b->key || !b->url || !b->inflight) {
		notify_broker_free(b);
		return NULL;
	}
	if (schema_outbox_key(b->stream, sizeof(b->stream), key) < 0) {
		notify_broker_free(b);
		return NULL;
	}
	snprintf(b->reason, sizeof(b->reason), "connecting");
	clock_gettime(CLOCK_MONOTONIC, &b->refilled);
	b->next_claim = b->refilled;
	if (b->password_env) {
		password = getenv(b->password_env);
		if (password == NULL)
			log_warn("notify", "%s: %s is not set; connecting without a password", key, b->password_env);
	}
	snprintf(client_id, sizeof(client_id), "%s-%zu", n->consumer, n->nbrokers);
	opt.url = b->url;
	opt.username = b->username;
	opt.password = password;
	opt.ca_file = b->ca_file;
	opt.cert_file = b->cert_file;
	opt.key_file = b->key_file;
	opt.client_id = client_id;
	opt.subscribe = "/sys/+/+/thing/bootstrap/notify_reply";
	opt.max_inflight = n->cfg->notify_inflight_per_broker;
	b->mqtt = mqtt_new(n->base, &opt, &notify_mqtt_callbacks, b, &cause);
	if (b->mqtt == NULL) {
		log_error("notify", "%s: %s", key, cause ? cause : "cannot make an MQTT client");
		snprintf(b->reason, sizeof(b->reason), "%s", cause ? cause : "unusable");
		free(cause);
	}
	return b;
}

static void notify_map_clear(struct notify *n)
{
	for (size_t i = 0; i < n->nmap; i++)
		free(n->map[i]);
	free(n->map);
	n->map = NULL;
	n->nmap = 0;
}

/* The caller's thread: which broker each instance's devices are told through. */
static void notify_map_build(struct notify *n, const struct catalog *cat)
{
	char key[NOTIFY_STREAM_MAX - 8];
	size_t ninst = 0;

	notify_map_clear(n);
	for (size_t r = 0; r < cat->nregions; r++)
		ninst += cat->regions[r].ninstances;
	n->map = calloc(2 * ninst + 1, sizeof(*n->map));
	for (size_t r = 0; n->map && r < cat->nregions; r++) {
		for (size_t i = 0; i < cat->regions[r].ninstances; i++) {
			const struct catalog_instance *inst = &cat->regions[r].instances[i];

			if (inst->notify.broker == NULL)
				continue;
			if (notify_broker_key(&inst->notify, key, sizeof(key)) < 0) {
				log_error("notify", "instance %s: broker URL and user too long to name an outbox", inst->id);
				continue;
			}
			if ((n->map[n->nmap] = strdup(inst->id)) == NULL)
				continue;
			if ((n->map[n->nmap + 1] = strdup(key)) == NULL) {
				free(n->map[n->nmap]);
				n->map[n->nmap] = NULL;
				continue;
			}
			n->nmap += 2;
		}
	}
}

/* The notify thread: a client for every broker not seen before, and again
 * for one that could not start (an unreadable ca_file, say). */
static void notify_apply_brokers(struct notify *n, const struct catalog *cat)
{
	char key[NOTIFY_STREAM_MAX - 8];

	for (size_t r = 0; r < cat->nregions; r++) {
		for (size_t i = 0; i < cat->regions[r].ninstances; i++) {
			const struct catalog_instance *inst = &cat->regions[r].instances[i];
			struct notify_broker *b;

			if (inst->notify.broker == NULL || notify_broker_key(&inst->notify, key, sizeof(key)) < 0)
				continue;
			b = notify_find(n, key);
			if (b && b->mqtt == NULL) {
				struct notify_broker *fresh = notify_broker_new(n, &inst->notify, key);
				if (fresh) {
					for (size_t k = 0; k < n->nbrokers; k++)
						if (n->brokers[k] == b)
							n->brokers[k] = fresh;
					notify_broker_free(b);
				}
				continue;
			}
			if (b)
				continue;
			struct notify_broker **grown = realloc(n->brokers, (n->nbrokers + 1) * sizeof(*grown));
			if (grown == NULL)
				continue;
			n->brokers = grown;
			b = notify_broker_new(n, &inst->notify, key);
			if (b)
				n->brokers[n->nbrokers++] = b;
		}
	}
	notify_snapshot(n);
}

static void notify_reload(evutil_socket_t fd, short what, void *arg)
{
	struct notify *n = arg;
	struct catalog *cat;

	(void)fd;
	(void)what;
	pthread_mutex_lock(&n->lock);
	cat = n->pending;
	n->pending = NULL;
	pthread_mutex_unlock(&n->lock);
	if (cat) {
		notify_apply_brokers(n, cat);
		catalog_unref(cat);
	}
}

void notify_catalog(struct notify *n, const struct catalog *cat)
{
	struct catalog *old;

	if (n == NULL)
		return;
	notify_map_build(n, cat);
	pthread_mutex_lock(&n->lock);
	old = n->pending;
	n->pending = catalog_ref((struct catalog *)cat);
	pthread_mutex_unlock(&n->lock);
	catalog_unref(old);
	event_active(n->reload, EV_READ, 0);
}

const char *const *notify_broker_map(const struct notify *n, size_t *count)
{
	*count = n ? n->nmap : 0;
	return n ? (const char *const *)n->map : NULL;
}

void notify_stop(struct notify *n)
{
	if (n)
		atomic_store(&n->stopping, true);
}

static void *notify_thread_main(void *arg)
{
	struct notify *n = arg;

	event_base_dispatch(n->base);
	return NULL;
}

struct notify *notify_new(const struct config *cfg, const struct catalog *cat)
{
	struct notify *n = calloc(1, sizeof(*n));
	struct timeval tick = { 0, NOTIFY_TICK_MS * 1000 };
	char host[64] = "worker";

	if (n == NULL)
		return NULL;
	mqtt_global_init();
	pthread_mutex_init(&n->lock, NULL);
	atomic_init(&n->stopping, false);
	n->cfg = cfg;
	gethostname(host, sizeof(host) - 1);
	snprintf(n->consumer, sizeof(n->consumer), "bootstrapd-%s-%ld-%lx", host, (long)getpid(),
		(unsigned long)time(NULL));
	n->base = event_base_new();
	if (n->base == NULL)
		goto fail;
	n->store = store_new(n->base, cfg);
	n->tick = event_new(n->base, -1, EV_PERSIST, notify_tick, n);
	n->kick = event_new(n->base, -1, 0, notify_tick, n);
	n->reload = event_new(n->base, -1, 0, notify_reload, n);
	if (n->store == NULL || n->tick == NULL || n->kick == NULL || n->reload == NULL ||
	    event_add(n->tick, &tick) < 0)
		goto fail;
	notify_catalog(n, cat);
	if (pthread_create(&n->thread, NULL, notify_thread_main, n) != 0)
		goto fail;
	n->running = true;
	return n;
fail:
	notify_free(n);
	return NULL;
}

void notify_free(struct notify *n)
{
	if (n == NULL)
		return;
	if (n->running) {
		event_base_loopexit(n->base, NULL);
		pthread_join(n->thread, NULL);
	}
	/* The notify thread is gone: its state is ours now. MQTT first (its
	 * callbacks write to Redis), then Redis (whose pending callbacks, run
	 * now with NULL, still find their brokers), then the rest. */
	for (size_t i = 0; i < n->nbrokers; i++) {
		mqtt_free(n->brokers[i]->mqtt);
		n->brokers[i]->mqtt = NULL;
	}
	store_free(n->store);
	for (size_t i = 0; i < n->nbrokers; i++)
		notify_broker_free(n->brokers[i]);
	free(n->brokers);
	if (n->tick)
		event_free(n->tick);
	if (n->kick)
		event_free(n->kick);
	if (n->reload)
		event_free(n->reload);
	if (n->base)
		event_base_free(n->base);
	catalog_unref(n->pending);
	notify_map_clear(n);
	notify_snapshot_clear(n);
	pthread_mutex_destroy(&n->lock);
	free(n);
}

void notify_gen_brokers(struct notify *n, yajl_gen g)
{
	yajl_gen_string(g, (const unsigned char *)"brokers", 7);
	yajl_gen_map_open(g);
	if (n) {
		pthread_mutex_lock(&n->lock);
		for (size_t i = 0; i < n->snap_n; i++) {
			yajl_gen_string(g, (const unsigned char *)n->snap_keys[i], strlen(n->snap_keys[i]));
			yajl_gen_string(g, (const unsigned char *)n->snap_states[i], strlen(n->snap_states[i]));
		}
		pthread_mutex_unlock(&n->lock);
	}
	yajl_gen_map_close(g);
}

char *notify_metrics(struct notify *n)
{
	char *out = NULL;

	if (n == NULL)
		return NULL;
	pthread_mutex_lock(&n->lock);
	if (n->snap_metrics)
		out = strdup(n->snap_metrics);
	pthread_mutex_unlock(&n->lock);
	return out;
}

static char *notify_render_metrics(const struct notify *n)
{
	static const char *const names[] = { "published", "sent", "acked", "retried", "malformed" };
	size_t cap = 512 + (n ? n->nbrokers : 0) * 1024, off = 0;
	char *out = malloc(cap);

	if (out == NULL)
		return NULL;
	out[0] = '\0';
	off += (size_t)snprintf(out + off, cap - off,
		"# HELP bootstrapd_notify_broker_messages_total Notify messages by broker and what happened.\n"
		"# TYPE bootstrapd_notify_broker_messages_total counter\n");
	for (size_t i = 0; n && i < n->nbrokers; i++) {
		const struct notify_broker *b = n->brokers[i];
		const uint64_t v[] = { b->published, b->sent, b->acked, b->retried, b->malformed };
		for (size_t k = 0; k < 5 && off < cap; k++)
			off += (size_t)snprintf(out + off, cap - off,
				"bootstrapd_notify_broker_messages_total{broker=\"%s\",event=\"%s\"} %llu\n", b->key,
				names[k], (unsigned long long)v[k]);
	}
	if (off < cap)
		off += (size_t)snprintf(out + off, cap - off,
			"# HELP bootstrapd_notify_broker_up Whether the worker is connected to the broker.\n"
			"# TYPE bootstrapd_notify_broker_up gauge\n");
	for (size_t i = 0; n && i < n->nbrokers && off < cap; i++)
		off += (size_t)snprintf(out + off, cap - off, "bootstrapd_notify_broker_up{broker=\"%s\"} %d\n",
			n->brokers[i]->key, n->brokers[i]->connected ? 1 : 0);
	return out;
}

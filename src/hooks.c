#include "hooks.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <curl/curl.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <openssl/crypto.h>

#include "config.h"
#include "log.h"
#include "lua.h"
#include "schema.h"
#include "secret.h"
#include "store.h"

const char *const hooks_event_names[HOOKS_NEVENTS] = { "batch.completed", "device.distributed",
	"device.activated", "device.registered" };

unsigned hooks_event_bit(const char *name, size_t len)
{
	for (unsigned i = 0; i < HOOKS_NEVENTS; i++)
		if (strlen(hooks_event_names[i]) == len && memcmp(hooks_event_names[i], name, len) == 0)
			return 1u << i;
	return 0;
}

static const char *hooks_event_name(enum hooks_event type)
{
	for (unsigned i = 0; i < HOOKS_NEVENTS; i++)
		if ((unsigned)type == 1u << i)
			return hooks_event_names[i];
	return "unknown";
}

int hooks_sign(const char *secret, const char *body, size_t len, char *out, size_t outlen)
{
	char hex[SECRET_HMAC_HEX_MAX + 1];
	int n;

	if (secret_hmac_hex("hmacsha256", secret, body, len, hex, sizeof(hex)) != 64)
		return -1;
	n = snprintf(out, outlen, "sha256=%s", hex);
	OPENSSL_cleanse(hex, sizeof(hex));
	return n < 0 || (size_t)n >= outlen ? -1 : n;
}

long hooks_backoff_ms(int attempts, int scale)
{
	long ms = 1000;

	for (int i = 1; i < attempts && ms < 60000; i++)
		ms *= 2;
	if (ms > 60000)
		ms = 60000;
	return ms / (scale > 0 ? scale : 1);
}

bool hooks_invalid(int attempts, time_t first, time_t now, int scale)
{
	return attempts >= HOOKS_INVALID_TRIES && (now - first) * (scale > 0 ? scale : 1) >= HOOKS_INVALID_S;
}

/* The tests' time scale (BOOTSTRAPD_TEST_HOOKS_SCALE), 1 otherwise. */
static int hooks_scale(void)
{
	const char *s = getenv("BOOTSTRAPD_TEST_HOOKS_SCALE");
	int v = s ? atoi(s) : 1;

	return v > 0 && v <= 1000 ? v : 1;
}

/* --- producers --- */

#define HOOKS_WANT_REFRESH_S 1

/* Bumped when this process makes or ends a subscription: every thread's
 * producer reads the subscriptions again before it drops an event. */
static atomic_uint hooks_generation;

struct hooks_want {
	struct store *store;
	unsigned mask;  /* what some subscription wants */
	bool known;     /* mask read at least once, since GENERATION */
	bool reading;
	time_t read_at;
	unsigned generation;
};

struct hooks_want *hooks_want_new(struct store *st)
{
	struct hooks_want *w = calloc(1, sizeof(*w));

	if (w) {
		w->store = st;
		w->generation = atomic_load(&hooks_generation);
	}
	return w;
}

void hooks_want_free(struct hooks_want *w)
{
	free(w);
}

void hooks_subscriptions_changed(void)
{
	atomic_fetch_add(&hooks_generation, 1);
}

/* "url US events US sealed-hex US createdAt": the events a subscription wants. */
static unsigned hooks_record_mask(const char *rec, size_t len)
{
	const char *us = memchr(rec, '\x1f', len), *end;
	unsigned mask = 0;

	if (us == NULL || (end = memchr(us + 1, '\x1f', len - (size_t)(us + 1 - rec))) == NULL)
		return 0;
	for (const char *p = us + 1; p < end;) {
		const char *c = memchr(p, ',', (size_t)(end - p));
		size_t l = c ? (size_t)(c - p) : (size_t)(end - p);
		mask |= hooks_event_bit(p, l);
		p += l + 1;
	}
	return mask;
}

static void hooks_want_read(redisReply *reply, void *arg)
{
	struct hooks_want *w = arg;
	unsigned mask = 0;

	w->reading = false;
	/* A read sent before the last change may miss the new subscription. */
	if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || w->generation != atomic_load(&hooks_generation))
		return;
	for (size_t i = 0; i + 1 < reply->elements; i += 2)
		if (reply->element[i + 1]->type == REDIS_REPLY_STRING)
			mask |= hooks_record_mask(reply->element[i + 1]->str, reply->element[i + 1]->len);
	w->mask = mask;
	w->known = true;
}

static struct log_limit hooks_emit_log;

static void hooks_emitted(redisReply *reply, void *arg)
{
	unsigned long held;

	(void)arg;
	if ((reply == NULL || reply->type == REDIS_REPLY_ERROR) && log_limit_pass(&hooks_emit_log, &held))
		log_warn("hooks", "an event was not queued (%s; %lu more not logged)", reply ? reply->str : "no answer",
			held);
}

void hooks_emit(struct hooks_want *w, enum hooks_event type, const char *data_json)
{
	time_t now = time(NULL);
	char at[24];

	if (w == NULL)
		return;
	unsigned gen = atomic_load(&hooks_generation);
	if (gen != w->generation) {
		/* Subscriptions changed here: queue everything until read again. */
		w->generation = gen;
		w->known = false;
		w->read_at = 0;
	}
	if (!w->reading && now - w->read_at >= HOOKS_WANT_REFRESH_S) {
		const char *argv[] = { "HGETALL", SCHEMA_SUBS_KEY };
		w->read_at = now;
		w->reading = store_command(w->store, hooks_want_read, w, 2, argv, NULL) == 0;
	}
	/* Before the first answer, queue it: a subscription may be waiting. */
	if (w->known && !(w->mask & (unsigned)type))
		return;
	snprintf(at, sizeof(at), "%lld", (long long)now);
	const char *argv[] = { "XADD", SCHEMA_EVENTS_KEY, "*", "t", hooks_event_name(type), "at", at, "d", data_json };
	if (store_write(w->store, hooks_emitted, NULL, 9, argv, NULL) < 0)
		hooks_emitted(NULL, NULL);
}

/* --- deliveries --- */

#define HOOKS_TICK_MS 200
#define HOOKS_RELOAD_S 5
#define HOOKS_TRIM_S 60
#define HOOKS_PROBE_MS 60000

struct hooks;

struct hooks_sub {
	struct hooks *h;
	uint64_t id;
	char url[HOOKS_URL_MAX + 1];
	unsigned mask;
	char secret[HOOKS_SECRET_MAX + 1];
	char group[32], skey[48];
	bool seen;     /* in the last reload */
	bool busy;     /* a read or a delivery in flight */
	bool pending_done; /* its own pending entries read: new ones next */
	int attempts;
	time_t first_fail;
	bool invalid;
	struct timespec due;
	/* The delivery in flight. */
	char entry[48];
	char *body;
	CURL *easy;
	struct curl_slist *headers;
	char error[CURL_ERROR_SIZE];
};

struct hooks {
	const struct config *cfg;
	const struct secret_key *key;
	struct event_base *base;
	struct store *store;
	struct event *tick, *curl_timer;
	CURLM *multi;
	pthread_t thread;
	bool running;
	atomic_bool stopping;
	struct hooks_sub **subs;
	size_t nsubs;
	bool loading, loaded;
	time_t loaded_at, trimmed_at;
	int scale;
};

static void hooks_now(struct timespec *ts)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
}

static void hooks_later(struct timespec *ts, long ms)
{
	hooks_now(ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (ms % 1000) * 1000000;
	if (ts->tv_nsec >= 1000000000) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000;
	}
}

static bool hooks_due(const struct timespec *due)
{
	struct timespec now;

	hooks_now(&now);
	return now.tv_sec > due->tv_sec || (now.tv_sec == due->tv_sec && now.tv_nsec >= due->tv_nsec);
}

static void hooks_sub_free(struct hooks_sub *s)
{
	if (s == NULL)
		return;
	if (s->easy) {
		curl_multi_remove_handle(s->h->multi, s->easy);
		curl_easy_cleanup(s->easy);
	}
	curl_slist_free_all(s->headers);
	free(s->body);
	OPENSSL_cleanse(s->secret, sizeof(s->secret));
	free(s);
}

static void hooks_state(struct hooks_sub *s, int argc, const char **argv)
{
	store_command_noreply(s->h->store, argc, argv, NULL);
}

/* The delivery's handle, headers and body go. */
static void hooks_sub_clear(struct hooks_sub *s)
{
	if (s->easy) {
		curl_multi_remove_handle(s->h->multi, s->easy);
		curl_easy_cleanup(s->easy);
	}
	s->easy = NULL;
	curl_slist_free_all(s->headers);
	s->headers = NULL;
	free(s->body);
	s->body = NULL;
	s->busy = false;
}

/* The delivery ended: 2xx acknowledges the event, anything else is retried. */
static void hooks_finished(struct hooks_sub *s, CURLcode rc)
{
	long status = 0;
	char err[CURL_ERROR_SIZE + 32], now[24];

	curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &status);
	hooks_sub_clear(s);
	snprintf(now, sizeof(now), "%lld", (long long)time(NULL));
	if (rc == CURLE_OK && status >= 200 && status < 300) {
		const char *ack[] = { "XACK", SCHEMA_EVENTS_KEY, s->group, s->entry };
		const char *st[] = { "HSET", s->skey, "state", "active", "lastDeliveredAt", now, "lastError", "" };
		const char *inc[] = { "HINCRBY", s->skey, "delivered", "1" };
		store_command_noreply(s->h->store, 4, ack, NULL);
		hooks_state(s, 8, st);
		hooks_state(s, 4, inc);
		if (s->invalid)
			log_info("hooks", "subscription %" PRIu64 " answers again: active", s->id);
		s->attempts = 0;
		s->invalid = false;
		hooks_now(&s->due);
		return;
	}
	if (rc == CURLE_OK)
		snprintf(err, sizeof(err), "HTTP %ld", status);
	else
		snprintf(err, sizeof(err), "%s", s->error[0] ? s->error : curl_easy_strerror(rc));
	/* The event stays pending in the group: the next read takes it again. */
	s->pending_done = false;
	if (s->attempts++ == 0)
		s->first_fail = time(NULL);
	if (!s->invalid && hooks_invalid(s->attempts, s->first_fail, time(NULL), s->h->scale)) {
		s->invalid = true;
		log_warn("hooks", "subscription %" PRIu64 " (%s) failed %d times since %lld: invalid, probed every %d s",
			s->id, s->url, s->attempts, (long long)s->first_fail, HOOKS_PROBE_MS / 1000 / s->h->scale);
	}
	const char *st[] = { "HSET", s->skey, "state", s->invalid ? "invalid" : "failing", "lastError", err,
		"lastAttemptAt", now };
	hooks_state(s, 8, st);
	hooks_later(&s->due, s->invalid ? HOOKS_PROBE_MS / s->h->scale : hooks_backoff_ms(s->attempts, s->h->scale));
}

static void hooks_check_multi(struct hooks *h)
{
	CURLMsg *m;
	int left;

	while ((m = curl_multi_info_read(h->multi, &left)) != NULL) {
		struct hooks_sub *s = NULL;
		if (m->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&s);
		if (s)
			hooks_finished(s, m->data.result);
	}
}

static void hooks_on_socket_event(evutil_socket_t fd, short what, void *arg)
{
	struct hooks *h = arg;
	int running, flags = (what & EV_READ ? CURL_CSELECT_IN : 0) | (what & EV_WRITE ? CURL_CSELECT_OUT : 0);

	curl_multi_socket_action(h->multi, fd, flags, &running);
	hooks_check_multi(h);
}

static int hooks_socket_cb(CURL *e, curl_socket_t fd, int what, void *userp, void *socketp)
{
	struct hooks *h = userp;
	struct event *ev = socketp;

	(void)e;
	if (what == CURL_POLL_REMOVE) {
		if (ev) {
			event_free(ev);
			curl_multi_assign(h->multi, fd, NULL);
		}
		return 0;
	}
	short kind = (short)(EV_PERSIST | (what & CURL_POLL_IN ? EV_READ : 0) | (what & CURL_POLL_OUT ? EV_WRITE : 0));
	if (ev)
		event_free(ev);
	ev = event_new(h->base, fd, kind, hooks_on_socket_event, h);
	if (ev == NULL || event_add(ev, NULL) < 0)
		return -1;
	curl_multi_assign(h->multi, fd, ev);
	return 0;
}

static void hooks_on_curl_timer(evutil_socket_t fd, short what, void *arg)
{
	struct hooks *h = arg;
	int running;

	(void)fd;
	(void)what;
	curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	hooks_check_multi(h);
}

static int hooks_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	struct hooks *h = userp;
	struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };

	(void)multi;
	if (timeout_ms < 0)
		evtimer_del(h->curl_timer);
	else
		evtimer_add(h->curl_timer, &tv);
	return 0;
}

/* POSTs the event (ENTRY, its fields FV) to S, signed. */
static void hooks_deliver(struct hooks_sub *s, const char *entry, const char *type, const char *at, const char *data)
{
	char sig[80], delivery[96], event[64], iso[32];
	time_t t = (time_t)strtoll(at, NULL, 10);
	struct tm tm;

	iso[0] = '\0';
	if (gmtime_r(&t, &tm))
		strftime(iso, sizeof(iso), "%Y-%m-%dT%H:%M:%SZ", &tm);
	snprintf(s->entry, sizeof(s->entry), "%s", entry);
	/* The id is the stream entry's: the same event has the same id at every retry. */
	if (asprintf(&s->body, "{\"id\":\"%s\",\"type\":\"%s\",\"at\":\"%s\",\"data\":%s}", entry, type, iso,
		    data[0] ? data : "{}") < 0) {
		s->body = NULL;
		goto fail;
	}
	if (hooks_sign(s->secret, s->body, strlen(s->body), sig, sizeof(sig)) < 0)
		goto fail;
	char hdr[128];
	snprintf(hdr, sizeof(hdr), "X-Bootstrapd-Signature: %s", sig);
	snprintf(delivery, sizeof(delivery), "X-Bootstrapd-Delivery: %" PRIu64 "-%s", s->id, entry);
	snprintf(event, sizeof(event), "X-Bootstrapd-Event: %s", type);
	s->headers = curl_slist_append(NULL, "Content-Type: application/json");
	s->headers = curl_slist_append(s->headers, hdr);
	s->headers = curl_slist_append(s->headers, delivery);
	s->headers = curl_slist_append(s->headers, event);
	s->headers = curl_slist_append(s->headers, "Expect:");
	if (s->headers == NULL || (s->easy = curl_easy_init()) == NULL)
		goto fail;
	s->error[0] = '\0';
	curl_easy_setopt(s->easy, CURLOPT_URL, s->url);
	curl_easy_setopt(s->easy, CURLOPT_POSTFIELDS, s->body);
	curl_easy_setopt(s->easy, CURLOPT_POSTFIELDSIZE, (long)strlen(s->body));
	curl_easy_setopt(s->easy, CURLOPT_HTTPHEADER, s->headers);
	curl_easy_setopt(s->easy, CURLOPT_TIMEOUT_MS, (long)HOOKS_TIMEOUT_MS);
	curl_easy_setopt(s->easy, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
	curl_easy_setopt(s->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(s->easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(s->easy, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(s->easy, CURLOPT_USERAGENT, "bootstrapd/" BOOTSTRAPD_VERSION);
	curl_easy_setopt(s->easy, CURLOPT_ERRORBUFFER, s->error);
	curl_easy_setopt(s->easy, CURLOPT_PRIVATE, (char *)s);
	if (curl_multi_add_handle(s->h->multi, s->easy) != CURLM_OK)
		goto fail;
	return;
fail:
	log_warn("hooks", "subscription %" PRIu64 ": cannot make the delivery (out of memory)", s->id);
	hooks_sub_clear(s);
	hooks_later(&s->due, 1000);
}

static const char *hooks_field(const redisReply *fv, const char *name)
{
	for (size_t i = 0; fv->type == REDIS_REPLY_ARRAY && i + 1 < fv->elements; i += 2)
		if (fv->element[i]->type == REDIS_REPLY_STRING && strcmp(fv->element[i]->str, name) == 0 &&
		    fv->element[i + 1]->type == REDIS_REPLY_STRING)
			return fv->element[i + 1]->str;
	return "";
}

static void hooks_read_reply(redisReply *reply, void *arg)
{
	struct hooks_sub *s = arg;
	const redisReply *entries, *e;

	if (reply == NULL || s->h == NULL) {
		if (s->h)
			s->busy = false;
		return;
	}
	s->busy = false;
	if (reply->type == REDIS_REPLY_ERROR) {
		/* The group went: the subscription was deleted (a reload forgets it). */
		if (strncmp(reply->str, "NOGROUP", 7) == 0)
			s->h->loaded_at = 0;
		hooks_later(&s->due, 1000);
		return;
	}
	/* [[stream, [[id, [f, v, ...]], ...]]] or nil */
	if (reply->type != REDIS_REPLY_ARRAY || reply->elements == 0 ||
	    (entries = reply->element[0])->type != REDIS_REPLY_ARRAY || entries->elements != 2 ||
	    entries->element[1]->type != REDIS_REPLY_ARRAY || entries->element[1]->elements == 0) {
		if (!s->pending_done) {
			s->pending_done = true; /* nothing left of before: new events now */
			hooks_now(&s->due);
		} else {
			hooks_later(&s->due, 500);
		}
		return;
	}
	e = entries->element[1]->element[0];
	if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 || e->element[0]->type != REDIS_REPLY_STRING) {
		hooks_later(&s->due, 1000);
		return;
	}
	const char *type = hooks_field(e->element[1], "t");
	if (!(s->mask & hooks_event_bit(type, strlen(type)))) {
		/* Not one it wants: it leaves the group at once. */
		const char *ack[] = { "XACK", SCHEMA_EVENTS_KEY, s->group, e->element[0]->str };
		store_command_noreply(s->h->store, 4, ack, NULL);
		hooks_now(&s->due);
		return;
	}
	s->busy = true;
	hooks_deliver(s, e->element[0]->str, type, hooks_field(e->element[1], "at"), hooks_field(e->element[1], "d"));
}

static void hooks_read(struct hooks_sub *s)
{
	/* First what was read before and never acknowledged (a restart), then new events. */
	const char *argv[] = { "XREADGROUP", "GROUP", s->group, "d", "COUNT", "1", "STREAMS", SCHEMA_EVENTS_KEY,
		s->pending_done ? ">" : "0" };

	s->busy = true;
	if (store_command(s->h->store, hooks_read_reply, s, 9, argv, NULL) < 0) {
		s->busy = false;
		hooks_later(&s->due, 1000);
	}
}

static struct hooks_sub *hooks_find(struct hooks *h, uint64_t id)
{
	for (size_t i = 0; i < h->nsubs; i++)
		if (h->subs[i]->id == id)
			return h->subs[i];
	return NULL;
}

/* One subscription from its record "url US events US sealed-hex US createdAt". */
static void hooks_take(struct hooks *h, uint64_t id, const char *rec, size_t len)
{
	const char *f[4];
	size_t fl[4], n = 0, start = 0;
	struct hooks_sub *s = hooks_find(h, id);
	unsigned char sealed[HOOKS_SECRET_MAX + SECRET_SEALED_OVERHEAD];
	char aad[32];

	for (size_t i = 0; i <= len && n < 4; i++)
		if (i == len || rec[i] == '\x1f') {
			f[n] = rec + start;
			fl[n++] = i - start;
			start = i + 1;
		}
	if (n != 4 || fl[0] > HOOKS_URL_MAX || fl[2] / 2 > sizeof(sealed) || fl[2] % 2)
		return;
	if (s == NULL) {
		struct hooks_sub **more = realloc(h->subs, (h->nsubs + 1) * sizeof(*more));
		if (more == NULL || (s = calloc(1, sizeof(*s))) == NULL) {
			if (more)
				h->subs = more;
			return;
		}
		h->subs = more;
		h->subs[h->nsubs++] = s;
		s->h = h;
		s->id = id;
		snprintf(s->group, sizeof(s->group), "s%" PRIu64, id);
		if (schema_sub_state_key(s->skey, sizeof(s->skey), id) < 0)
			s->skey[0] = '\0';
		hooks_now(&s->due);
	}
	memcpy(s->url, f[0], fl[0]);
	s->url[fl[0]] = '\0';
	s->mask = hooks_record_mask(rec, len);
	for (size_t i = 0; i < fl[2] / 2; i++) {
		unsigned v;
		if (sscanf(f[2] + 2 * i, "%2x", &v) != 1)
			return;
		sealed[i] = (unsigned char)v;
	}
	snprintf(aad, sizeof(aad), "subscription/%" PRIu64, id);
	if (secret_open(h->key, aad, sealed, fl[2] / 2, s->secret, sizeof(s->secret)) < 0) {
		log_error("hooks", "subscription %" PRIu64 ": its sealed secret does not open with this service key", id);
		s->secret[0] = '\0';
	}
	s->seen = true;
}

static void hooks_loaded(redisReply *reply, void *arg)
{
	struct hooks *h = arg;

	h->loading = false;
	if (reply == NULL || reply->type != REDIS_REPLY_ARRAY)
		return;
	h->loaded = true;
	for (size_t i = 0; i < h->nsubs; i++)
		h->subs[i]->seen = false;
	for (size_t i = 0; i + 1 < reply->elements; i += 2) {
		uint64_t id;
		const redisReply *f = reply->element[i], *v = reply->element[i + 1];
		if (f->type == REDIS_REPLY_STRING && v->type == REDIS_REPLY_STRING &&
		    schema_parse_u64(f->str, f->len, &id) == 0)
			hooks_take(h, id, v->str, v->len);
	}
	/* Deleted ones go, unless a delivery of theirs is under way (next time). */
	for (size_t i = 0; i < h->nsubs;) {
		struct hooks_sub *s = h->subs[i];
		if (s->seen || s->busy) {
			i++;
			continue;
		}
		hooks_sub_free(s);
		h->subs[i] = h->subs[--h->nsubs];
	}
}

/* Events that every subscription has had go (hooks_trim.lua, atomic). */
static void hooks_trim(struct hooks *h)
{
	const char *argv[] = { "EVAL", lua_hooks_trim, "1", SCHEMA_EVENTS_KEY };

	store_command_noreply(h->store, 4, argv, NULL);
}

static void hooks_on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct hooks *h = arg;
	time_t now = time(NULL);

	(void)fd;
	(void)what;
	if (atomic_load(&h->stopping) || !store_connected(h->store))
		return;
	if (!h->loading && now - h->loaded_at >= HOOKS_RELOAD_S / (h->scale > 1 ? 5 : 1)) {
		const char *argv[] = { "HGETALL", SCHEMA_SUBS_KEY };
		h->loaded_at = now;
		h->loading = store_command(h->store, hooks_loaded, h, 2, argv, NULL) == 0;
	}
	if (h->loaded && now - h->trimmed_at >= HOOKS_TRIM_S) {
		h->trimmed_at = now;
		hooks_trim(h);
	}
	for (size_t i = 0; i < h->nsubs; i++) {
		struct hooks_sub *s = h->subs[i];
		if (!s->busy && s->secret[0] && hooks_due(&s->due))
			hooks_read(s);
	}
}

static void *hooks_thread_main(void *arg)
{
	struct hooks *h = arg;

	event_base_dispatch(h->base);
	return NULL;
}

struct hooks *hooks_new(const struct config *cfg, const struct secret_key *key)
{
	struct hooks *h = calloc(1, sizeof(*h));
	struct timeval tick = { 0, HOOKS_TICK_MS * 1000 };

	if (h == NULL)
		return NULL;
	h->cfg = cfg;
	h->key = key;
	h->scale = hooks_scale();
	atomic_init(&h->stopping, false);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if ((h->base = event_base_new()) == NULL || (h->store = store_new(h->base, cfg)) == NULL ||
	    (h->multi = curl_multi_init()) == NULL ||
	    (h->tick = event_new(h->base, -1, EV_PERSIST, hooks_on_tick, h)) == NULL ||
	    (h->curl_timer = evtimer_new(h->base, hooks_on_curl_timer, h)) == NULL || event_add(h->tick, &tick) < 0)
		goto fail;
	curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, hooks_socket_cb);
	curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
	curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, hooks_timer_cb);
	curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
	if (pthread_create(&h->thread, NULL, hooks_thread_main, h) != 0)
		goto fail;
	h->running = true;
	return h;
fail:
	hooks_free(h);
	return NULL;
}

void hooks_stop(struct hooks *h)
{
	if (h)
		atomic_store(&h->stopping, true);
}

void hooks_free(struct hooks *h)
{
	if (h == NULL)
		return;
	if (h->running) {
		event_base_loopexit(h->base, NULL);
		pthread_join(h->thread, NULL);
	}
	for (size_t i = 0; i < h->nsubs; i++) {
		if (h->subs[i]->easy) {
			curl_multi_remove_handle(h->multi, h->subs[i]->easy);
			curl_easy_cleanup(h->subs[i]->easy);
			h->subs[i]->easy = NULL;
		}
	}
	store_free(h->store);
	for (size_t i = 0; i < h->nsubs; i++)
		hooks_sub_free(h->subs[i]);
	free(h->subs);
	if (h->multi)
		curl_multi_cleanup(h->multi);
	if (h->tick)
		event_free(h->tick);
	if (h->curl_timer)
		event_free(h->curl_timer);
	if (h->base)
		event_base_free(h->base);
	curl_global_cleanup();
	free(h);
}

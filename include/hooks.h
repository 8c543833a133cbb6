/* hooks: push subscriptions (SPEC §5). Application servers subscribe to
 * events; each event is a signed JSON POST to each subscription that wants
 * it, delivered at least once: events wait in a Redis stream
 * (SCHEMA_EVENTS_KEY) with a consumer group per subscription, and leave a
 * group only once its URL answered 2xx. A failed delivery is retried with
 * backoff (1 s doubling to 60 s); a subscription that failed at least
 * HOOKS_INVALID_TRIES times over at least HOOKS_INVALID_S is marked
 * "invalid" and probed every 60 s until it answers again. The producers
 * (hooks_want) run on any event loop; the deliveries (struct hooks) on a
 * thread of their own in the worker role. */
#ifndef BOOTSTRAPD_HOOKS_H
#define BOOTSTRAPD_HOOKS_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

struct config;
struct secret_key;
struct store;

enum hooks_event {
	HOOKS_BATCH_COMPLETED = 1,
	HOOKS_DEVICE_DISTRIBUTED = 2,
	HOOKS_DEVICE_ACTIVATED = 4,
	HOOKS_DEVICE_REGISTERED = 8,
};
#define HOOKS_NEVENTS 4
/* "batch.completed", "device.distributed", "device.activated", "device.registered" */
extern const char *const hooks_event_names[HOOKS_NEVENTS];
/* The bit of an event's name, or 0. */
unsigned hooks_event_bit(const char *name, size_t len);

#define HOOKS_TIMEOUT_MS 15000
#define HOOKS_INVALID_TRIES 10
#define HOOKS_INVALID_S 600
#define HOOKS_SECRET_MIN 16
#define HOOKS_SECRET_MAX 128
#define HOOKS_URL_MAX 512

/* Pure. The X-Bootstrapd-Signature value "sha256=<hex HMAC-SHA256(secret, body)>"
 * into OUT (at least 72 bytes): its length, or -1. */
int hooks_sign(const char *secret, const char *body, size_t len, char *out, size_t outlen)
	__attribute__((warn_unused_result));
/* Pure. The wait after the ATTEMPTS-th failure in a row (ms), and whether a
 * subscription failing since FIRST with ATTEMPTS failures is invalid at NOW.
 * SCALE divides the times (1; the tests' BOOTSTRAPD_TEST_HOOKS_SCALE). */
long hooks_backoff_ms(int attempts, int scale);
bool hooks_invalid(int attempts, time_t first, time_t now, int scale);

/* Producers: which events some subscription wants, learned through ST
 * (borrowed) every second. A subscription made through this process gets
 * every event from then on; one made through another process, from about a
 * second after. One per event loop. */
struct hooks_want;
struct hooks_want *hooks_want_new(struct store *st);
void hooks_want_free(struct hooks_want *w);
/* A subscription was made or ended through this process (any thread):
 * every producer queues everything until it has read them again. */
void hooks_subscriptions_changed(void);
/* Queues an event of TYPE, its data DATA_JSON (a JSON object, copied), when
 * a subscription may want it. Best effort on the producer's side: an event
 * Redis does not take is logged. */
void hooks_emit(struct hooks_want *w, enum hooks_event type, const char *data_json);

/* The deliveries. NULL when out of memory. KEY borrowed. */
struct hooks;
struct hooks *hooks_new(const struct config *cfg, const struct secret_key *key);
void hooks_stop(struct hooks *h);
void hooks_free(struct hooks *h);

#endif

/* notify: bootstrap notify messages (SPEC §7), sent by the worker. The apply
 * script queues one per distributed device on the outbox stream of the broker
 * through which the device is reachable (bd:n:q:{broker}); this module
 * publishes them at QoS 1 (at most notify.rate_per_broker a second and
 * notify.inflight_per_broker unacknowledged), removes each from its outbox on
 * the broker's PUBACK (state "sent"), resends what a broker or a worker lost,
 * and marks "acked" when the device answers on notify_reply. */
#ifndef BOOTSTRAPD_NOTIFY_H
#define BOOTSTRAPD_NOTIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <event2/event.h>
#include <yajl/yajl_gen.h>

struct config;
struct catalog;
struct notify;

#define NOTIFY_GROUP "notifiers"

/* Starts a thread of its own (libmosquitto resolves broker names with
 * blocking calls) with an event loop, a Redis connection and a client for
 * every distinct broker of CAT's instances. NULL when out of memory. The
 * functions below are called from one other thread (the worker's). */
struct notify *notify_new(const struct config *cfg, const struct catalog *cat);
/* Stops the thread and frees everything. */
void notify_free(struct notify *n);

/* A reloaded catalog: the broker map is rebuilt at once; brokers not seen
 * before are started on the notify thread. */
void notify_catalog(struct notify *n, const struct catalog *cat);
/* Pairs of instance id and broker key for every instance with a notify
 * broker, as the apply script takes them (borrowed; valid until the next
 * notify_catalog). */
const char *const *notify_broker_map(const struct notify *n, size_t *count);

/* Stops reading outboxes (SIGTERM): what is not acknowledged stays queued. */
void notify_stop(struct notify *n);

/* New messages were queued: look at the outboxes now. */
void notify_kick(struct notify *n);

/* The message id of batch SEQ row IDX ("<seq><idx, 6 digits>"). */
void notify_message_id(uint64_t seq, unsigned idx, char out[32]);

/* Writes "brokers": {"<broker>": "connected" | "down: <why>", ...} into G
 * (inside an open map), as of the notify thread's last tick (100 ms). */
void notify_gen_brokers(struct notify *n, yajl_gen g);
/* Appends Prometheus text for the per-broker counters to a malloc'd string
 * (returned; caller frees), or NULL. */
char *notify_metrics(struct notify *n);

/* Pure helpers for the reply path, unit tested. */
/* "/sys/{pk}/{dn}/thing/bootstrap/notify_reply" into PK and DN; 0 or -1. */
int notify_parse_reply_topic(const char *topic, char pk[33], char dn[33]) __attribute__((warn_unused_result));
/* A reply payload: 1 when it says code 200, with *ID our id ("" when the
 * device used an id of its own); 0 when not 200; -1 when malformed. */
int notify_parse_reply(const void *payload, size_t len, char id[32]) __attribute__((warn_unused_result));
/* The compact notify payload for ID into OUT; its length or -1. */
int notify_payload(const char *id, char *out, size_t outlen) __attribute__((warn_unused_result));

#endif

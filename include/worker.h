/* worker: applies distribution batches. Takes steps (a batch and a range of
 * its rows) from the Redis stream bd:q:batches in the consumer group
 * "workers", applies each with one atomic Lua script, acknowledges it, and
 * takes over steps that another worker left unacknowledged for
 * worker.claim_idle_ms. Uses its own Redis connection. */
#ifndef BOOTSTRAPD_WORKER_H
#define BOOTSTRAPD_WORKER_H

#include <stdbool.h>
#include <event2/event.h>

#include "schema.h"

struct config;
struct notify;
struct worker;

#define WORKER_STREAM SCHEMA_STEPS_KEY
#define WORKER_GROUP "workers"
/* A step that fails this often marks its batch failed. */
#define WORKER_MAX_ATTEMPTS 3

/* NOTIFY (may be NULL) is told when a step queued notify messages. */
struct worker *worker_new(struct event_base *base, const struct config *cfg, struct notify *notify);
void worker_free(struct worker *w);

/* Stops taking steps; the one in progress finishes. */
void worker_stop(struct worker *w);
/* True while a step is being applied. */
bool worker_busy(const struct worker *w);

#endif

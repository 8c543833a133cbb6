/* step: applies one step of a distribution batch (a range of its rows) in
 * parts, each part a command or script on one Redis Cluster slot
 * (docs/batches.md, "A step in parts"): read the open rows (batch slot),
 * read their products and device records, and the batches those point at,
 * write each device group (its group's slot) or the products, queue the
 * notifies (each outbox's slot), record the results (batch slot). Every
 * part is idempotent and the results are recorded once each, so a step
 * that stops anywhere is simply run again. */
#ifndef BOOTSTRAPD_STEP_H
#define BOOTSTRAPD_STEP_H

#include <stddef.h>
#include <stdint.h>
#include <hiredis/hiredis.h>

struct codes;
struct hooks_want;
struct store;

enum step_rc {
	STEP_DONE = 0,      /* every open row has its result now */
	STEP_AGAIN = 1,     /* some records changed while being applied: run it again */
	STEP_UNKNOWN = -1,  /* Redis unreachable or too slow: outcome unknown, run it again */
	STEP_REFUSED = -2,  /* Redis answered an error (ERROR says which) */
};

struct step_outcome {
	long long succeeded, failed; /* rows this run recorded */
	long long queued;            /* notify messages it queued */
};

/* RC as above; OUT is set for STEP_DONE and STEP_AGAIN; ERROR (borrowed for
 * the call) only for STEP_REFUSED. */
typedef void (*step_done_fn)(enum step_rc rc, const struct step_outcome *out, const char *error, void *arg);

/* Runs rows START .. START+COUNT-1 of batch SEQ on ST, writing regions and
 * instances by their CODES (borrowed, synced when an id has none), and
 * queuing the push subscriptions' events through HOOKS (borrowed, or NULL).
 * BROKERS: NBROKERS strings, (instance id, broker key) pairs
 * (notify_broker_map()), copied. FN is called exactly once, never from
 * within this call. Returns 0, or -1 (FN not called) when nothing could be
 * sent. */
int step_run(struct store *st, struct codes *codes, struct hooks_want *hooks, uint64_t seq, size_t start,
	size_t count, const char *const *brokers, size_t nbrokers, step_done_fn fn, void *arg)
	__attribute__((warn_unused_result));

#endif

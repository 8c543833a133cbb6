/* ratelimit: token buckets per client address, shared by every thread
 * (striped locks), with a burst of one second's worth. Pure (no I/O). */
#ifndef BOOTSTRAPD_RATELIMIT_H
#define BOOTSTRAPD_RATELIMIT_H

#include <stdint.h>

#include "netaddr.h"

struct ratelimit;

/* RATE requests per second per address; SLOTS addresses tracked at once
 * (rounded up; the least recently seen of a pair makes room). NULL when out
 * of memory. */
struct ratelimit *ratelimit_new(unsigned rate, unsigned slots);
void ratelimit_free(struct ratelimit *rl);

/* Takes one token for A at NOW_MS (a monotonic clock). Returns 0 when
 * allowed, else the whole seconds (>= 1) to wait before the next one. */
unsigned ratelimit_take(struct ratelimit *rl, const struct netaddr *a, uint64_t now_ms);

#endif

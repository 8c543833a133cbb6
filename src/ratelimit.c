#include "ratelimit.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define RATELIMIT_STRIPES 64

struct ratelimit_entry {
	struct netaddr addr;
	uint64_t last_ms;
	uint64_t millitokens;
	bool used;
};

struct ratelimit_stripe {
	pthread_mutex_t lock;
	struct ratelimit_entry *entries;
};

struct ratelimit {
	unsigned rate;
	size_t per_stripe; /* even */
	struct ratelimit_stripe stripes[RATELIMIT_STRIPES];
};

struct ratelimit *ratelimit_new(unsigned rate, unsigned slots)
{
	struct ratelimit *rl = calloc(1, sizeof(*rl));

	if (rl == NULL)
		return NULL;
	rl->rate = rate ? rate : 1;
	rl->per_stripe = ((slots / RATELIMIT_STRIPES) + 2) & ~(size_t)1;
	for (size_t i = 0; i < RATELIMIT_STRIPES; i++) {
		pthread_mutex_init(&rl->stripes[i].lock, NULL);
		rl->stripes[i].entries = calloc(rl->per_stripe, sizeof(struct ratelimit_entry));
		if (rl->stripes[i].entries == NULL) {
			ratelimit_free(rl);
			return NULL;
		}
	}
	return rl;
}

void ratelimit_free(struct ratelimit *rl)
{
	if (rl == NULL)
		return;
	for (size_t i = 0; i < RATELIMIT_STRIPES; i++) {
		pthread_mutex_destroy(&rl->stripes[i].lock);
		free(rl->stripes[i].entries);
	}
	free(rl);
}

static uint64_t ratelimit_hash(const struct netaddr *a)
{
	uint64_t h = 1469598103934665603ull ^ (uint64_t)a->family;
	size_t n = a->family == AF_INET ? 4 : 16;

	for (size_t i = 0; i < n; i++)
		h = (h ^ a->bytes[i]) * 1099511628211ull;
	return h;
}

unsigned ratelimit_take(struct ratelimit *rl, const struct netaddr *a, uint64_t now_ms)
{
	const uint64_t full = (uint64_t)rl->rate * 1000;
	uint64_t h = ratelimit_hash(a);
	struct ratelimit_stripe *s = &rl->stripes[h % RATELIMIT_STRIPES];
	size_t slot = (size_t)((h / RATELIMIT_STRIPES) % rl->per_stripe) & ~(size_t)1;
	struct ratelimit_entry *e, *pair;
	unsigned wait = 0;

	pthread_mutex_lock(&s->lock);
	pair = &s->entries[slot];
	if (pair[0].used && memcmp(&pair[0].addr, a, sizeof(*a)) == 0)
		e = &pair[0];
	else if (pair[1].used && memcmp(&pair[1].addr, a, sizeof(*a)) == 0)
		e = &pair[1];
	else {
		/* A new address takes the emptier or older of the two places. */
		e = !pair[0].used ? &pair[0] : !pair[1].used ? &pair[1] :
			pair[0].last_ms <= pair[1].last_ms ? &pair[0] : &pair[1];
		e->used = true;
		e->addr = *a;
		e->last_ms = now_ms;
		e->millitokens = full;
	}
	if (now_ms > e->last_ms) {
		uint64_t add = (now_ms - e->last_ms) * rl->rate;
		e->millitokens = e->millitokens + add > full ? full : e->millitokens + add;
		e->last_ms = now_ms;
	}
	if (e->millitokens >= 1000) {
		e->millitokens -= 1000;
	} else {
		uint64_t ms = ((1000 - e->millitokens) + rl->rate - 1) / rl->rate;
		wait = (unsigned)((ms + 999) / 1000);
		if (wait == 0)
			wait = 1;
	}
	pthread_mutex_unlock(&s->lock);
	return wait;
}

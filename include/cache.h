/* cache: the table behind the exact record cache (docs/architecture.md, "The
 * record cache"). A fixed slab of entries keyed by (Redis key, field), each
 * holding a value or "absent"; dropped by key (every field of it) or whole;
 * and insert tokens that refuse a value read before an invalidation of its
 * key. Pure: the store feeds it Redis' invalidations. One per event loop, no
 * locks; nothing is allocated after cache_new(). */
#ifndef BOOTSTRAPD_CACHE_H
#define BOOTSTRAPD_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Key, field and value bytes of one entry together: three cache lines an
 * entry. Every device record fits with its key and field, and every sealed
 * secret but those of the longest names with the longest secrets (16 + 65 +
 * 93 = 174 bytes); bigger ones are simply not cached. */
#define CACHE_DATA_MAX 168

enum cache_result {
	CACHE_MISS,
	CACHE_HIT,        /* *VALUE, *VLEN set */
	CACHE_HIT_ABSENT, /* Redis had no such key or field */
};

struct cache_stats {
	uint64_t hits, misses;
	uint64_t inserts;       /* values stored */
	uint64_t refused;       /* inserts refused: stale token or too large */
	uint64_t invalidations; /* keys invalidated */
	uint64_t dropped;       /* entries those invalidations removed */
	uint64_t evictions;     /* entries removed to make room */
	uint64_t flushes;
};

struct cache;

/* A table of at most ENTRIES entries (> 0), allocated whole now. NULL when
 * out of memory or ENTRIES is 0 or too large. */
struct cache *cache_new(size_t entries);
void cache_free(struct cache *c);

/* Entries in use, and the bound. */
size_t cache_count(const struct cache *c);
size_t cache_capacity(const struct cache *c);
const struct cache_stats *cache_stats(const struct cache *c);

/* Take a token when the Redis read is sent; cache_put() with it stores the
 * answer only if neither its key nor the whole cache was invalidated since.
 * Tokens are never 0, so 0 can stand for "no token". */
uint64_t cache_token(const struct cache *c);

/* Looks (KEY, FIELD) up. On CACHE_HIT *VALUE points into the table (borrowed
 * until the next call that changes it) and *VLEN is its length. */
enum cache_result cache_get(struct cache *c, const char *key, size_t klen, const char *field, size_t flen,
	const char **value, size_t *vlen);

/* Stores VALUE (NULL: absent) for (KEY, FIELD), replacing what was there and
 * evicting another entry when full. Returns false, storing nothing, when the
 * key was invalidated or the cache flushed after TOKEN was taken, or when
 * the entry does not fit CACHE_DATA_MAX. The bytes are copied. */
bool cache_put(struct cache *c, uint64_t token, const char *key, size_t klen, const char *field, size_t flen,
	const char *value, size_t vlen);

/* Drops every field of KEY and refuses inserts of reads sent before now.
 * Returns the number of entries dropped. */
size_t cache_invalidate(struct cache *c, const char *key, size_t klen);

/* Drops everything and refuses inserts of reads sent before now. */
void cache_flush(struct cache *c);

#endif

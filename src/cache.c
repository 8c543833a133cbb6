#include "cache.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* Inserts are guarded per key hash: an invalidation stamps its key's slot with
 * the sequence number it took, and a token older than the stamp (or than the
 * last flush) is refused. Keys sharing a slot only cost a refused insert,
 * never a stale one; a single global counter would refuse every insert that
 * raced any write at all, which under bootstrap traffic (each activation
 * writes a device bucket) is most of them. */
#define CACHE_GUARD_SLOTS 4096
#define CACHE_MAX_ENTRIES (1u << 30)

enum { CACHE_USED = 1, CACHE_REF = 2, CACHE_ABSENT = 4 };

/* Links are 1-based slab indexes; 0 is "none". */
struct cache_entry {
	uint32_t next;         /* in the (key, field) bucket, or the free list */
	uint32_t knext, kprev; /* in the key's bucket */
	uint32_t hash;         /* of (key, field) */
	uint32_t khash;        /* of key */
	uint8_t klen, flen, vlen, flags;
	char data[CACHE_DATA_MAX]; /* key, field, value */
};

_Static_assert(sizeof(struct cache_entry) == 192, "an entry is three cache lines");

struct cache {
	struct cache_entry *e;
	uint32_t *heads;  /* (key, field) buckets */
	uint32_t *kheads; /* key buckets: every entry of a key is in one */
	uint32_t mask;    /* buckets - 1, for both tables */
	uint32_t n;       /* capacity */
	uint32_t used;    /* slots ever handed out since the last flush */
	uint32_t count;   /* entries in use */
	uint32_t free;    /* invalidated slots */
	uint32_t hand;    /* CLOCK hand, 0-based */
	uint64_t seq;     /* the token of a read sent now */
	uint64_t flushed; /* seq taken by the last flush */
	uint64_t guard[CACHE_GUARD_SLOTS];
	struct cache_stats stats;
};

static uint32_t cache_fnv(uint32_t h, const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		h = (h ^ (unsigned char)s[i]) * 0x01000193u;
	return h;
}

static uint32_t cache_khash(const char *key, size_t klen)
{
	return cache_fnv(0x811c9dc5u, key, klen);
}

/* The key's length goes in too: ("ab", "c") and ("a", "bc") differ. */
static uint32_t cache_hash(uint32_t khash, size_t klen, const char *field, size_t flen)
{
	return cache_fnv((khash ^ (uint32_t)klen) * 0x01000193u, field, flen);
}

/* Lookups land anywhere in tables of up to hundreds of megabytes: with 4 KiB
 * pages most would also miss the TLB. Only whole 2 MiB pages inside the
 * block are advised; the allocator keeps owning it. */
static void cache_advise_huge(void *p, size_t len)
{
#ifdef MADV_HUGEPAGE
	const uintptr_t huge = 2u << 20;
	uintptr_t from = ((uintptr_t)p + huge - 1) & ~(huge - 1), to = ((uintptr_t)p + len) & ~(huge - 1);

	if (p != NULL && to > from)
		(void)madvise((void *)from, to - from, MADV_HUGEPAGE);
#else
	(void)p;
	(void)len;
#endif
}

struct cache *cache_new(size_t entries)
{
	struct cache *c;
	size_t buckets = 1;

	if (entries == 0 || entries > CACHE_MAX_ENTRIES)
		return NULL;
	while (buckets < entries)
		buckets <<= 1;
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	/* calloc: the pages are only touched as entries are used. */
	c->e = calloc(entries, sizeof(*c->e));
	c->heads = calloc(buckets, sizeof(*c->heads));
	c->kheads = calloc(buckets, sizeof(*c->kheads));
	if (c->e == NULL || c->heads == NULL || c->kheads == NULL) {
		cache_free(c);
		return NULL;
	}
	cache_advise_huge(c->e, entries * sizeof(*c->e));
	cache_advise_huge(c->heads, buckets * sizeof(*c->heads));
	cache_advise_huge(c->kheads, buckets * sizeof(*c->kheads));
	c->mask = (uint32_t)(buckets - 1);
	c->n = (uint32_t)entries;
	c->seq = 1;
	c->flushed = 1;
	return c;
}

void cache_free(struct cache *c)
{
	if (c == NULL)
		return;
	free(c->e);
	free(c->heads);
	free(c->kheads);
	free(c);
}

size_t cache_count(const struct cache *c)
{
	return c->count;
}

size_t cache_capacity(const struct cache *c)
{
	return c->n;
}

const struct cache_stats *cache_stats(const struct cache *c)
{
	return &c->stats;
}

uint64_t cache_token(const struct cache *c)
{
	return c->seq;
}

static bool cache_is(const struct cache_entry *e, uint32_t hash, const char *key, size_t klen, const char *field,
	size_t flen)
{
	return e->hash == hash && e->klen == klen && e->flen == flen && memcmp(e->data, key, klen) == 0 &&
		memcmp(e->data + klen, field, flen) == 0;
}

static struct cache_entry *cache_find(struct cache *c, uint32_t hash, const char *key, size_t klen,
	const char *field, size_t flen)
{
	for (uint32_t i = c->heads[hash & c->mask]; i != 0; i = c->e[i - 1].next)
		if (cache_is(&c->e[i - 1], hash, key, klen, field, flen))
			return &c->e[i - 1];
	return NULL;
}

enum cache_result cache_get(struct cache *c, const char *key, size_t klen, const char *field, size_t flen,
	const char **value, size_t *vlen)
{
	struct cache_entry *e = NULL;

	if (klen <= UINT8_MAX && flen <= UINT8_MAX)
		e = cache_find(c, cache_hash(cache_khash(key, klen), klen, field, flen), key, klen, field, flen);
	if (e == NULL) {
		c->stats.misses++;
		return CACHE_MISS;
	}
	c->stats.hits++;
	e->flags |= CACHE_REF;
	if (e->flags & CACHE_ABSENT)
		return CACHE_HIT_ABSENT;
	*value = e->data + e->klen + e->flen;
	*vlen = e->vlen;
	return CACHE_HIT;
}

static void cache_unlink(struct cache *c, struct cache_entry *e)
{
	uint32_t self = (uint32_t)(e - c->e) + 1;
	uint32_t *p = &c->heads[e->hash & c->mask];

	while (*p != self)
		p = &c->e[*p - 1].next;
	*p = e->next;
	if (e->kprev)
		c->e[e->kprev - 1].knext = e->knext;
	else
		c->kheads[e->khash & c->mask] = e->knext;
	if (e->knext)
		c->e[e->knext - 1].kprev = e->kprev;
	e->flags = 0;
	c->count--;
}

/* A slot for a new entry: an invalidated one, a never used one, or the first
 * the CLOCK hand finds not referenced since it last passed. */
static struct cache_entry *cache_slot(struct cache *c)
{
	struct cache_entry *e;

	if (c->free) {
		e = &c->e[c->free - 1];
		c->free = e->next;
		return e;
	}
	if (c->used < c->n)
		return &c->e[c->used++];
	/* Every slot is in use here; at most one full turn clears every bit. */
	for (;;) {
		e = &c->e[c->hand];
		c->hand = c->hand + 1 == c->n ? 0 : c->hand + 1;
		if (!(e->flags & CACHE_REF))
			break;
		e->flags &= (uint8_t)~CACHE_REF;
	}
	cache_unlink(c, e);
	c->stats.evictions++;
	return e;
}

bool cache_put(struct cache *c, uint64_t token, const char *key, size_t klen, const char *field, size_t flen,
	const char *value, size_t vlen)
{
	uint32_t khash = cache_khash(key, klen), hash, self;
	struct cache_entry *e;

	if (value == NULL)
		vlen = 0;
	if (token < c->flushed || token < c->guard[khash % CACHE_GUARD_SLOTS] || klen > UINT8_MAX ||
	    flen > UINT8_MAX || vlen > UINT8_MAX || klen + flen + vlen > CACHE_DATA_MAX) {
		c->stats.refused++;
		return false;
	}
	hash = cache_hash(khash, klen, field, flen);
	e = cache_find(c, hash, key, klen, field, flen);
	if (e == NULL) {
		e = cache_slot(c);
		self = (uint32_t)(e - c->e) + 1;
		e->hash = hash;
		e->khash = khash;
		e->klen = (uint8_t)klen;
		e->flen = (uint8_t)flen;
		memcpy(e->data, key, klen);
		memcpy(e->data + klen, field, flen);
		e->next = c->heads[hash & c->mask];
		c->heads[hash & c->mask] = self;
		e->kprev = 0;
		e->knext = c->kheads[khash & c->mask];
		if (e->knext)
			c->e[e->knext - 1].kprev = self;
		c->kheads[khash & c->mask] = self;
		c->count++;
		/* Not referenced yet: an entry read only once goes first. */
		e->flags = CACHE_USED;
	}
	e->vlen = (uint8_t)vlen;
	if (vlen)
		memcpy(e->data + klen + flen, value, vlen);
	e->flags = (uint8_t)((e->flags & ~CACHE_ABSENT) | (value == NULL ? CACHE_ABSENT : 0));
	c->stats.inserts++;
	return true;
}

size_t cache_invalidate(struct cache *c, const char *key, size_t klen)
{
	uint32_t khash = cache_khash(key, klen);
	uint32_t i = c->kheads[khash & c->mask];
	size_t dropped = 0;

	c->guard[khash % CACHE_GUARD_SLOTS] = ++c->seq;
	c->stats.invalidations++;
	while (i != 0) {
		struct cache_entry *e = &c->e[i - 1];
		uint32_t next = e->knext;

		if (e->khash == khash && e->klen == klen && memcmp(e->data, key, klen) == 0) {
			cache_unlink(c, e);
			e->next = c->free;
			c->free = i;
			dropped++;
		}
		i = next;
	}
	c->stats.dropped += dropped;
	return dropped;
}

void cache_flush(struct cache *c)
{
	c->flushed = ++c->seq;
	c->stats.flushes++;
	/* Slots past `used` are handed out fresh, so forgetting the tables and
	 * the slab's high-water mark forgets every entry. */
	if (c->used == 0)
		return;
	memset(c->heads, 0, ((size_t)c->mask + 1) * sizeof(*c->heads));
	memset(c->kheads, 0, ((size_t)c->mask + 1) * sizeof(*c->kheads));
	c->used = 0;
	c->count = 0;
	c->free = 0;
	c->hand = 0;
}

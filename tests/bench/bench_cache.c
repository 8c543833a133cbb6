/* The record cache's costs and hit ratio (docs/performance.md), in CPU time.
 *
 *   bench_cache [entries] [keys]
 *
 * Times hits, misses, inserts that evict and invalidations of a device
 * bucket on a full table of ENTRIES (default 100000, one thread's share of
 * the default cache.entries on ten threads), then replays a Zipf(0.99)
 * stream over KEYS devices (default ten times ENTRIES) and compares the hit
 * ratio of the table's CLOCK eviction with an exact LRU of the same size. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache.h"

static uint64_t rng = 0x9e3779b97f4a7c15u;

static uint64_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A device's key and field, shaped like the real ones. */
static void device(size_t id, char key[16], char field[48])
{
	snprintf(key, 16, "bd:d:%05zx", id % 1048576 / 64);
	snprintf(field, 48, "a1B2c3D4e5F/device-%08zu", id);
}

static const char record[] = "7;a;1763800000;1763800100;1763800200;cn-shanghai";

#define SAMPLE 65536

struct sample {
	char key[16], field[48];
	size_t klen, flen;
};

/* SAMPLE devices with ids FROM..FROM+SPAN-1, formatted before timing. */
static struct sample *samples(size_t from, size_t span)
{
	struct sample *s = malloc(SAMPLE * sizeof(*s));

	for (size_t i = 0; s && i < SAMPLE; i++) {
		device(from + next() % span, s[i].key, s[i].field);
		s[i].klen = strlen(s[i].key);
		s[i].flen = strlen(s[i].field);
	}
	return s;
}

static void timings(struct cache *c, size_t entries)
{
	enum { N = 4000000 };
	struct sample *in = samples(0, entries), *out = samples(entries, entries);
	char key[16], field[48];
	const char *v;
	size_t vlen, found = 0;
	double t;

	if (in == NULL || out == NULL) {
		fprintf(stderr, "out of memory\n");
		exit(1);
	}
	for (size_t i = 0; i < entries; i++) {
		device(i, key, field);
		(void)cache_put(c, cache_token(c), key, strlen(key), field, strlen(field), record, sizeof(record) - 1);
	}
	t = now();
	for (size_t i = 0; i < N; i++) {
		const struct sample *x = &in[i % SAMPLE];
		found += cache_get(c, x->key, x->klen, x->field, x->flen, &v, &vlen) == CACHE_HIT;
	}
	printf("hit:                  %6.0f ns (%zu of %d found)\n", (now() - t) * 1e9 / N, found, N);
	t = now();
	for (size_t i = 0; i < N; i++) {
		const struct sample *x = &out[i % SAMPLE];
		found += cache_get(c, x->key, x->klen, x->field, x->flen, &v, &vlen) == CACHE_HIT;
	}
	printf("miss:                 %6.0f ns\n", (now() - t) * 1e9 / N);
	t = now();
	for (size_t i = 0; i < N; i++) {
		const struct sample *x = &out[i % SAMPLE];
		(void)cache_put(c, cache_token(c), x->key, x->klen, x->field, x->flen, record, sizeof(record) - 1);
	}
	printf("insert:               %6.0f ns (replacing or evicting)\n", (now() - t) * 1e9 / N);
	t = now();
	found = 0;
	for (size_t i = 0; i < N / 10; i++) {
		snprintf(key, sizeof(key), "bd:d:%05zx", (size_t)(next() % 16384));
		found += cache_invalidate(c, key, strlen(key));
	}
	printf("invalidate a bucket:  %6.0f ns (%.2f entries each)\n", (now() - t) * 1e9 / (N / 10),
		(double)found / (N / 10));
	t = now();
	cache_flush(c);
	printf("flush:                %6.0f us\n", (now() - t) * 1e6);
	free(in);
	free(out);
}

/* An exact LRU over ids 0..keys-1: a list through arrays. */
struct lru {
	size_t *prev, *next;
	unsigned char *in;
	size_t head, tail, count, cap;
};

#define LRU_NONE ((size_t)-1)

static void lru_unlink(struct lru *l, size_t id)
{
	if (l->prev[id] != LRU_NONE)
		l->next[l->prev[id]] = l->next[id];
	else
		l->head = l->next[id];
	if (l->next[id] != LRU_NONE)
		l->prev[l->next[id]] = l->prev[id];
	else
		l->tail = l->prev[id];
}

static void lru_front(struct lru *l, size_t id)
{
	l->prev[id] = LRU_NONE;
	l->next[id] = l->head;
	if (l->head != LRU_NONE)
		l->prev[l->head] = id;
	l->head = id;
	if (l->tail == LRU_NONE)
		l->tail = id;
}

static int lru_access(struct lru *l, size_t id)
{
	if (l->in[id]) {
		lru_unlink(l, id);
		lru_front(l, id);
		return 1;
	}
	if (l->count == l->cap) {
		size_t old = l->tail;
		lru_unlink(l, old);
		l->in[old] = 0;
		l->count--;
	}
	lru_front(l, id);
	l->in[id] = 1;
	l->count++;
	return 0;
}

static void ratios(size_t entries, size_t keys)
{
	enum { N = 4000000 };
	double *cdf = malloc(keys * sizeof(*cdf)), sum = 0;
	struct cache *c = cache_new(entries);
	struct lru l = { malloc(keys * sizeof(size_t)), malloc(keys * sizeof(size_t)), calloc(keys, 1), LRU_NONE,
		LRU_NONE, 0, entries };
	char key[16], field[48];
	const char *v;
	size_t vlen, clock_hits = 0, lru_hits = 0;
	struct sample *zipf = malloc(SAMPLE * sizeof(*zipf));
	double t;

	if (cdf == NULL || c == NULL || l.prev == NULL || l.next == NULL || l.in == NULL || zipf == NULL) {
		fprintf(stderr, "out of memory\n");
		exit(1);
	}
	for (size_t i = 0; i < keys; i++)
		cdf[i] = sum += 1.0 / pow((double)(i + 1), 0.99);
	for (size_t n = 0; n < N; n++) {
		double u = (double)(next() >> 11) / 9007199254740992.0 * sum;
		size_t lo = 0, hi = keys - 1;
		while (lo < hi) {
			size_t mid = (lo + hi) / 2;
			if (cdf[mid] < u)
				lo = mid + 1;
			else
				hi = mid;
		}
		/* Spread the popular ids over the buckets. */
		size_t id = (lo * 2654435761u) % keys;
		device(id, key, field);
		if (n < SAMPLE) {
			memcpy(zipf[n].key, key, sizeof(key));
			memcpy(zipf[n].field, field, sizeof(field));
			zipf[n].klen = strlen(key);
			zipf[n].flen = strlen(field);
		}
		if (cache_get(c, key, strlen(key), field, strlen(field), &v, &vlen) == CACHE_HIT)
			clock_hits++;
		else
			(void)cache_put(c, cache_token(c), key, strlen(key), field, strlen(field), record,
				sizeof(record) - 1);
		lru_hits += (size_t)lru_access(&l, id);
	}
	printf("Zipf(0.99), %zu devices, %zu entries: CLOCK %.1f %% hits, LRU %.1f %%\n", keys, entries,
		100.0 * (double)clock_hits / N, 100.0 * (double)lru_hits / N);
	/* The same stream's lookups alone, keys formatted beforehand. */
	clock_hits = 0;
	t = now();
	for (size_t n = 0; n < N; n++) {
		const struct sample *x = &zipf[n % SAMPLE];
		clock_hits += cache_get(c, x->key, x->klen, x->field, x->flen, &v, &vlen) == CACHE_HIT;
	}
	printf("lookup in that stream: %5.0f ns (%.1f %% hits)\n", (now() - t) * 1e9 / N,
		100.0 * (double)clock_hits / N);
	free(zipf);
	cache_free(c);
	free(cdf);
	free(l.prev);
	free(l.next);
	free(l.in);
}

int main(int argc, char **argv)
{
	size_t entries = argc > 1 ? strtoul(argv[1], NULL, 10) : 100000;
	size_t keys = argc > 2 ? strtoul(argv[2], NULL, 10) : entries * 10;
	struct cache *c = cache_new(entries);

	if (c == NULL || keys == 0) {
		fprintf(stderr, "usage: bench_cache [entries] [keys]\n");
		return 1;
	}
	timings(c, entries);
	cache_free(c);
	ratios(entries, keys);
	return 0;
}

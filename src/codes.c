#include "codes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua.h"
#include "schema.h"
#include "store.h"

struct codes_entry {
	char kind;
	char *id; /* owned */
	char code[SCHEMA_CODE_MAX + 1];
};

struct codes {
	struct store *store;
	int timeout_ms;
	struct codes_entry *by_id; /* sorted by kind, id */
	size_t *by_code;           /* indexes into by_id, sorted by kind, code */
	size_t n;
	/* Syncs asked for while one is on its way: answered with it, the
	 * first (in flight) last. */
	struct codes_call *waiting;
	bool in_flight;
};

struct codes_call {
	struct codes *c;
	codes_done_fn fn;
	void *arg;
	struct codes_call *next;
};

struct codes *codes_new(struct store *st, int timeout_ms)
{
	struct codes *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	c->store = st;
	c->timeout_ms = timeout_ms;
	return c;
}

static void codes_clear(struct codes_entry *e, size_t n, size_t *by_code)
{
	for (size_t i = 0; i < n; i++)
		free(e[i].id);
	free(e);
	free(by_code);
}

void codes_free(struct codes *c)
{
	if (c == NULL)
		return;
	while (c->waiting != NULL) {
		struct codes_call *next = c->waiting->next;
		free(c->waiting);
		c->waiting = next;
	}
	codes_clear(c->by_id, c->n, c->by_code);
	free(c);
}

int codes_field(char *buf, size_t len, enum codes_kind kind, const char *id)
{
	int n = snprintf(buf, len, "%c:%s", (char)kind, id);

	return n < 0 || (size_t)n >= len ? -1 : n;
}

static int codes_cmp_id(const void *a, const void *b)
{
	const struct codes_entry *x = a, *y = b;

	return x->kind != y->kind ? (x->kind < y->kind ? -1 : 1) : strcmp(x->id, y->id);
}

/* Codes compare as numbers: shorter first, then by digit (no leading zeros). */
static int codes_cmp_code(const char *a, size_t al, const char *b, size_t bl)
{
	if (al != bl)
		return al < bl ? -1 : 1;
	return memcmp(a, b, al);
}

static int codes_cmp_index(const void *a, const void *b, void *base)
{
	const struct codes_entry *e = base;
	const struct codes_entry *x = &e[*(const size_t *)a], *y = &e[*(const size_t *)b];

	if (x->kind != y->kind)
		return x->kind < y->kind ? -1 : 1;
	return codes_cmp_code(x->code, strlen(x->code), y->code, strlen(y->code));
}

const char *codes_code(const struct codes *c, enum codes_kind kind, const char *id)
{
	struct codes_entry key = { .kind = (char)kind, .id = (char *)id };
	const struct codes_entry *e;

	if (c->n == 0)
		return NULL;
	e = bsearch(&key, c->by_id, c->n, sizeof(*c->by_id), codes_cmp_id);
	return e ? e->code : NULL;
}

const char *codes_id(const struct codes *c, enum codes_kind kind, const char *code, size_t len)
{
	size_t lo = 0, hi = c->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct codes_entry *e = &c->by_id[c->by_code[mid]];
		int cmp = e->kind != (char)kind ? (e->kind < (char)kind ? -1 : 1)
						: codes_cmp_code(e->code, strlen(e->code), code, len);
		if (cmp == 0)
			return e->id;
		if (cmp < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

int codes_load(struct codes *c, const redisReply *reply)
{
	struct codes_entry *e = NULL;
	size_t *by_code = NULL, n = 0;

	if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements % 2 != 0)
		return -1;
	if (reply->elements > 0 && ((e = calloc(reply->elements / 2, sizeof(*e))) == NULL ||
		    (by_code = calloc(reply->elements / 2, sizeof(*by_code))) == NULL))
		goto fail;
	for (size_t i = 0; i < reply->elements; i += 2) {
		const redisReply *f = reply->element[i], *v = reply->element[i + 1];
		if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
			goto fail;
		/* Other fields (the counter) are not codes. */
		if (f->len < 3 || f->str[1] != ':' || (f->str[0] != CODES_REGION && f->str[0] != CODES_INSTANCE))
			continue;
		if (!schema_valid_code(v->str, v->len) || memchr(f->str, '\0', f->len) != NULL)
			goto fail;
		e[n].kind = f->str[0];
		memcpy(e[n].code, v->str, v->len);
		e[n].code[v->len] = '\0';
		if ((e[n].id = strndup(f->str + 2, f->len - 2)) == NULL)
			goto fail;
		n++;
	}
	if (n > 0)
		qsort(e, n, sizeof(*e), codes_cmp_id);
	for (size_t i = 0; i < n; i++)
		by_code[i] = i;
	if (n > 0)
		qsort_r(by_code, n, sizeof(*by_code), codes_cmp_index, e);
	/* A table with one code twice is not one the store writes. */
	for (size_t i = 1; i < n; i++)
		if (codes_cmp_index(&by_code[i - 1], &by_code[i], e) == 0 ||
		    codes_cmp_id(&e[i - 1], &e[i]) == 0)
			goto fail;
	codes_clear(c->by_id, c->n, c->by_code);
	c->by_id = e;
	c->by_code = by_code;
	c->n = n;
	return 0;
fail:
	codes_clear(e, n, by_code);
	return -1;
}

static void codes_synced(redisReply *reply, void *arg)
{
	struct codes_call *call = arg, *w;
	struct codes *c = call->c;
	bool ok = reply != NULL && codes_load(c, reply) == 0;

	/* Each waiter looks again, and may ask for another sync. */
	c->in_flight = false;
	w = c->waiting;
	c->waiting = NULL;
	while (w != NULL) {
		struct codes_call *next = w->next;
		w->fn(ok, w->arg);
		free(w);
		w = next;
	}
	call->fn(ok, call->arg);
	free(call);
}

int codes_sync(struct codes *c, const char *const *need, size_t nneed, codes_done_fn fn, void *arg)
{
	const char **argv = calloc(4 + nneed, sizeof(*argv));
	struct codes_call *call = calloc(1, sizeof(*call));
	int rc = -1;

	if (argv == NULL || call == NULL)
		goto out;
	argv[0] = "EVAL";
	argv[1] = lua_codes;
	argv[2] = "1";
	argv[3] = SCHEMA_CODES_KEY;
	for (size_t i = 0; i < nneed; i++)
		argv[4 + i] = need[i];
	call->c = c;
	call->fn = fn;
	call->arg = arg;
	if (c->in_flight) {
		/* Many requests meet a new region at once: one sync for them all. */
		call->next = c->waiting;
		c->waiting = call;
		call = NULL;
		rc = 0;
		goto out;
	}
	/* Durable: a code taken back by a failover could be given again to another id. */
	rc = store_write_timed(c->store, c->timeout_ms, codes_synced, call, (int)(4 + nneed), argv, NULL);
	if (rc == 0) {
		c->in_flight = true;
		call = NULL;
	}
out:
	free(call);
	free(argv);
	return rc;
}

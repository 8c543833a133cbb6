/* httpreq_parse, the HTTP request parser, driven as http.c drives it: the
 * connection's bytes arrive into one buffer that moves as it grows, and the
 * requests in it (pipelined) are parsed one after the other. The input comes
 * whole, then split into 1..3 chunks at points drawn from its own bytes: both
 * must give the same requests and the same refusal. A request must point
 * inside its own bytes and leave the next request's bytes alone. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "httpreq.h"

#define REQUESTS_MAX 8

static const struct httpreq_limits limits = { 1024, 2048 };

/* What the connection saw: each request's summary, then the refusal (or 0). */
struct outcome {
	char text[16384];
	size_t len;
	int status;
};

static void note(struct outcome *o, const char *s, size_t n)
{
	if (n > sizeof(o->text) - o->len)
		n = sizeof(o->text) - o->len;
	memcpy(o->text + o->len, s, n);
	o->len += n;
}

/* Checks a parsed request against its bytes REQ[0..USED) (LEN in the
 * buffer; ORIG is what they were before parsing) and adds it to O. */
static void check(struct outcome *o, const struct httpreq *r, const char *req, size_t used, size_t len,
	const uint8_t *orig)
{
	char head[64];

	fuzz_assert(used > 0 && used <= len);
	/* The next request's bytes are untouched. */
	fuzz_assert(memcmp(req + used, orig + used, len - used) == 0);
	fuzz_assert(r->path >= req && r->path + strlen(r->path) < req + used && r->path[0] == '/');
	fuzz_assert(r->query == NULL ||
		(r->query > r->path && r->query + r->query_len < req + used && strlen(r->query) == r->query_len));
	fuzz_assert((r->body == NULL) == (r->body_len == 0));
	fuzz_assert(r->body == NULL || (r->body >= req && r->body + r->body_len <= req + used));
	fuzz_assert(r->body_len <= limits.max_body_bytes && r->nheaders <= HTTPREQ_HEADERS_MAX);
	snprintf(head, sizeof(head), "%d %u.%u %d %d %zu|", (int)r->method, r->major, r->minor, r->keep_alive,
		r->expect_continue, r->nheaders);
	note(o, head, strlen(head));
	note(o, r->path, strlen(r->path) + 1);
	if (r->query)
		note(o, r->query, r->query_len + 1);
	for (size_t i = 0; i < r->nheaders; i++) {
		const struct httpreq_header *h = &r->headers[i];

		fuzz_assert(h->name >= req && h->name + strlen(h->name) < req + used && h->name[0] != '\0');
		fuzz_assert(strlen(h->value) == h->value_len);
		fuzz_assert(h->value_len == 0 || (h->value >= req && h->value + h->value_len < req + used));
		fuzz_assert(httpreq_header(r, h->name) != NULL);
		note(o, h->name, strlen(h->name) + 1);
		note(o, h->value, h->value_len + 1);
	}
	note(o, r->body ? r->body : "", r->body_len);
	note(o, "\n", 1);
}

/* Feeds DATA in NCUTS + 1 pieces, ending at CUTS[0..NCUTS) and SIZE. */
static void run(const uint8_t *data, size_t size, const size_t *cuts, size_t ncuts, struct outcome *o)
{
	struct httpreq_parser ps;
	struct httpreq r;
	char *buf = NULL;
	size_t len = 0, start = 0, used, nreq = 0;
	bool idle = true, continued = false;

	memset(o, 0, sizeof(*o));
	for (size_t k = 0; k <= ncuts && o->status == 0 && nreq < REQUESTS_MAX; k++) {
		size_t end = k < ncuts ? cuts[k] : size;
		/* A fresh copy of the exact size: the buffer moves, and ASan sees
		 * any byte touched past what has arrived. */
		char *moved = malloc(end ? end : 1);

		if (moved == NULL)
			abort();
		if (len)
			memcpy(moved, buf, len);
		memcpy(moved + len, data + len, end - len);
		free(buf);
		buf = moved;
		len = end;
		while (start < len && o->status == 0 && nreq < REQUESTS_MAX) {
			int rc;

			if (idle) {
				httpreq_parser_init(&ps, &limits);
				idle = false;
			}
			rc = httpreq_parse(&ps, buf + start, len - start, &used, &r);
			if (rc == HTTPREQ_MORE) {
				/* http.c answers "100 Continue" on this: the request must say so once whole. */
				if (httpreq_awaiting_body(&ps) && httpreq_expects_continue(&ps, buf + start))
					continued = true;
				break;
			}
			if (rc != HTTPREQ_DONE) {
				fuzz_assert(rc == 400 || rc == 405 || rc == 413 || rc == 431);
				/* Refused for good: the same answer however often asked. */
				fuzz_assert(httpreq_parse(&ps, buf + start, len - start, &used, &r) == rc);
				o->status = rc;
				break;
			}
			check(o, &r, buf + start, used, len - start, data + start);
			fuzz_assert(!continued || r.expect_continue);
			start += used;
			nreq++;
			idle = true;
			continued = false;
		}
	}
	free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct outcome *whole = malloc(sizeof(*whole)), *split = malloc(sizeof(*split));
	uint32_t h = 2166136261u;
	size_t cuts[2], ncuts;

	if (whole == NULL || split == NULL)
		abort();
	for (size_t i = 0; i < size; i++)
		h = (h ^ data[i]) * 16777619u;
	run(data, size, NULL, 0, whole);
	/* 1..3 chunks, none empty. */
	ncuts = size < 3 ? 0 : h % 3;
	if (ncuts > 0)
		cuts[0] = 1 + (h >> 8) % (size - 1);
	if (ncuts > 1) {
		size_t c = 1 + (h >> 20) % (size - 1);
		if (c == cuts[0]) {
			ncuts = 1;
		} else if (c < cuts[0]) {
			cuts[1] = cuts[0];
			cuts[0] = c;
		} else {
			cuts[1] = c;
		}
	}
	run(data, size, cuts, ncuts, split);
	fuzz_assert(whole->status == split->status);
	fuzz_assert(whole->len == split->len && memcmp(whole->text, split->text, whole->len) == 0);
	free(whole);
	free(split);
	return 0;
}

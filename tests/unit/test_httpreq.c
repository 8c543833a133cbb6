#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "httpreq.h"

/* A string literal and its length (NUL bytes inside included). */
#define STR(s) s, sizeof(s) - 1

#define SDK_BODY "productKey=a1PK&deviceName=dev1&clientId=a1PK.dev1&resources=mqtt"
#define SDK_HEAD_NO_LENGTH \
	"POST /auth/bootstrap HTTP/1.1\r\n" \
	"Host: iot-auth-global.example.com\r\n" \
	"Accept: text/xml,text/javascript,text/html,application/json\r\n" \
	"Content-Type: application/x-www-form-urlencoded;charset=utf-8\r\n" \
	"Content-Length: "

static const struct httpreq_limits limits = { .max_header_bytes = 8192, .max_body_bytes = 65536 };

/* One request parsed: its bytes (from the test allocator; when moved,
 * exactly as long as what was given, so the guard bytes catch a write past
 * them), the parser and the outcome. */
struct parse {
	char *buf;
	size_t len;
	struct httpreq_parser ps;
	struct httpreq req;
	size_t used;
	int rc;
	size_t at; /* the length given to the call that decided, or LEN */
	int calls;
};

static void release(struct parse *p)
{
	if (p->buf)
		test_free(p->buf);
	p->buf = NULL;
}

/* Feeds TEXT growing to each of the NCUTS lengths CUTS (increasing, below
 * LEN), then whole, from its first byte each time, stopping at the first
 * answer that is not HTTPREQ_MORE. With MOVE the bytes are copied to a new
 * allocation before every call, as a connection's buffer may be. */
static void parse_cuts(struct parse *p, const char *text, size_t len, const struct httpreq_limits *l,
	const size_t *cuts, size_t ncuts, bool move)
{
	size_t prev = 0;

	memset(p, 0, sizeof(*p));
	httpreq_parser_init(&p->ps, l);
	if (!move) {
		p->buf = test_malloc(len ? len : 1);
		memset(p->buf, 'Z', len);
	}
	p->rc = HTTPREQ_MORE;
	for (size_t i = 0; i <= ncuts && p->rc == HTTPREQ_MORE; i++) {
		size_t k = i < ncuts ? cuts[i] : len;

		assert_true(k >= prev && k <= len);
		if (move) {
			char *grown = test_malloc(k ? k : 1);

			/* What is already there, as the last call left it. */
			if (p->buf)
				memcpy(grown, p->buf, prev);
			release(p);
			p->buf = grown;
		}
		memcpy(p->buf + prev, text + prev, k - prev);
		prev = k;
		p->len = k;
		p->at = k;
		p->calls++;
		p->rc = httpreq_parse(&p->ps, p->buf, k, &p->used, &p->req);
	}
}

static void parse_whole(struct parse *p, const char *text, size_t len, const struct httpreq_limits *l)
{
	parse_cuts(p, text, len, l, NULL, 0, true);
}

/* One byte more each call. */
static void parse_bytes(struct parse *p, const char *text, size_t len, const struct httpreq_limits *l, bool move)
{
	size_t *cuts = test_malloc(len * sizeof(*cuts) + 1);

	for (size_t i = 0; i + 1 < len; i++)
		cuts[i] = i + 1;
	parse_cuts(p, text, len, l, cuts, len ? len - 1 : 0, move);
	test_free(cuts);
}

static uint32_t rnd_state;

static uint32_t rnd(void)
{
	rnd_state = rnd_state * 1103515245u + 12345u;
	return rnd_state >> 8;
}

/* Cut at random places, a few or many. */
static void parse_random(struct parse *p, const char *text, size_t len, const struct httpreq_limits *l,
	uint32_t seed, bool move)
{
	size_t *cuts = test_malloc(len * sizeof(*cuts) + 1);
	size_t n = 0;
	uint32_t odds;

	rnd_state = seed;
	odds = 1 + rnd() % 40;
	for (size_t i = 1; i < len; i++)
		if (rnd() % odds == 0)
			cuts[n++] = i;
	parse_cuts(p, text, len, l, cuts, n, move);
	test_free(cuts);
}

static bool inside(const struct parse *p, const char *ptr, size_t n)
{
	return ptr >= p->buf && ptr + n <= p->buf + p->len;
}

/* Every pointer of a parsed request is into its own buffer. */
static void expect_inside(const struct parse *p)
{
	const struct httpreq *r = &p->req;

	assert_true(inside(p, r->path, strlen(r->path) + 1));
	if (r->query) {
		assert_int_equal(strlen(r->query), r->query_len);
		assert_true(inside(p, r->query, r->query_len + 1));
	}
	if (r->body)
		assert_true(inside(p, r->body, r->body_len));
	else
		assert_int_equal(r->body_len, 0);
	for (size_t i = 0; i < r->nheaders; i++) {
		assert_true(inside(p, r->headers[i].name, strlen(r->headers[i].name) + 1));
		assert_int_equal(strlen(r->headers[i].value), r->headers[i].value_len);
		if (r->headers[i].value_len)
			assert_true(inside(p, r->headers[i].value, r->headers[i].value_len + 1));
	}
}

/* Two parses of the same bytes gave the same answer and the same request. */
static void expect_same(const struct parse *a, const struct parse *b)
{
	const struct httpreq *x = &a->req, *y = &b->req;

	assert_int_equal(a->rc, b->rc);
	assert_int_equal(a->at, b->at);
	if (a->rc != HTTPREQ_DONE)
		return;
	expect_inside(a);
	expect_inside(b);
	assert_int_equal(a->used, b->used);
	assert_int_equal(x->method, y->method);
	assert_int_equal(x->major, y->major);
	assert_int_equal(x->minor, y->minor);
	assert_int_equal(x->keep_alive, y->keep_alive);
	assert_int_equal(x->expect_continue, y->expect_continue);
	assert_string_equal(x->path, y->path);
	assert_int_equal(x->query == NULL, y->query == NULL);
	if (x->query) {
		assert_int_equal(x->query_len, y->query_len);
		assert_string_equal(x->query, y->query);
	}
	assert_int_equal(x->body_len, y->body_len);
	assert_int_equal(x->body == NULL, y->body == NULL);
	if (x->body) {
		/* At the same place, however it came. */
		assert_int_equal(x->body - a->buf, y->body - b->buf);
		assert_memory_equal(x->body, y->body, x->body_len);
	}
	assert_int_equal(x->nheaders, y->nheaders);
	for (size_t i = 0; i < x->nheaders; i++) {
		assert_string_equal(x->headers[i].name, y->headers[i].name);
		assert_string_equal(x->headers[i].value, y->headers[i].value);
		assert_int_equal(x->headers[i].value_len, y->headers[i].value_len);
	}
}

static void expect_header(const struct httpreq *r, size_t i, const char *name, const char *value)
{
	assert_true(i < r->nheaders);
	assert_string_equal(r->headers[i].name, name);
	assert_string_equal(r->headers[i].value, value);
	assert_int_equal(r->headers[i].value_len, strlen(value));
}

/* The SDK's request, with the Content-Length its body really has. */
static size_t sdk_request(char *out, size_t size)
{
	int n = snprintf(out, size, SDK_HEAD_NO_LENGTH "%zu\r\n\r\n" SDK_BODY, sizeof(SDK_BODY) - 1);

	assert_true(n > 0 && (size_t)n < size);
	return (size_t)n;
}

static void test_sdk_bootstrap(void **state)
{
	char text[512];
	size_t len = sdk_request(text, sizeof(text));
	size_t head = len - (sizeof(SDK_BODY) - 1);
	struct parse p;
	const struct httpreq *r = &p.req;

	(void)state;
	assert_int_equal(sizeof(SDK_BODY) - 1, 65);
	parse_whole(&p, text, len, &limits);
	assert_int_equal(p.rc, HTTPREQ_DONE);
	assert_int_equal(p.used, len);
	expect_inside(&p);
	assert_int_equal(r->method, HTTP_POST);
	assert_int_equal(r->major, 1);
	assert_int_equal(r->minor, 1);
	assert_true(r->keep_alive);
	assert_false(r->expect_continue);
	assert_string_equal(r->path, "/auth/bootstrap");
	assert_null(r->query);
	assert_int_equal(r->query_len, 0);
	assert_int_equal(r->nheaders, 4);
	expect_header(r, 0, "Host", "iot-auth-global.example.com");
	expect_header(r, 1, "Accept", "text/xml,text/javascript,text/html,application/json");
	expect_header(r, 2, "Content-Type", "application/x-www-form-urlencoded;charset=utf-8");
	expect_header(r, 3, "Content-Length", "65");
	assert_string_equal(httpreq_header(r, "content-type"), "application/x-www-form-urlencoded;charset=utf-8");
	/* The body, in place right after the head. */
	assert_ptr_equal(r->body, p.buf + head);
	assert_int_equal(r->body_len, sizeof(SDK_BODY) - 1);
	assert_memory_equal(r->body, SDK_BODY, sizeof(SDK_BODY) - 1);
	assert_false(httpreq_awaiting_body(&p.ps));
	release(&p);

	/* Announcing 67 bytes, it waits for two more. */
	parse_whole(&p, STR(SDK_HEAD_NO_LENGTH "67\r\n\r\n" SDK_BODY), &limits);
	assert_int_equal(p.rc, HTTPREQ_MORE);
	assert_true(httpreq_awaiting_body(&p.ps));
	release(&p);
}

static void test_get_query(void **state)
{
	struct parse p;
	const struct httpreq *r = &p.req;

	(void)state;
	parse_whole(&p, STR("GET /v1/devices?productKey=a1PK&page=2 HTTP/1.1\r\nHost: x\r\n\r\n"), &limits);
	assert_int_equal(p.rc, HTTPREQ_DONE);
	assert_int_equal(p.used, p.len);
	expect_inside(&p);
	assert_int_equal(r->method, HTTP_GET);
	assert_string_equal(r->path, "/v1/devices");
	assert_non_null(r->query);
	assert_string_equal(r->query, "productKey=a1PK&page=2");
	assert_int_equal(r->query_len, 22);
	assert_null(r->body);
	assert_int_equal(r->body_len, 0);
	assert_int_equal(r->nheaders, 1);
	expect_header(r, 0, "Host", "x");
	release(&p);

	/* An empty query is there, empty. */
	parse_whole(&p, STR("GET /a? HTTP/1.1\r\nHost: x\r\n\r\n"), &limits);
	assert_int_equal(p.rc, HTTPREQ_DONE);
	assert_string_equal(r->path, "/a");
	assert_non_null(r->query);
	assert_string_equal(r->query, "");
	assert_int_equal(r->query_len, 0);
	release(&p);

	/* Only the first '?' splits; nothing is decoded. */
	parse_whole(&p, STR("GET /a%20b/c?x=%41?y HTTP/1.1\r\nHost: x\r\n\r\n"), &limits);
	assert_int_equal(p.rc, HTTPREQ_DONE);
	assert_string_equal(r->path, "/a%20b/c");
	assert_string_equal(r->query, "x=%41?y");
	assert_int_equal(r->query_len, 7);
	release(&p);

	parse_whole(&p, STR("GET / HTTP/1.1\r\n\r\n"), &limits);
	assert_int_equal(p.rc, HTTPREQ_DONE);
	assert_string_equal(r->path, "/");
	assert_null(r->query);
	assert_int_equal(r->nheaders, 0);
	assert_null(httpreq_header(r, "Host"));
	release(&p);
}

static void test_headers(void **state)
{
	struct parse p;
	const struct httpreq *r = &p.req;

	(void)state;
	parse_whole(&p,
		STR("GET / HTTP/1.1\r\n"
		    "Host: example.com\r\n"
		    "X-Spaces:    padded value \t \r\n"
		    "X-Tab:\tv\r\n"
		    "X-Empty:\r\n"
		    "X-Blank:   \r\n"
		    "X-Inner: a  b\t c\r\n"
		    "x-twice: first\r\n"
		    "X-Twice: second\r\n"
		    "\r\n"),
		&limits);
	assert_int_equal(p.rc, HTTPREQ_DONE);
	expect_inside(&p);
	assert_int_equal(r->nheaders, 8);
	expect_header(r, 0, "Host", "example.com");
	expect_header(r, 1, "X-Spaces", "padded value");
	expect_header(r, 2, "X-Tab", "v");
	expect_header(r, 3, "X-Empty", "");
	expect_header(r, 4, "X-Blank", "");
	expect_header(r, 5, "X-Inner", "a  b\t c");
	expect_header(r, 6, "x-twice", "first");
	expect_header(r, 7, "X-Twice", "second");
	/* Looked up whatever the case; the first of two wins. */
	assert_string_equal(httpreq_header(r, "HOST"), "example.com");
	assert_string_equal(httpreq_header(r, "host"), "example.com");
	assert_string_equal(httpreq_header(r, "x-spaces"), "padded value");
	assert_string_equal(httpreq_header(r, "X-EMPTY"), "");
	assert_string_equal(httpreq_header(r, "X-TWICE"), "first");
	assert_null(httpreq_header(r, "X-Missing"));
	assert_null(httpreq_header(r, "X-Twic"));
	assert_null(httpreq_header(r, ""));
	release(&p);
}

/* TEXT is HTTP/1.MINOR and keeps the connection open or not. */
static void expect_keep_alive(const char *text, size_t len, int minor, bool keep_alive)
{
	struct parse p;

	parse_whole(&p, text, len, &limits);
	assert_int_equal(p.rc, HTTPREQ_DONE);
	assert_int_equal(p.req.major, 1);
	assert_int_equal(p.req.minor, minor);
	if (p.req.keep_alive != keep_alive)
		fail_msg("%s: keep_alive %d", text, p.req.keep_alive);
	release(&p);
}

static void test_keep_alive(void **state)
{
	(void)state;
	expect_keep_alive(STR("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), 1, true);
	expect_keep_alive(STR("GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n"), 1, true);
	expect_keep_alive(STR("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"), 1, false);
	expect_keep_alive(STR("GET / HTTP/1.1\r\nConnection: Close\r\nHost: x\r\n\r\n"), 1, false);
	expect_keep_alive(STR("GET / HTTP/1.0\r\nHost: x\r\n\r\n"), 0, false);
	expect_keep_alive(STR("GET / HTTP/1.0\r\nHost: x\r\nConnection: close\r\n\r\n"), 0, false);
	expect_keep_alive(STR("GET / HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n"), 0, true);
	expect_keep_alive(STR("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"), 0, true);
}

static const char chunked_text[] = "POST /c?q=1 HTTP/1.1\r\n"
				   "Host: x\r\n"
				   "Transfer-Encoding: chunked\r\n"
				   "\r\n"
				   "5;name=value\r\n"
				   "hello\r\n"
				   "6;x;y=\"z\"\r\n"
				   " world\r\n"
				   "A\r\n"
				   ", 10 bytes\r\n"
				   "1\r\n"
				   "!\r\n"
				   "0\r\n"
				   "\r\n";

/* Whole, a byte at a time, and cut at random, with the buffer kept and
 * moved: the same request each time. */
static void expect_incremental(const char *text, size_t len, const struct httpreq_limits *l)
{
	struct parse whole, p;

	parse_whole(&whole, text, len, l);
	assert_int_equal(whole.rc, HTTPREQ_DONE);
	assert_int_equal(whole.at, len);
	for (int move = 0; move < 2; move++) {
		parse_bytes(&p, text, len, l, move);
		assert_int_equal(p.calls, len);
		expect_same(&whole, &p);
		release(&p);
		for (uint32_t seed = 1; seed <= 60; seed++) {
			parse_random(&p, text, len, l, seed, move);
			expect_same(&whole, &p);
			release(&p);
		}
	}
	release(&whole);
}

static void test_incremental(void **state)
{
	char sdk[512];
	size_t len = sdk_request(sdk, sizeof(sdk));

	(void)state;
	expect_incremental(sdk, len, &limits);
	expect_incremental(STR("GET /v1/devices?productKey=a1PK&page=2 HTTP/1.1\r\n"
			       "Host: x\r\nX-Spaces:   a b  \r\nX-Empty:\r\nConnection: close\r\n\r\n"),
		&limits);
	expect_incremental(chunked_text, sizeof(chunked_text) - 1, &limits);
	expect_incremental(STR("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"), &limits);
}

/* Called again with no new byte, it still waits. */
static void test_no_new_bytes(void **state)
{
	static const char text[] = "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc";
	static const size_t stops[] = { 1, 10, 20, 47, 48, 49 };
	char *buf = test_malloc(sizeof(text));
	struct httpreq_parser ps;
	struct httpreq req;
	size_t used = 0;

	(void)state;
	httpreq_parser_init(&ps, &limits);
	memcpy(buf, text, sizeof(text));
	for (size_t i = 0; i < sizeof(stops) / sizeof(stops[0]); i++) {
		assert_int_equal(httpreq_parse(&ps, buf, stops[i], &used, &req), HTTPREQ_MORE);
		if (httpreq_parse(&ps, buf, stops[i], &used, &req) != HTTPREQ_MORE)
			fail_msg("the same %zu bytes again: refused", stops[i]);
	}
	assert_int_equal(httpreq_parse(&ps, buf, sizeof(text) - 1, &used, &req), HTTPREQ_DONE);
	assert_int_equal(used, sizeof(text) - 1);
	test_free(buf);
}

static void test_pipelining(void **state)
{
	static const char first[] = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
	static const char second[] = "POST /b HTTP/1.1\r\nHost: y\r\nContent-Length: 3\r\n\r\nabc";
	static const char third[] = "GET /c HTTP/1.1\r\n";
	char text[1024];
	size_t n1 = sizeof(first) - 1, n2 = sizeof(second) - 1, n3 = sizeof(third) - 1;
	size_t nc = sizeof(chunked_text) - 1;
	struct parse p;
	struct httpreq_parser ps;
	struct httpreq req;
	size_t used = 0;

	(void)state;
	memcpy(text, first, n1);
	memcpy(text + n1, second, n2);
	memcpy(text + n1 + n2, third, n3);
	/* Whole, and as it arrives: the first is done as soon as it is whole. */
	for (int way = 0; way < 2; way++) {
		if (way == 0)
			parse_whole(&p, text, n1 + n2 + n3, &limits);
		else
			parse_bytes(&p, text, n1 + n2 + n3, &limits, true);
		assert_int_equal(p.rc, HTTPREQ_DONE);
		assert_int_equal(p.at, way == 0 ? n1 + n2 + n3 : n1);
		assert_int_equal(p.used, n1);
		assert_string_equal(p.req.path, "/a");
		assert_null(p.req.body);
		assert_int_equal(p.req.nheaders, 1);
		expect_header(&p.req, 0, "Host", "x");
		if (way == 0) {
			/* What follows, untouched, for a fresh parser. */
			assert_memory_equal(p.buf + n1, second, n2);
			httpreq_parser_init(&ps, &limits);
			assert_int_equal(httpreq_parse(&ps, p.buf + n1, n2 + n3, &used, &req), HTTPREQ_DONE);
			assert_int_equal(used, n2);
			assert_int_equal(req.method, HTTP_POST);
			assert_string_equal(req.path, "/b");
			expect_header(&req, 0, "Host", "y");
			assert_int_equal(req.body_len, 3);
			assert_memory_equal(req.body, "abc", 3);
			/* And the third is not whole yet. */
			httpreq_parser_init(&ps, &limits);
			assert_int_equal(httpreq_parse(&ps, p.buf + n1 + n2, n3, &used, &req), HTTPREQ_MORE);
		}
		release(&p);
	}

	/* A chunked one, then another: the decoding stays within the first. */
	memcpy(text, chunked_text, nc);
	memcpy(text + nc, second, n2);
	parse_whole(&p, text, nc + n2, &limits);
	assert_int_equal(p.rc, HTTPREQ_DONE);
	assert_int_equal(p.used, nc);
	assert_int_equal(p.req.body_len, 22);
	assert_memory_equal(p.req.body, "hello world, 10 bytes!", 22);
	assert_memory_equal(p.buf + nc, second, n2);
	httpreq_parser_init(&ps, &limits);
	assert_int_equal(httpreq_parse(&ps, p.buf + nc, n2, &used, &req), HTTPREQ_DONE);
	assert_int_equal(used, n2);
	assert_string_equal(req.path, "/b");
	release(&p);
}

static void test_chunked(void **state)
{
	static const char head[] = "POST /c?q=1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
	char text[2048];
	size_t n;
	struct parse p;
	const struct httpreq *r = &p.req;

	(void)state;
	parse_whole(&p, chunked_text, sizeof(chunked_text) - 1, &limits);
	assert_int_equal(p.rc, HTTPREQ_DONE);
	assert_int_equal(p.used, sizeof(chunked_text) - 1);
	expect_inside(&p);
	assert_int_equal(r->method, HTTP_POST);
	assert_string_equal(r->path, "/c");
	assert_string_equal(r->query, "q=1");
	assert_int_equal(r->nheaders, 2);
	expect_header(r, 1, "Transfer-Encoding", "chunked");
	/* Decoded in place, from where the first chunk's data was. */
	assert_ptr_equal(r->body, p.buf + (sizeof(head) - 1) + strlen("5;name=value\r\n"));
	assert_int_equal(r->body_len, 22);
	assert_memory_equal(r->body, "hello world, 10 bytes!", 22);
	release(&p);

	/* Many small chunks, sizes in either case of hex. */
	n = (size_t)snprintf(text, sizeof(text), "%s", head);
	for (int i = 0; i < 20; i++)
		n += (size_t)snprintf(text + n, sizeof(text) - n, "%x\r\n%.*s\r\n", i % 3 + 1, i % 3 + 1, "abc");
	n += (size_t)snprintf(text + n, sizeof(text) - n, "b\r\nABCDEFGHIJK\r\nC\r\nLMNOPQRSTUVW\r\n0\r\n\r\n");
	parse_whole(&p, text, n, &limits);
	assert_int_equal(p.rc, HTTPREQ_DONE);
	assert_int_equal(p.used, n);
	{
		char want[128];
		size_t w = 0;

		for (int i = 0; i < 20; i++) {
			memcpy(want + w, "abc", (size_t)(i % 3 + 1));
			w += (size_t)(i % 3 + 1);
		}
		memcpy(want + w, "ABCDEFGHIJKLMNOPQRSTUVW", 23);
		w += 23;
		assert_int_equal(r->body_len, w);
		assert_memory_equal(r->body, want, w);
	}
	release(&p);
	expect_incremental(text, n, &limits);

	/* Only the last chunk: no body. */
	parse_whole(&p, STR("POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), &limits);
	assert_int_equal(p.rc, HTTPREQ_DONE);
	assert_int_equal(p.used, p.len);
	assert_null(r->body);
	assert_int_equal(r->body_len, 0);
	release(&p);

	/* Still to come: waiting for the body. */
	parse_whole(&p, STR("POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel"), &limits);
	assert_int_equal(p.rc, HTTPREQ_MORE);
	assert_true(httpreq_awaiting_body(&p.ps));
	release(&p);
}

/* TEXT shown with its control bytes escaped. */
static const char *shown(const char *text, size_t len)
{
	static char out[1024];
	size_t o = 0;

	for (size_t i = 0; i < len && o + 5 < sizeof(out); i++) {
		unsigned char c = (unsigned char)text[i];

		if (c == '\r')
			o += (size_t)snprintf(out + o, sizeof(out) - o, "\\r");
		else if (c == '\n')
			o += (size_t)snprintf(out + o, sizeof(out) - o, "\\n");
		else if (c < 32 || c >= 127)
			o += (size_t)snprintf(out + o, sizeof(out) - o, "\\x%02x", c);
		else
			out[o++] = (char)c;
	}
	out[o] = '\0';
	return out;
}

/* Whether TEXT is refused with STATUS, whole and as it arrives (never done
 * before), and still when asked again; says how not when not. */
static bool refused(const char *text, size_t len, const struct httpreq_limits *l, int status)
{
	struct parse p;
	bool ok = true;

	parse_whole(&p, text, len, l);
	if (p.rc != status) {
		print_message("\"%s\": %d, expected %d\n", shown(text, len), p.rc, status);
		ok = false;
	} else if (httpreq_parse(&p.ps, p.buf, p.len, &p.used, &p.req) != status) {
		print_message("\"%s\": not %d when asked again\n", shown(text, len), status);
		ok = false;
	}
	release(&p);
	for (int move = 0; move < 2 && ok; move++) {
		parse_bytes(&p, text, len, l, move);
		if (p.rc != status) {
			print_message("\"%s\" a byte at a time: %d at %zu, expected %d\n", shown(text, len), p.rc,
				p.at, status);
			ok = false;
		}
		release(&p);
		parse_random(&p, text, len, l, 7, move);
		if (ok && p.rc != status) {
			print_message("\"%s\" in pieces: %d, expected %d\n", shown(text, len), p.rc, status);
			ok = false;
		}
		release(&p);
	}
	return ok;
}

static void expect_refused(const char *text, size_t len, const struct httpreq_limits *l, int status)
{
	if (!refused(text, len, l, status))
		fail();
}

struct refusal {
	const char *text;
	size_t len;
	int status;
};

/* Every case is tried; the failures are listed. */
static void expect_refusals(const struct refusal *cases, size_t n, const struct httpreq_limits *l)
{
	size_t bad = 0;

	for (size_t i = 0; i < n; i++)
		if (!refused(cases[i].text, cases[i].len, l, cases[i].status))
			bad++;
	if (bad)
		fail_msg("%zu of %zu not refused as they should", bad, n);
}

static void test_refusals(void **state)
{
	static const struct refusal cases[] = {
		/* Smuggling shapes. */
		{ STR("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc"), 400 },
		{ STR("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"), 400 },
		{ STR("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\ncontent-length: 3\r\n\r\nabc"), 400 },
		{ STR("POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
		      "3\r\nabc\r\n0\r\n\r\n"),
			400 },
		{ STR("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"
		      "3\r\nabc\r\n0\r\n\r\n"),
			400 },
		{ STR("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\nabc"), 400 },
		{ STR("GET / HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n"), 400 },
		{ STR("GET / HTTP/1.1\r\nHost: x\r\nX-\0A: b\r\n\r\n"), 400 },
		{ STR("GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n"), 400 },
		{ STR("GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\r\n\r\n"), 400 },
		{ STR("GET / HTTP/1.1\rHost: x\r\n\r\n"), 400 },
		{ STR("GET / HTTP/1.1\r\nHost\r: x\r\n\r\n"), 400 },
		{ STR("GET / HTTP/1.1\r\nHost: x\r\n X-A: b\r\n\r\n"), 400 },
		{ STR("GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n"), 400 },
		{ STR("GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n\tb\r\n\r\n"), 400 },
		{ STR("GET / HTTP/1.1\r\nX-A: a\r\n b\r\nHost: x\r\n\r\n"), 400 },
		/* Header names. */
		{ STR("GET / HTTP/1.1\r\nHost: x\r\nX A: b\r\n\r\n"), 400 },
		{ STR("GET / HTTP/1.1\r\nHost : x\r\n\r\n"), 400 },
		{ STR("GET / HTTP/1.1\r\n: x\r\n\r\n"), 400 },
		{ STR("GET / HTTP/1.1\r\nX(A): b\r\n\r\n"), 400 },
		/* Request lines. */
		{ STR("GET /\r\n\r\n"), 400 },
		{ STR("GET / HTTP/2.0\r\nHost: x\r\n\r\n"), 400 },
		{ STR("GET / HTTP/0.9\r\nHost: x\r\n\r\n"), 400 },
		{ STR("GET / HTTP/1.10\r\nHost: x\r\n\r\n"), 400 },
		{ STR("GET / HTTPS/1.1\r\nHost: x\r\n\r\n"), 400 },
		{ STR("GET\r\n\r\n"), 400 },
		{ STR("GET \r\n\r\n"), 400 },
		{ STR("GET / HTTP/1.1 x\r\nHost: x\r\n\r\n"), 400 },
		{ STR("\r\nGET\r\n\r\n"), 400 },
		{ STR("G3T / HTTP/1.1\r\n\r\n"), 400 },
		{ STR("GET/ HTTP/1.1\r\n\r\n"), 400 },
		/* Methods. */
		{ STR("post /auth/bootstrap HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"), 405 },
		{ STR("get / HTTP/1.1\r\nHost: x\r\n\r\n"), 405 },
		{ STR("Post / HTTP/1.1\r\nHost: x\r\n\r\n"), 405 },
		{ STR("FOO / HTTP/1.1\r\nHost: x\r\n\r\n"), 405 },
		{ STR("GETS / HTTP/1.1\r\nHost: x\r\n\r\n"), 405 },
		{ STR("BREW / HTTP/1.1\r\nHost: x\r\n\r\n"), 405 },
		/* Content-Length values. */
		{ STR("POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n"), 400 },
		{ STR("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"), 400 },
		{ STR("POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\nx"), 400 },
		{ STR("POST / HTTP/1.1\r\nContent-Length: 1 2\r\n\r\nx"), 400 },
		{ STR("POST / HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n"), 400 },
		{ STR("POST / HTTP/1.1\r\nContent-Length: 1.0\r\n\r\nx"), 400 },
		{ STR("POST / HTTP/1.1\r\nContent-Length:\r\n\r\n"), 400 },
		{ STR("POST / HTTP/1.1\r\nContent-Length: 18446744073709551616\r\n\r\n"), 400 },
		{ STR("POST / HTTP/1.1\r\nContent-Length: 3,3\r\n\r\nabc"), 400 },
		/* Chunk sizes. */
		{ STR("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nx\r\nabc\r\n0\r\n\r\n"), 400 },
		{ STR("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n-3\r\nabc\r\n0\r\n\r\n"), 400 },
		/* Targets that are not a path. */
		{ STR("GET http://example.com/ HTTP/1.1\r\nHost: x\r\n\r\n"), 400 },
		{ STR("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n"), 400 },
		{ STR("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"), 400 },
		{ STR("GET auth/bootstrap HTTP/1.1\r\nHost: x\r\n\r\n"), 400 },
		{ STR("GET ?a=1 HTTP/1.1\r\nHost: x\r\n\r\n"), 400 },
		{ STR("GET /a\0b HTTP/1.1\r\nHost: x\r\n\r\n"), 400 },
		{ STR("GET /a b HTTP/1.1\r\nHost: x\r\n\r\n"), 400 },
	};

	struct parse p;

	(void)state;
	/* The shape the others break. */
	parse_whole(&p, STR("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), &limits);
	assert_int_equal(p.rc, HTTPREQ_DONE);
	release(&p);
	expect_refusals(cases, sizeof(cases) / sizeof(cases[0]), &limits);
}

/* A NUL or another control byte is refused at the start of a header value
 * as anywhere else in it. */
static void test_control_first_in_value(void **state)
{
	static const struct refusal cases[] = {
		{ STR("GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x01\r\n\r\n"), 400 },
		{ STR("GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x7f\r\n\r\n"), 400 },
		{ STR("GET / HTTP/1.1\r\nHost: x\r\nX-A: \0\r\n\r\n"), 400 },
		{ STR("GET / HTTP/1.1\r\nHost: x\r\nX-A:\0b\r\n\r\n"), 400 },
		{ STR("GET / HTTP/1.1\r\nHost: \0x\r\n\r\n"), 400 },
		{ STR("GET / HTTP/1.1\r\nHost: x\r\nX-A: \x01\r\n\r\n"), 400 },
		{ STR("GET / HTTP/1.1\r\nHost: x\r\nX-A: \x7f\r\n\r\n"), 400 },
	};

	(void)state;
	expect_refusals(cases, sizeof(cases) / sizeof(cases[0]), &limits);
}

/* A bare CR (one not followed by LF) anywhere in the head is refused, as
 * SPEC §4 has it: http-parser built without HTTP_PARSER_STRICT lets some
 * through, taking the byte after them for the LF. */
static void test_bare_cr(void **state)
{
	static const struct refusal cases[] = {
		/* After an empty header value. */
		{ STR("GET / HTTP/1.1\r\nHost: x\r\nX-A:\rX-B: 1\r\n\r\n"), 400 },
		{ STR("GET / HTTP/1.1\r\nHost: x\r\nX-A: \r\rX-B: 1\r\n\r\n"), 400 },
		/* In the blank line that ends the head. */
		{ STR("GET / HTTP/1.1\r\nHost: x\r\n\rZ"), 400 },
		{ STR("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\rabc"), 400 },
		/* At the end of a chunked body's trailer section. */
		{ STR("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\rZ"), 400 },
	};

	(void)state;
	expect_refusals(cases, sizeof(cases) / sizeof(cases[0]), &limits);
}

/* A header line that continues the one before it (obs-fold) is refused
 * whatever that one held: an empty value too. */
static void test_obs_fold_empty_value(void **state)
{
	static const struct refusal cases[] = {
		{ STR("GET / HTTP/1.1\r\nHost: x\r\nX-A:\r\n folded\r\n\r\n"), 400 },
		{ STR("GET / HTTP/1.1\r\nHost: x\r\nX-A:  \r\n\tfolded\r\n\r\n"), 400 },
		{ STR("GET / HTTP/1.1\r\nHost:\r\n x\r\n\r\n"), 400 },
	};

	(void)state;
	expect_refusals(cases, sizeof(cases) / sizeof(cases[0]), &limits);
}

/* Chunk framing: each chunk's data is followed by CRLF, each size line
 * ends with CRLF. */
static void test_chunk_framing(void **state)
{
	static const struct refusal cases[] = {
		{ STR("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXY0\r\n\r\n"), 400 },
		{ STR("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\rX0\r\n\r\n"), 400 },
		{ STR("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\rXabc\r\n0\r\n\r\n"), 400 },
		{ STR("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\rX\r\n"), 400 },
	};

	(void)state;
	expect_refusals(cases, sizeof(cases) / sizeof(cases[0]), &limits);
}

/* The request line names HTTP, not any four letters and a separator. */
static void test_version_token(void **state)
{
	static const struct refusal cases[] = {
		{ STR("GET / HTXP/1.1\r\nHost: x\r\n\r\n"), 400 },
		{ STR("GET / HTTP_1.1\r\nHost: x\r\n\r\n"), 400 },
		{ STR("GET / Hxyz/1.1\r\nHost: x\r\n\r\n"), 400 },
	};

	(void)state;
	expect_refusals(cases, sizeof(cases) / sizeof(cases[0]), &limits);
}

/* Trailer fields are not merged into the header section (RFC 9110 §6.5.1). */
/* A head past max_header_bytes is 431 whatever error lies beyond the limit
 * (a bad header token, HTTP/2.1, a body too large), however it arrives; a
 * request line that ends right after the URL is 400 and read no further. */
static void test_limit_before_errors(void **state)
{
	static const char *const tails[] = { "Bad Name: x\r\n\r\n", "\r\n", "Content-Length: 99999\r\n\r\n" };
	static const struct httpreq_limits small = { .max_header_bytes = 1024, .max_body_bytes = 4096 };
	char text[2048];

	(void)state;
	for (size_t t = 0; t < sizeof(tails) / sizeof(tails[0]); t++) {
		int n = snprintf(text, sizeof(text), "POST / HTTP/%s\r\nX-Pad: ", t == 1 ? "2.1" : "1.1");
		while (n < 1200)
			text[n++] = 'a';
		n += snprintf(text + n, sizeof(text) - (size_t)n, "\r\n%s", tails[t]);
		expect_refused(text, (size_t)n, &small, 431);
	}
	expect_refused(STR("GET /auth\r\n\r\n"), &limits, 400);
	expect_refused(STR("GET /a?b=c HTTP\r\n\r\n"), &limits, 400);
}

/* A folded line is refused where it shows (its first byte), whether or not
 * the line then runs past max_header_bytes, however the bytes arrive. */
static void test_fold_past_limit(void **state)
{
	static const struct httpreq_limits small = { .max_header_bytes = 1024, .max_body_bytes = 4096 };
	char text[2048];
	int n;

	(void)state;
	for (int empty = 0; empty < 2; empty++) {
		n = snprintf(text, sizeof(text), "GET / HTTP/1.1\r\nX-A:%s\r\n ", empty ? "" : " 1");
		while (n < 1130)
			text[n++] = 'a';
		n += snprintf(text + n, sizeof(text) - (size_t)n, "\r\n\r\n");
		expect_refused(text, (size_t)n, &small, 400);
	}
}

static void test_trailers_apart(void **state)
{
	struct parse p;

	(void)state;
	parse_whole(&p, STR("POST /t HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
			    "3\r\nabc\r\n0\r\nX-Request-Id: smuggled\r\nContent-Type: text/evil\r\n\r\n"),
		&limits);
	assert_int_equal(p.rc, HTTPREQ_DONE);
	assert_int_equal(p.used, p.len);
	assert_int_equal(p.req.body_len, 3);
	assert_memory_equal(p.req.body, "abc", 3);
	assert_null(httpreq_header(&p.req, "X-Request-Id"));
	assert_null(httpreq_header(&p.req, "Content-Type"));
	assert_int_equal(p.req.nheaders, 2);
	release(&p);
}

static void test_method_trickle(void **state)
{
	static const char foo[] = "FOO / HTTP/1.1\r\nHost: x\r\n\r\n";
	static const char post[] = "post / HTTP/1.1\r\n\r\n";
	char *buf = test_malloc(sizeof(foo));
	struct httpreq_parser ps;
	struct httpreq req;
	size_t used = 0;
	int rc;

	(void)state;
	memcpy(buf, foo, sizeof(foo));
	httpreq_parser_init(&ps, &limits);
	assert_int_equal(httpreq_parse(&ps, buf, 1, &used, &req), HTTPREQ_MORE);
	assert_int_equal(httpreq_parse(&ps, buf, 2, &used, &req), HTTPREQ_MORE);
	assert_int_equal(httpreq_parse(&ps, buf, 3, &used, &req), HTTPREQ_MORE);
	assert_int_equal(httpreq_parse(&ps, buf, 4, &used, &req), 405);
	assert_int_equal(httpreq_parse(&ps, buf, 5, &used, &req), 405);
	assert_int_equal(httpreq_parse(&ps, buf, sizeof(foo) - 1, &used, &req), 405);
	assert_false(httpreq_awaiting_body(&ps));

	memcpy(buf, post, sizeof(post));
	httpreq_parser_init(&ps, &limits);
	for (size_t i = 1; i <= 4; i++)
		assert_int_equal(httpreq_parse(&ps, buf, i, &used, &req), HTTPREQ_MORE);
	assert_int_equal(httpreq_parse(&ps, buf, 5, &used, &req), 405);

	/* A known method's prefix then a stray letter. */
	memcpy(buf, "GEX / HTTP/1.1\r\n\r\n", 19);
	httpreq_parser_init(&ps, &limits);
	assert_int_equal(httpreq_parse(&ps, buf, 2, &used, &req), HTTPREQ_MORE);
	assert_int_equal(httpreq_parse(&ps, buf, 3, &used, &req), HTTPREQ_MORE);
	assert_int_equal(httpreq_parse(&ps, buf, 4, &used, &req), 405);
	test_free(buf);

	/* Letters without end are not waited for forever. */
	buf = test_malloc(200);
	memset(buf, 'Q', 200);
	httpreq_parser_init(&ps, &limits);
	rc = HTTPREQ_MORE;
	for (size_t i = 1; i <= 200 && rc == HTTPREQ_MORE; i++)
		rc = httpreq_parse(&ps, buf, i, &used, &req);
	assert_int_equal(rc, 400);
	test_free(buf);
}

/* The longest unknown method is 405 however its bytes arrive: cut after its
 * last letter, the byte that decides has not come yet. */
static void test_method_longest(void **state)
{
	static const char text[] = "ABCDEFGHIJKLMNOPQRSTUVWX / HTTP/1.1\r\nHost: x\r\n\r\n";
	char *buf = test_malloc(sizeof(text));
	struct httpreq_parser ps;
	struct httpreq req;
	size_t used = 0;

	(void)state;
	memcpy(buf, text, sizeof(text));
	httpreq_parser_init(&ps, &limits);
	assert_int_equal(httpreq_parse(&ps, buf, sizeof(text) - 1, &used, &req), 405);
	httpreq_parser_init(&ps, &limits);
	assert_int_equal(httpreq_parse(&ps, buf, 24, &used, &req), HTTPREQ_MORE);
	assert_int_equal(httpreq_parse(&ps, buf, sizeof(text) - 1, &used, &req), 405);
	/* One letter more is no method. */
	memcpy(buf, "ABCDEFGHIJKLMNOPQRSTUVWXY / HTTP/1.1\r\n", 39);
	httpreq_parser_init(&ps, &limits);
	assert_int_equal(httpreq_parse(&ps, buf, 24, &used, &req), HTTPREQ_MORE);
	assert_int_equal(httpreq_parse(&ps, buf, 39, &used, &req), 400);
	test_free(buf);
}

/* A request whose head (request line, headers and the blank line) is HEAD
 * bytes long, padded with one header, then BODY. */
static size_t sized_request(char *out, size_t size, size_t head, const char *extra, const char *body)
{
	int n = snprintf(out, size, "POST /p HTTP/1.1\r\nHost: x\r\n%sX-Pad: ", extra);
	size_t pad;

	assert_true(n > 0 && (size_t)n + 4 <= head && head + strlen(body) < size);
	pad = head - (size_t)n - 4;
	memset(out + n, 'p', pad);
	memcpy(out + n + pad, "\r\n\r\n", 4);
	memcpy(out + head, body, strlen(body) + 1);
	return head + strlen(body);
}

static void test_head_limit(void **state)
{
	const struct httpreq_limits l = { .max_header_bytes = 300, .max_body_bytes = 1000 };
	char text[2048];
	size_t n;
	struct parse p;

	(void)state;
	/* Exactly at the limit: taken, all at once and as it arrives. */
	n = sized_request(text, sizeof(text), 300, "", "");
	parse_whole(&p, text, n, &l);
	assert_int_equal(p.rc, HTTPREQ_DONE);
	release(&p);
	expect_incremental(text, n, &l);
	n = sized_request(text, sizeof(text), 300, "Content-Length: 5\r\n", "hello");
	expect_incremental(text, n, &l);

	/* One byte over, complete and all at once. */
	n = sized_request(text, sizeof(text), 301, "", "");
	parse_whole(&p, text, n, &l);
	assert_int_equal(p.rc, 431);
	release(&p);
	n = sized_request(text, sizeof(text), 301, "Content-Length: 5\r\n", "hello");
	parse_whole(&p, text, n, &l);
	assert_int_equal(p.rc, 431);
	release(&p);
	/* Trickling: refused with the byte past the limit. */
	for (int move = 0; move < 2; move++) {
		parse_bytes(&p, text, n, &l, move);
		assert_int_equal(p.rc, 431);
		assert_int_equal(p.at, 301);
		release(&p);
	}
	/* A head that never ends. */
	memset(text, 'h', sizeof(text));
	memcpy(text, "GET / HTTP/1.1\r\nX-Long: ", 24);
	parse_bytes(&p, text, sizeof(text), &l, false);
	assert_int_equal(p.rc, 431);
	assert_int_equal(p.at, 301);
	release(&p);
	parse_whole(&p, text, sizeof(text), &l);
	assert_int_equal(p.rc, 431);
	release(&p);
	/* Many headers that each fit. */
	n = (size_t)snprintf(text, sizeof(text), "GET / HTTP/1.1\r\n");
	for (int i = 0; i < 30; i++)
		n += (size_t)snprintf(text + n, sizeof(text) - n, "X-H%02d: v\r\n", i);
	n += (size_t)snprintf(text + n, sizeof(text) - n, "\r\n");
	expect_refused(text, n, &l, 431);
}

/* The head counts what comes before the body, however the body is framed. */
static void test_head_limit_chunked(void **state)
{
	const struct httpreq_limits l = { .max_header_bytes = 300, .max_body_bytes = 1000 };
	char text[2048];
	size_t n = sized_request(text, sizeof(text), 300, "Transfer-Encoding: chunked\r\n", "5\r\nhello\r\n0\r\n\r\n");
	struct parse p;

	(void)state;
	parse_whole(&p, text, n, &l);
	assert_int_equal(p.rc, HTTPREQ_DONE);
	assert_int_equal(p.req.body_len, 5);
	release(&p);
	expect_incremental(text, n, &l);
	n = sized_request(text, sizeof(text), 300, "Transfer-Encoding: chunked\r\n", "0\r\n\r\n");
	expect_incremental(text, n, &l);
}

static void test_headers_max(void **state)
{
	char text[4096];
	size_t n;
	struct parse p;

	(void)state;
	/* As many as there is room for. */
	n = (size_t)snprintf(text, sizeof(text), "GET / HTTP/1.1\r\n");
	for (int i = 0; i < HTTPREQ_HEADERS_MAX; i++)
		n += (size_t)snprintf(text + n, sizeof(text) - n, "X-H%02d: v%d\r\n", i, i);
	n += (size_t)snprintf(text + n, sizeof(text) - n, "\r\n");
	parse_whole(&p, text, n, &limits);
	assert_int_equal(p.rc, HTTPREQ_DONE);
	assert_int_equal(p.req.nheaders, HTTPREQ_HEADERS_MAX);
	expect_header(&p.req, 0, "X-H00", "v0");
	expect_header(&p.req, HTTPREQ_HEADERS_MAX - 1, "X-H47", "v47");
	assert_string_equal(httpreq_header(&p.req, "x-h47"), "v47");
	release(&p);
	expect_incremental(text, n, &limits);

	/* One more. */
	n -= 2;
	n += (size_t)snprintf(text + n, sizeof(text) - n, "X-Last: z\r\n\r\n");
	expect_refused(text, n, &limits, 431);
	/* Empty values count too. */
	n = (size_t)snprintf(text, sizeof(text), "GET / HTTP/1.1\r\n");
	for (int i = 0; i <= HTTPREQ_HEADERS_MAX; i++)
		n += (size_t)snprintf(text + n, sizeof(text) - n, "X-H%02d:\r\n", i);
	n += (size_t)snprintf(text + n, sizeof(text) - n, "\r\n");
	expect_refused(text, n, &limits, 431);
}

/* Which refusal, when a request has two faults, does not depend on how its
 * bytes arrive: a fault after the head limit is 431 (the limit comes first
 * when the bytes trickle in), a bad name for the header one past the most
 * is 400 (a whole name is checked before it counts). */
static void test_refusal_order(void **state)
{
	const struct httpreq_limits l = { .max_header_bytes = 1024, .max_body_bytes = 1000 };
	static const char *const faults[] = { "X A: b\r\n", "X-A: a\rb\r\n", "X-A: a\r\n b\r\n",
		"Content-Length: 1\r\nContent-Length: 2\r\n" };
	char text[4096];
	size_t n;

	(void)state;
	for (size_t i = 0; i < sizeof(faults) / sizeof(faults[0]); i++) {
		n = (size_t)snprintf(text, sizeof(text), "POST / HTTP/1.1\r\nX-Pad: %01100d\r\n%s\r\n", 0, faults[i]);
		expect_refused(text, n, &l, 431);
		/* Before the limit, the fault. */
		n = (size_t)snprintf(text, sizeof(text), "POST / HTTP/1.1\r\nX-Pad: %0900d\r\n%s\r\n", 0, faults[i]);
		expect_refused(text, n, &l, 400);
	}
	n = (size_t)snprintf(text, sizeof(text), "GET / HTTP/1.1\r\n");
	for (int i = 0; i < HTTPREQ_HEADERS_MAX; i++)
		n += (size_t)snprintf(text + n, sizeof(text) - n, "X-H%02d: v\r\n", i);
	n += (size_t)snprintf(text + n, sizeof(text) - n, "X-Last(: z\r\n\r\n");
	expect_refused(text, n, &limits, 400);
}

static void test_body_limit(void **state)
{
	const struct httpreq_limits l = { .max_header_bytes = 8192, .max_body_bytes = 100 };
	static const char over[] = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n";
	static const char head[] = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
	char text[1024], bees[102];
	size_t n, first;
	struct parse p;

	(void)state;
	memset(bees, 'b', 101);
	bees[101] = '\0';
	/* At the limit. */
	n = (size_t)snprintf(text, sizeof(text), "POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\n%.100s", bees);
	parse_whole(&p, text, n, &l);
	assert_int_equal(p.rc, HTTPREQ_DONE);
	assert_int_equal(p.req.body_len, 100);
	release(&p);

	/* Over, known from Content-Length with no byte of the body sent. */
	parse_whole(&p, STR(over), &l);
	assert_int_equal(p.rc, 413);
	release(&p);
	for (int move = 0; move < 2; move++) {
		parse_bytes(&p, STR(over), &l, move);
		assert_int_equal(p.rc, 413);
		assert_int_equal(p.at, sizeof(over) - 1);
		release(&p);
	}
	expect_refused(STR("POST / HTTP/1.1\r\nContent-Length: 99999999999999\r\n\r\n"), &l, 413);
	n = (size_t)snprintf(text, sizeof(text), "%s%s", over, bees);
	expect_refused(text, n, &l, 413);

	/* Chunked: taken at the limit, refused with the byte past it. */
	n = (size_t)snprintf(text, sizeof(text), "%s32\r\n%.50s\r\n32\r\n%.50s\r\n0\r\n\r\n", head, bees, bees);
	parse_whole(&p, text, n, &l);
	assert_int_equal(p.rc, HTTPREQ_DONE);
	assert_int_equal(p.req.body_len, 100);
	release(&p);
	n = (size_t)snprintf(text, sizeof(text), "%s32\r\n%.50s\r\n33\r\n%.51s\r\n0\r\n\r\n", head, bees, bees);
	first = sizeof(head) - 1 + 4 + 50 + 2 + 4 + 50; /* up to the 100th byte of the body */
	parse_whole(&p, text, n, &l);
	assert_int_equal(p.rc, 413);
	release(&p);
	for (int move = 0; move < 2; move++) {
		parse_bytes(&p, text, n, &l, move);
		assert_int_equal(p.rc, 413);
		assert_int_equal(p.at, first + 1);
		release(&p);
	}
	/* A chunk announced bigger than the limit, sent slowly. */
	n = (size_t)snprintf(text, sizeof(text), "%sffff\r\n%s%s", head, bees, bees);
	parse_bytes(&p, text, n, &l, true);
	assert_int_equal(p.rc, 413);
	assert_int_equal(p.at, sizeof(head) - 1 + 6 + 101);
	release(&p);
}

static void test_continue(void **state)
{
	static const char text[] = "POST /auth/bootstrap HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
				   "Content-Length: 5\r\n\r\nhello";
	size_t head = sizeof(text) - 1 - 5;
	char *buf = test_malloc(sizeof(text));
	struct httpreq_parser ps;
	struct httpreq req;
	size_t used = 0;
	struct parse p;

	(void)state;
	memcpy(buf, text, sizeof(text));
	httpreq_parser_init(&ps, &limits);
	assert_false(httpreq_awaiting_body(&ps));
	/* Not before the head is whole. */
	assert_int_equal(httpreq_parse(&ps, buf, head - 1, &used, &req), HTTPREQ_MORE);
	assert_false(httpreq_awaiting_body(&ps));
	assert_int_equal(httpreq_parse(&ps, buf, head, &used, &req), HTTPREQ_MORE);
	assert_true(httpreq_awaiting_body(&ps));
	assert_true(httpreq_expects_continue(&ps, buf));
	/* Part of the body. */
	assert_int_equal(httpreq_parse(&ps, buf, head + 2, &used, &req), HTTPREQ_MORE);
	assert_true(httpreq_awaiting_body(&ps));
	assert_int_equal(httpreq_parse(&ps, buf, head + 5, &used, &req), HTTPREQ_DONE);
	assert_false(httpreq_awaiting_body(&ps));
	assert_true(req.expect_continue);
	assert_int_equal(req.body_len, 5);
	assert_memory_equal(req.body, "hello", 5);
	test_free(buf);

	/* Whatever the case, and chunked. */
	parse_whole(&p, STR("POST / HTTP/1.1\r\nexpect:   100-Continue \r\nTransfer-Encoding: chunked\r\n\r\n"),
		&limits);
	assert_int_equal(p.rc, HTTPREQ_MORE);
	assert_true(httpreq_awaiting_body(&p.ps));
	assert_true(httpreq_expects_continue(&p.ps, p.buf));
	release(&p);

	/* No Expect: a body awaited, no 100 to send. */
	parse_whole(&p, STR("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n"), &limits);
	assert_int_equal(p.rc, HTTPREQ_MORE);
	assert_true(httpreq_awaiting_body(&p.ps));
	assert_false(httpreq_expects_continue(&p.ps, p.buf));
	release(&p);

	/* Another expectation. */
	parse_whole(&p, STR("POST / HTTP/1.1\r\nExpect: something\r\nContent-Length: 5\r\n\r\n"), &limits);
	assert_int_equal(p.rc, HTTPREQ_MORE);
	assert_false(httpreq_expects_continue(&p.ps, p.buf));
	release(&p);

	/* No body: done at once, nothing awaited. */
	parse_whole(&p, STR("GET / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n"), &limits);
	assert_int_equal(p.rc, HTTPREQ_DONE);
	assert_false(httpreq_awaiting_body(&p.ps));
	assert_true(p.req.expect_continue);
	release(&p);

	/* Refused before its body: nothing awaited either. */
	parse_whole(&p, STR("POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 999999\r\n\r\n"), &limits);
	assert_int_equal(p.rc, 413);
	assert_false(httpreq_awaiting_body(&p.ps));
	release(&p);
}

/* The expectation is "100-continue" exactly, the same way both ask it. */
static void test_continue_exact(void **state)
{
	struct parse p;

	(void)state;
	parse_whole(&p, STR("POST / HTTP/1.1\r\nExpect: 100-continued\r\nContent-Length: 1\r\n\r\n"), &limits);
	assert_int_equal(p.rc, HTTPREQ_MORE);
	assert_false(httpreq_expects_continue(&p.ps, p.buf));
	release(&p);
	parse_whole(&p, STR("POST / HTTP/1.1\r\nExpect: 100-continued\r\nContent-Length: 1\r\n\r\nx"), &limits);
	assert_int_equal(p.rc, HTTPREQ_DONE);
	assert_false(p.req.expect_continue);
	release(&p);
}

/* RFC 9110 §10.1.1: an HTTP/1.0 request's 100-continue is ignored. */
static void test_continue_http10(void **state)
{
	struct parse p;

	(void)state;
	parse_whole(&p, STR("POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n"), &limits);
	assert_int_equal(p.rc, HTTPREQ_MORE);
	assert_true(httpreq_awaiting_body(&p.ps));
	assert_false(httpreq_expects_continue(&p.ps, p.buf));
	release(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sdk_bootstrap),
		cmocka_unit_test(test_get_query),
		cmocka_unit_test(test_headers),
		cmocka_unit_test(test_keep_alive),
		cmocka_unit_test(test_incremental),
		cmocka_unit_test(test_no_new_bytes),
		cmocka_unit_test(test_pipelining),
		cmocka_unit_test(test_chunked),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_control_first_in_value),
		cmocka_unit_test(test_bare_cr),
		cmocka_unit_test(test_obs_fold_empty_value),
		cmocka_unit_test(test_chunk_framing),
		cmocka_unit_test(test_version_token),
		cmocka_unit_test(test_limit_before_errors),
		cmocka_unit_test(test_fold_past_limit),
		cmocka_unit_test(test_trailers_apart),
		cmocka_unit_test(test_method_trickle),
		cmocka_unit_test(test_method_longest),
		cmocka_unit_test(test_head_limit),
		cmocka_unit_test(test_head_limit_chunked),
		cmocka_unit_test(test_headers_max),
		cmocka_unit_test(test_refusal_order),
		cmocka_unit_test(test_body_limit),
		cmocka_unit_test(test_continue),
		cmocka_unit_test(test_continue_exact),
		cmocka_unit_test(test_continue_http10),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

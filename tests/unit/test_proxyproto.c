#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <poll.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>

#include <cmocka.h>

#include "proxyproto.h"

static const unsigned char v2_sig[12] = { 0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a };

static const char *text_of(const struct netaddr *a)
{
	static char buf[NETADDR_TEXT_MAX];

	netaddr_format(a, buf);
	return buf;
}

static int parse(const void *buf, size_t len, struct netaddr *src, bool *has_addr)
{
	return proxyproto_parse(buf, len, src, has_addr);
}

/* Every proper prefix of a good header needs more; the whole is accepted. */
static void expect_prefixes_need_more(const void *buf, size_t hlen)
{
	struct netaddr a;
	bool has;

	for (size_t i = 0; i < hlen; i++) {
		int rc = parse(buf, i, &a, &has);

		if (rc != 0)
			fail_msg("prefix of %zu/%zu bytes gave %d", i, hlen, rc);
	}
}

static void expect_v1(const char *line, int family, const char *client)
{
	char buf[256];
	size_t len = strlen(line);
	struct netaddr a;
	bool has = true;
	int rc;

	rc = parse(line, len, &a, &has);
	if (rc != (int)len)
		fail_msg("\"%s\": %d, expected %zu", line, rc, len);
	if (client == NULL) {
		assert_false(has);
	} else {
		assert_true(has);
		assert_int_equal(a.family, family);
		assert_string_equal(text_of(&a), client);
	}
	expect_prefixes_need_more(line, len);
	/* What follows the header is not part of it. */
	snprintf(buf, sizeof(buf), "%sGET / HTTP/1.1\r\n\r\n", line);
	assert_int_equal(parse(buf, strlen(buf), &a, &has), (int)len);
}

static void expect_bad(const void *buf, size_t len)
{
	struct netaddr a;
	bool has;
	int rc = parse(buf, len, &a, &has);

	if (rc != -1) {
		char show[128];

		snprintf(show, sizeof(show), "%.*s", (int)(len < 100 ? len : 100), (const char *)buf);
		fail_msg("accepted (%d): \"%s\"", rc, show);
	}
}

static void expect_bad_line(const char *line)
{
	expect_bad(line, strlen(line));
}

static void test_v1_tcp4(void **state)
{
	(void)state;
	expect_v1("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n", AF_INET, "192.168.0.1");
	expect_v1("PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n", AF_INET, "0.0.0.0");
	expect_v1("PROXY TCP4 203.0.113.7 10.0.0.1 00080 8\r\n", AF_INET, "203.0.113.7");
}

static void test_v1_tcp6(void **state)
{
	(void)state;
	expect_v1("PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n", AF_INET6, "2001:db8::1");
	expect_v1("PROXY TCP6 ::1 ::1 80 80\r\n", AF_INET6, "::1");
	expect_v1("PROXY TCP6 FE80::A:B 2001:DB8::2 1 2\r\n", AF_INET6, "fe80::a:b");
	/* An IPv4-mapped source is IPv4, as the rest of the daemon has it. */
	expect_v1("PROXY TCP6 ::ffff:198.51.100.9 ::ffff:10.0.0.1 4000 443\r\n", AF_INET, "198.51.100.9");
	expect_v1("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ::1 65535 65535\r\n", AF_INET6,
		"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
}

static void test_v1_unknown(void **state)
{
	char line[PROXYPROTO_V1_MAX + 2];

	(void)state;
	expect_v1("PROXY UNKNOWN\r\n", 0, NULL);
	expect_v1("PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n", 0, NULL);
	expect_v1("PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\n", 0, NULL);
	/* The worst case of the specification: exactly 107 bytes. */
	memset(line, 'x', sizeof(line));
	memcpy(line, "PROXY UNKNOWN ", 14);
	memcpy(line + PROXYPROTO_V1_MAX - 2, "\r\n", 3);
	assert_int_equal(strlen(line), PROXYPROTO_V1_MAX);
	expect_v1(line, 0, NULL);
}

static void test_v1_too_long(void **state)
{
	char line[PROXYPROTO_V1_MAX + 2];
	struct netaddr a;
	bool has;

	(void)state;
	/* 108 bytes with the CRLF. */
	memset(line, 'x', sizeof(line));
	memcpy(line, "PROXY UNKNOWN ", 14);
	memcpy(line + PROXYPROTO_V1_MAX - 1, "\r\n", 3);
	expect_bad_line(line);
	/* No CRLF within 107 bytes: invalid at 107, still possible at 106. */
	memset(line, 'x', sizeof(line));
	memcpy(line, "PROXY UNKNOWN ", 14);
	assert_int_equal(parse(line, PROXYPROTO_V1_MAX - 1, &a, &has), 0);
	expect_bad(line, PROXYPROTO_V1_MAX);
	expect_bad(line, sizeof(line));
	/* A TCP6 line with long addresses cannot fit. */
	expect_bad_line("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 "
			"ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 65535 65535\r\n");
}

static void test_v1_bad(void **state)
{
	static const char *const bad[] = {
		"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
		"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n",
		"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
		"PROXY TCP 1.2.3.4 5.6.7.8 1 2\r\n",
		"PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
		"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
		"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8  1 2\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 1  2\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",
		"PROXY\tTCP4 1.2.3.4 5.6.7.8 1 2\r\n",
		"PROXY TCP4\t1.2.3.4 5.6.7.8 1 2\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX",
		"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8\r\n",
		"PROXY TCP4 1.2.3.4\r\n",
		"PROXY TCP4\r\n",
		"PROXY\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 1 +2\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 000001 2\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 0x10 2\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 1a 2\r\n",
		"PROXY TCP4 256.2.3.4 5.6.7.8 1 2\r\n",
		"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n",
		"PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n",
		"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.256 1 2\r\n",
		"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
		"PROXY TCP4 1.2.3.4 ::1 1 2\r\n",
		"PROXY TCP4 [1.2.3.4] 5.6.7.8 1 2\r\n",
		"PROXY TCP6 1.2.3.4 ::1 1 2\r\n",
		"PROXY TCP6 ::1 1.2.3.4 1 2\r\n",
		"PROXY TCP6 [::1] ::1 1 2\r\n",
		"PROXY TCP6 ::1::2 ::1 1 2\r\n",
		"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n",
		"PROXY TCP6 g::1 ::1 1 2\r\n",
		"PROXY UNKNOWNX\r\n",
		"PROXY UNKNOWN\n",
		"PROXY UNKNOWN a\nb\r\n",
		"PROXY UNKNOWN\rX",
		"PROXY UNKNOW\r\n",
		"PROXY LOCAL\r\n",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_bad_line(bad[i]);
	expect_bad("PROXY TCP4 1.2.3.4\0 5.6.7.8 1 2\r\n", 33);
	expect_bad("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\0\r\n", 33);
	expect_bad("PROXY UNKNOWN\0\r\n", 16);
}

static void test_not_proxy(void **state)
{
	static const char *const http[] = {
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /auth/bootstrap HTTP/1.1\r\n",
		"PUT / HTTP/1.1\r\n",
		"PATCH / HTTP/1.1\r\n",
		"G",
		"P",
		"PO",
		"PROXX",
		"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", /* a TLS ClientHello */
		" PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
		"\r\n\r\n",
		"\n",
	};

	(void)state;
	/* Decided on the first byte that cannot start a header. */
	for (size_t i = 0; i < sizeof(http) / sizeof(http[0]); i++) {
		if (strcmp(http[i], "P") == 0 || strcmp(http[i], "\r\n\r\n") == 0)
			continue;
		expect_bad_line(http[i]);
	}
	expect_bad("GET", 1);
	expect_bad("\x16", 1);
	expect_bad("\x00", 1);
	assert_int_equal(parse("\r\n\r\n\0\r\nQUIT", 11, NULL, NULL), 0);
	expect_bad("\r\n\r\n\0\r\nQUIX", 11); /* the v2 signature, one byte wrong */
	expect_bad("\r\n\r\nGET", 7);
}

static void test_garbage(void **state)
{
	unsigned char buf[512];
	uint32_t x = 12345;

	(void)state;
	for (int round = 0; round < 20000; round++) {
		size_t len = (size_t)(round % (int)sizeof(buf));
		struct netaddr a;
		bool has;
		int rc;

		for (size_t i = 0; i < len; i++) {
			x = x * 1103515245u + 12345u;
			buf[i] = (unsigned char)(x >> 16);
		}
		/* Half the rounds start like a header, so the parser goes deeper. */
		if ((round & 1) && len >= 6)
			memcpy(buf, (round & 2) ? "PROXY " : "\r\n\r\n\0\r", 6);
		rc = parse(buf, len, &a, &has);
		assert_true(rc >= -1 && rc <= (int)len);
		if (len > 0 && buf[0] != 'P' && buf[0] != '\r')
			assert_int_equal(rc, -1);
	}
}

/* A v2 header: command CMD, family byte FAM, SRC/DST addresses of ALEN
 * bytes each and EXTRA bytes of TLVs (the length field says what LENFIELD
 * is, or the real length when negative). Returns the header's length. */
static size_t v2(unsigned char *out, int ver, int cmd, int fam, const void *addrs, size_t alen, size_t extra,
	long lenfield)
{
	size_t body = alen + 4 * (alen == 8 || alen == 32) + extra;
	uint16_t l = (uint16_t)(lenfield < 0 ? (long)body : lenfield);

	memcpy(out, v2_sig, 12);
	out[12] = (unsigned char)(ver << 4 | cmd);
	out[13] = (unsigned char)fam;
	out[14] = (unsigned char)(l >> 8);
	out[15] = (unsigned char)l;
	memset(out + 16, 0, body);
	if (alen)
		memcpy(out + 16, addrs, alen);
	/* ports */
	if (alen == 8 || alen == 32) {
		out[16 + alen] = 0x1f;
		out[16 + alen + 1] = 0x90;
		out[16 + alen + 2] = 0x01;
		out[16 + alen + 3] = 0xbb;
	}
	for (size_t i = 0; i < extra; i++)
		out[16 + alen + 4 * (alen == 8 || alen == 32) + i] = (unsigned char)(0x20 + i % 7);
	return 16 + body;
}

static void expect_v2(const unsigned char *buf, size_t len, int family, const char *client)
{
	unsigned char more[8192];
	struct netaddr a;
	bool has = true;
	int rc = parse(buf, len, &a, &has);

	if (rc != (int)len)
		fail_msg("v2 header of %zu bytes: %d", len, rc);
	if (client == NULL) {
		assert_false(has);
	} else {
		assert_true(has);
		assert_int_equal(a.family, family);
		assert_string_equal(text_of(&a), client);
	}
	expect_prefixes_need_more(buf, len);
	memcpy(more, buf, len);
	memcpy(more + len, "GET / HTTP/1.1\r\n\r\n", 18);
	assert_int_equal(parse(more, len + 18, &a, &has), (int)len);
}

static void test_v2_tcp4(void **state)
{
	static const unsigned char addrs[8] = { 203, 0, 113, 5, 10, 0, 0, 1 };
	unsigned char buf[8192];
	size_t n;

	(void)state;
	n = v2(buf, 2, 1, 0x11, addrs, 8, 0, -1);
	assert_int_equal(n, 28);
	expect_v2(buf, n, AF_INET, "203.0.113.5");
	/* TLVs after the addresses are skipped. */
	n = v2(buf, 2, 1, 0x11, addrs, 8, 40, -1);
	expect_v2(buf, n, AF_INET, "203.0.113.5");
	/* The largest header accepted. */
	n = v2(buf, 2, 1, 0x11, addrs, 8, PROXYPROTO_V2_MAX - 28, -1);
	assert_int_equal(n, PROXYPROTO_V2_MAX);
	expect_v2(buf, n, AF_INET, "203.0.113.5");
}

static void test_v2_tcp6(void **state)
{
	unsigned char addrs[32] = { 0x20, 0x01, 0x0d, 0xb8, [15] = 0x09, [16] = 0x20, [17] = 0x01, [31] = 1 };
	unsigned char mapped[32] = { [10] = 0xff, [11] = 0xff, [12] = 198, [13] = 51, [14] = 100, [15] = 7,
		[31] = 1 };
	unsigned char buf[8192];
	size_t n;

	(void)state;
	n = v2(buf, 2, 1, 0x21, addrs, 32, 0, -1);
	assert_int_equal(n, 52);
	expect_v2(buf, n, AF_INET6, "2001:db8::9");
	n = v2(buf, 2, 1, 0x21, addrs, 32, 3, -1);
	expect_v2(buf, n, AF_INET6, "2001:db8::9");
	n = v2(buf, 2, 1, 0x21, mapped, 32, 0, -1);
	expect_v2(buf, n, AF_INET, "198.51.100.7");
}

static void test_v2_no_address(void **state)
{
	static const unsigned char addrs4[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
	unsigned char buf[8192];
	size_t n;

	(void)state;
	/* LOCAL: health checks from the balancer; any family, ignored. */
	n = v2(buf, 2, 0, 0x00, NULL, 0, 0, -1);
	assert_int_equal(n, 16);
	expect_v2(buf, n, 0, NULL);
	n = v2(buf, 2, 0, 0x11, addrs4, 8, 0, -1);
	expect_v2(buf, n, 0, NULL);
	n = v2(buf, 2, 0, 0x31, NULL, 0, 216, -1);
	expect_v2(buf, n, 0, NULL);
	/* PROXY over UNSPEC: no address either; what follows is skipped. */
	n = v2(buf, 2, 1, 0x00, NULL, 0, 0, -1);
	expect_v2(buf, n, 0, NULL);
	n = v2(buf, 2, 1, 0x00, NULL, 0, 12, -1);
	expect_v2(buf, n, 0, NULL);
}

static void test_v2_bad(void **state)
{
	static const unsigned char addrs4[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
	static const unsigned char addrs6[32] = { 1 };
	static const int bad_fams[] = { 0x01, 0x02, 0x10, 0x12, 0x13, 0x20, 0x22, 0x31, 0x32, 0x41, 0xff };
	unsigned char buf[8192];
	size_t n;

	(void)state;
	/* Version other than 2. */
	for (int ver = 0; ver < 16; ver++) {
		if (ver == 2)
			continue;
		n = v2(buf, ver, 1, 0x11, addrs4, 8, 0, -1);
		expect_bad(buf, n);
		expect_bad(buf, 13);
	}
	/* Commands other than LOCAL and PROXY. */
	for (int cmd = 2; cmd < 16; cmd++) {
		n = v2(buf, 2, cmd, 0x11, addrs4, 8, 0, -1);
		expect_bad(buf, n);
		expect_bad(buf, 13);
	}
	/* UDP, UNIX and undefined families with PROXY. */
	for (size_t i = 0; i < sizeof(bad_fams) / sizeof(bad_fams[0]); i++) {
		n = v2(buf, 2, 1, bad_fams[i], addrs6, 32, 0, -1);
		expect_bad(buf, n);
		expect_bad(buf, 14);
	}
	/* A length that does not cover the addresses. */
	n = v2(buf, 2, 1, 0x11, addrs4, 8, 0, 11);
	expect_bad(buf, n);
	expect_bad(buf, 16);
	n = v2(buf, 2, 1, 0x11, addrs4, 8, 0, 0);
	expect_bad(buf, 16);
	n = v2(buf, 2, 1, 0x21, addrs6, 32, 0, 35);
	expect_bad(buf, n);
	n = v2(buf, 2, 1, 0x21, addrs6, 32, 0, 12);
	expect_bad(buf, n);
	/* Over the cap: decided from the 16-byte preamble, without waiting. */
	n = v2(buf, 2, 1, 0x11, addrs4, 8, PROXYPROTO_V2_MAX - 27, -1);
	assert_int_equal(n, PROXYPROTO_V2_MAX + 1);
	expect_bad(buf, n);
	expect_bad(buf, 16);
	n = v2(buf, 2, 1, 0x11, addrs4, 8, 0, 65535);
	expect_bad(buf, 16);
	n = v2(buf, 2, 0, 0x00, NULL, 0, 0, 65535);
	expect_bad(buf, 16);
	/* A wrong byte anywhere in the signature. */
	for (size_t i = 0; i < 12; i++) {
		n = v2(buf, 2, 1, 0x11, addrs4, 8, 0, -1);
		buf[i] ^= 0x40;
		expect_bad(buf, n);
		expect_bad(buf, i + 1);
	}
}

/* The filter, without evhttp: a socketpair under a proxyproto bufferevent. */
struct glue {
	struct event_base *base;
	struct evbuffer *got;
	short events;
	bool done;
};

static void glue_read(struct bufferevent *bev, void *arg)
{
	struct glue *g = arg;

	evbuffer_add_buffer(g->got, bufferevent_get_input(bev));
	if (evbuffer_get_length(g->got) > 0)
		g->done = true;
}

static void glue_event(struct bufferevent *bev, short what, void *arg)
{
	struct glue *g = arg;

	(void)bev;
	g->events |= what;
	g->done = true;
}

static void glue_run(struct glue *g)
{
	for (int i = 0; i < 1000 && !g->done; i++)
		event_base_loop(g->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
}

static void glue_send(int fd, const void *buf, size_t len)
{
	assert_int_equal(write(fd, buf, len), (ssize_t)len);
}

static void test_filter(void **state)
{
	static const char hdr[] = "PROXY TCP6 2001:db8::7 ::1 1000 443\r\n";
	struct glue g = { .base = event_base_new(), .got = evbuffer_new() };
	struct bufferevent *bev, *top;
	struct netaddr a;
	int sv[2];

	(void)state;
	assert_non_null(g.base);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	bev = proxyproto_bufferevent_new(g.base);
	assert_non_null(bev);
	/* evhttp's bufferevent_setfd() reaches the socket under the filter. */
	assert_int_equal(bufferevent_setfd(bev, sv[0]), 0);
	assert_int_equal(bufferevent_getfd(bev), sv[0]);
	assert_int_equal(bufferevent_getfd(bufferevent_get_underlying(bev)), sv[0]);
	bufferevent_setcb(bev, glue_read, NULL, glue_event, &g);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
	assert_false(proxyproto_client(bev, &a));

	/* The header in pieces, then the payload. */
	glue_send(sv[1], hdr, 10);
	glue_run(&g);
	glue_send(sv[1], hdr + 10, sizeof(hdr) - 1 - 10);
	glue_run(&g);
	assert_int_equal(evbuffer_get_length(g.got), 0);
	assert_int_equal(g.events, 0);
	glue_send(sv[1], "hello", 5);
	glue_run(&g);
	assert_int_equal(g.events, 0);
	assert_int_equal(evbuffer_get_length(g.got), 5);
	assert_memory_equal(evbuffer_pullup(g.got, -1), "hello", 5);
	assert_true(proxyproto_client(bev, &a));
	assert_string_equal(text_of(&a), "2001:db8::7");

	/* Found through a filter stacked on it, as TLS is. */
	top = bufferevent_filter_new(bev, NULL, NULL, 0, NULL, NULL);
	assert_non_null(top);
	assert_true(proxyproto_client(top, &a));
	assert_string_equal(text_of(&a), "2001:db8::7");
	/* Later bytes, even ones that look like a header, pass unchanged. */
	bufferevent_setcb(top, glue_read, NULL, glue_event, &g);
	bufferevent_enable(top, EV_READ);
	evbuffer_drain(g.got, evbuffer_get_length(g.got));
	g.done = false;
	glue_send(sv[1], "PROXY junk", 10);
	glue_run(&g);
	assert_int_equal(evbuffer_get_length(g.got), 10);
	bufferevent_free(top);

	/* The output side is untouched. */
	bufferevent_write(bev, "out", 3);
	bufferevent_flush(bev, EV_WRITE, BEV_FLUSH);
	for (int i = 0; i < 10; i++)
		event_base_loop(g.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	{
		char out[8];
		assert_int_equal(read(sv[1], out, sizeof(out)), 3);
		assert_memory_equal(out, "out", 3);
	}
	bufferevent_free(bev);
	close(sv[1]);
	evbuffer_free(g.got);
	event_base_free(g.base);
}

static void filter_expect(const void *hdr, size_t len, bool has_addr, const char *client, bool error)
{
	struct glue g = { .base = event_base_new(), .got = evbuffer_new() };
	struct bufferevent *bev;
	struct netaddr a;
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	bev = proxyproto_bufferevent_new(g.base);
	assert_non_null(bev);
	assert_int_equal(bufferevent_setfd(bev, sv[0]), 0);
	bufferevent_setcb(bev, glue_read, NULL, glue_event, &g);
	bufferevent_enable(bev, EV_READ);
	glue_send(sv[1], hdr, len);
	glue_send(sv[1], "x", 1);
	glue_run(&g);
	if (error) {
		/* An error event, and nothing of the connection reaches the user. */
		assert_true(g.events & BEV_EVENT_ERROR);
		assert_true(g.events & BEV_EVENT_READING);
		assert_int_equal(evbuffer_get_length(g.got), 0);
		assert_false(proxyproto_client(bev, &a));
	} else {
		assert_int_equal(g.events, 0);
		assert_int_equal(evbuffer_get_length(g.got), 1);
		assert_int_equal(proxyproto_client(bev, &a), has_addr);
		if (has_addr)
			assert_string_equal(text_of(&a), client);
	}
	bufferevent_free(bev);
	close(sv[1]);
	evbuffer_free(g.got);
	event_base_free(g.base);
}

static void test_filter_kinds(void **state)
{
	static const unsigned char addrs4[8] = { 192, 0, 2, 1, 10, 0, 0, 1 };
	unsigned char buf[256];
	size_t n;

	(void)state;
	filter_expect("PROXY TCP4 192.0.2.44 10.0.0.1 5 443\r\n", 38, true, "192.0.2.44", false);
	filter_expect("PROXY UNKNOWN\r\n", 15, false, NULL, false);
	n = v2(buf, 2, 1, 0x11, addrs4, 8, 5, -1);
	filter_expect(buf, n, true, "192.0.2.1", false);
	n = v2(buf, 2, 0, 0x00, NULL, 0, 0, -1);
	filter_expect(buf, n, false, NULL, false);
	filter_expect("GET / HTTP/1.1\r\n", 16, false, NULL, true);
	filter_expect("PROXY TCP4 192.0.2.44 10.0.0.1 5 443\n", 37, false, NULL, true);
	n = v2(buf, 3, 1, 0x11, addrs4, 8, 0, -1);
	filter_expect(buf, n, false, NULL, true);
}

/* proxyproto_conn_read over a fake source that gives CHUNK bytes at a
 * time and would block every other call. */
struct source {
	const unsigned char *data;
	size_t len, pos, chunk;
	bool block;
	int calls;
};

static int source_read(void *arg, unsigned char *buf, int len)
{
	struct source *s = arg;
	size_t n = s->len - s->pos;

	s->calls++;
	s->block = !s->block;
	if (s->block)
		return -1;
	if (n == 0)
		return 0;
	if (n > s->chunk)
		n = s->chunk;
	if (n > (size_t)len)
		n = (size_t)len;
	memcpy(buf, s->data + s->pos, n);
	s->pos += n;
	return (int)n;
}

/* Reads everything after the header through a conn, LEN bytes at a time. */
static int conn_read_all(const void *data, size_t dlen, size_t chunk, int len, struct evbuffer *out,
	struct netaddr *client, bool *has)
{
	struct source src = { .data = data, .len = dlen, .chunk = chunk };
	struct bufferevent *key = (struct bufferevent *)&src; /* any unique pointer */
	struct proxyproto_conn *c = proxyproto_conn_new(key);
	unsigned char buf[256];
	int n, rc = 0;

	assert_non_null(c);
	assert_false(proxyproto_client(key, client));
	for (int i = 0; i < 100000; i++) {
		n = proxyproto_conn_read(c, buf, len, source_read, &src);
		if (n == PROXYPROTO_BAD) {
			rc = -1;
			assert_false(proxyproto_conn_passing(c));
			assert_int_equal(proxyproto_conn_read(c, buf, len, source_read, &src), PROXYPROTO_BAD);
			break;
		}
		if (n == 0)
			break;
		if (n > 0)
			evbuffer_add(out, buf, (size_t)n);
	}
	*has = proxyproto_client(key, client);
	proxyproto_conn_free(c);
	/* Gone from the map with it. */
	assert_false(proxyproto_client(key, client));
	return rc;
}

static void test_conn_read(void **state)
{
	static const char v1[] = "PROXY TCP4 192.0.2.9 10.0.0.1 5 443\r\n\x16\x03\x01hello, TLS";
	static const unsigned char addrs6[32] = { 0x20, 0x01, 0x0d, 0xb8, [15] = 0x42 };
	unsigned char buf[256];
	struct netaddr a;
	bool has;

	(void)state;
	for (size_t chunk = 1; chunk <= 64; chunk += (chunk < 8 ? 1 : 13)) {
		for (int len = 1; len <= 9; len += 4) {
			struct evbuffer *out = evbuffer_new();
			size_t n;

			assert_int_equal(conn_read_all(v1, sizeof(v1) - 1, chunk, len, out, &a, &has), 0);
			assert_true(has);
			assert_string_equal(text_of(&a), "192.0.2.9");
			assert_int_equal(evbuffer_get_length(out), 13);
			assert_memory_equal(evbuffer_pullup(out, -1), "\x16\x03\x01hello, TLS", 13);
			evbuffer_free(out);

			out = evbuffer_new();
			n = v2(buf, 2, 1, 0x21, addrs6, 32, 7, -1);
			memcpy(buf + n, "after", 5);
			assert_int_equal(conn_read_all(buf, n + 5, chunk, len, out, &a, &has), 0);
			assert_true(has);
			assert_string_equal(text_of(&a), "2001:db8::42");
			assert_int_equal(evbuffer_get_length(out), 5);
			evbuffer_free(out);

			out = evbuffer_new();
			assert_int_equal(conn_read_all("\x16\x03\x01\x02\x00", 5, chunk, len, out, &a, &has), -1);
			assert_false(has);
			assert_int_equal(conn_read_all("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", 31, chunk, len, out, &a, &has),
				-1);
			assert_int_equal(evbuffer_get_length(out), 0);
			/* The end of the stream inside the header. */
			assert_int_equal(conn_read_all("PROXY TCP4 1.2.3.4", 18, chunk, len, out, &a, &has), 0);
			assert_false(has);
			assert_int_equal(evbuffer_get_length(out), 0);
			evbuffer_free(out);
		}
	}
	/* LOCAL: the connection speaks for itself. */
	{
		struct evbuffer *out = evbuffer_new();
		size_t n = v2(buf, 2, 0, 0x00, NULL, 0, 0, -1);

		memcpy(buf + n, "x", 1);
		assert_int_equal(conn_read_all(buf, n + 1, 100, 100, out, &a, &has), 0);
		assert_false(has);
		assert_int_equal(evbuffer_get_length(out), 1);
		evbuffer_free(out);
	}
}

/* Through evhttp, over loopback: what evhttp does with the filter. */
struct web {
	struct event_base *base;
	struct evhttp *http;
	int port;
};

static struct bufferevent *web_bevcb(struct event_base *base, void *arg)
{
	(void)arg;
	return proxyproto_bufferevent_new(base);
}

#define WEB_BIG (4 << 20)

static void web_cb(struct evhttp_request *req, void *arg)
{
	struct evbuffer *out = evbuffer_new();
	struct netaddr a;

	(void)arg;
	if (strcmp(evhttp_request_get_uri(req), "/big") == 0) {
		char *big = calloc(1, WEB_BIG);

		memset(big, 'b', WEB_BIG);
		evbuffer_add(out, big, WEB_BIG);
		free(big);
	} else if (proxyproto_client(evhttp_connection_get_bufferevent(evhttp_request_get_connection(req)), &a))
		evbuffer_add_printf(out, "client %s", text_of(&a));
	else
		evbuffer_add_printf(out, "no client");
	evhttp_send_reply(req, 200, "OK", out);
	evbuffer_free(out);
}

static void web_start(struct web *w)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t slen = sizeof(sin);
	struct evhttp_bound_socket *bound;
	struct timeval tv = { 0, 300000 };

	w->base = event_base_new();
	w->http = evhttp_new(w->base);
	assert_non_null(w->http);
	evhttp_set_bevcb(w->http, web_bevcb, NULL);
	evhttp_set_gencb(w->http, web_cb, NULL);
	evhttp_set_timeout_tv(w->http, &tv);
	bound = evhttp_bind_socket_with_handle(w->http, "127.0.0.1", 0);
	assert_non_null(bound);
	assert_int_equal(getsockname(evhttp_bound_socket_get_fd(bound), (struct sockaddr *)&sin, &slen), 0);
	w->port = ntohs(sin.sin_port);
}

static void web_stop(struct web *w)
{
	evhttp_free(w->http);
	event_base_free(w->base);
}

static int web_connect(const struct web *w)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
		.sin_port = htons((uint16_t)w->port) };
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	return fd;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Runs the server until the client reads EOF or DEADLINE seconds pass;
 * returns what the client read (-1 on timeout). */
static ssize_t web_exchange(struct web *w, int fd, char *out, size_t outlen, double deadline)
{
	double end = now_s() + deadline;
	size_t got = 0;

	while (now_s() < end) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t r;

		event_base_loop(w->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
		if (poll(&p, 1, 5) <= 0)
			continue;
		r = read(fd, out + got, outlen - 1 - got);
		if (r < 0 && errno == ECONNRESET)
			r = 0;
		assert_true(r >= 0);
		if (r == 0) {
			out[got] = '\0';
			return (ssize_t)got;
		}
		got += (size_t)r;
	}
	out[got] = '\0';
	return -1;
}

static void test_evhttp(void **state)
{
	static const char req[] = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
	static const unsigned char addrs4[8] = { 198, 51, 100, 20, 10, 0, 0, 1 };
	struct web w;
	char out[4096];
	unsigned char buf[256];
	size_t n;
	double t0;
	int fd;

	(void)state;
	web_start(&w);

	/* Keep-alive: two requests, one header. */
	fd = web_connect(&w);
	glue_send(fd, "PROXY TCP6 2001:db8::5 ::1 3000 80\r\n", 36);
	glue_send(fd, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27);
	glue_send(fd, req, sizeof(req) - 1);
	assert_true(web_exchange(&w, fd, out, sizeof(out), 5) > 0);
	{
		const char *second = strstr(out, "client 2001:db8::5");

		assert_non_null(second);
		assert_non_null(strstr(second + 1, "client 2001:db8::5"));
	}
	close(fd);

	/* A big answer on a connection that closes after it arrives whole:
	 * evhttp shuts the socket down from the write callback. (Its read
	 * timeout runs while it writes, whatever the bufferevent: give it time
	 * under valgrind.) */
	{
		static const char bigreq[] = "GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
		struct timeval slow = { 30, 0 }, quick = { 0, 300000 };
		char *all = malloc(WEB_BIG + 4096);
		ssize_t got;

		evhttp_set_timeout_tv(w.http, &slow);
		fd = web_connect(&w);
		glue_send(fd, "PROXY UNKNOWN\r\n", 15);
		glue_send(fd, bigreq, sizeof(bigreq) - 1);
		got = web_exchange(&w, fd, all, WEB_BIG + 4096, 60);
		assert_true(got > WEB_BIG);
		assert_non_null(strstr(all, "Content-Length: 4194304"));
		assert_int_equal(strlen(strstr(all, "\r\n\r\n") + 4), WEB_BIG);
		close(fd);
		free(all);
		evhttp_set_timeout_tv(w.http, &quick);
	}

	fd = web_connect(&w);
	glue_send(fd, "PROXY TCP4 203.0.113.50 10.0.0.1 3000 80\r\n", 42);
	glue_send(fd, req, sizeof(req) - 1);
	assert_true(web_exchange(&w, fd, out, sizeof(out), 5) > 0);
	assert_non_null(strstr(out, "HTTP/1.1 200 OK"));
	assert_non_null(strstr(out, "client 203.0.113.50"));
	close(fd);

	fd = web_connect(&w);
	n = v2(buf, 2, 1, 0x11, addrs4, 8, 0, -1);
	memcpy(buf + n, req, sizeof(req) - 1);
	glue_send(fd, buf, n + sizeof(req) - 1);
	assert_true(web_exchange(&w, fd, out, sizeof(out), 5) > 0);
	assert_non_null(strstr(out, "client 198.51.100.20"));
	close(fd);

	fd = web_connect(&w);
	glue_send(fd, "PROXY UNKNOWN\r\n", 15);
	glue_send(fd, req, sizeof(req) - 1);
	assert_true(web_exchange(&w, fd, out, sizeof(out), 5) > 0);
	assert_non_null(strstr(out, "no client"));
	close(fd);

	/* No header: closed without a word (no 400). */
	fd = web_connect(&w);
	glue_send(fd, req, sizeof(req) - 1);
	assert_int_equal(web_exchange(&w, fd, out, sizeof(out), 5), 0);
	close(fd);

	/* A header cut short is closed by evhttp's timeout, without an answer. */
	fd = web_connect(&w);
	t0 = now_s();
	glue_send(fd, "PROXY TCP4 203.0.113.50 ", 24);
	assert_int_equal(web_exchange(&w, fd, out, sizeof(out), 5), 0);
	assert_true(now_s() - t0 >= 0.25);
	close(fd);

	/* So is a connection that sends nothing. */
	fd = web_connect(&w);
	assert_int_equal(web_exchange(&w, fd, out, sizeof(out), 5), 0);
	close(fd);

	web_stop(&w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_v1_tcp4),
		cmocka_unit_test(test_v1_tcp6),
		cmocka_unit_test(test_v1_unknown),
		cmocka_unit_test(test_v1_too_long),
		cmocka_unit_test(test_v1_bad),
		cmocka_unit_test(test_not_proxy),
		cmocka_unit_test(test_garbage),
		cmocka_unit_test(test_v2_tcp4),
		cmocka_unit_test(test_v2_tcp6),
		cmocka_unit_test(test_v2_no_address),
		cmocka_unit_test(test_v2_bad),
		cmocka_unit_test(test_filter),
		cmocka_unit_test(test_filter_kinds),
		cmocka_unit_test(test_conn_read),
		cmocka_unit_test(test_evhttp),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

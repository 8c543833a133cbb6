#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

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

/* What a conn gave: the bytes after the header, and how it ended. */
struct drained {
	unsigned char data[8192];
	size_t len;
	int end; /* the source's 0 at its end, or PROXYPROTO_BAD */
	bool has;
	struct netaddr client;
};

/* Reads everything through a conn, LEN bytes at a time. */
static void conn_read_all(const void *data, size_t dlen, size_t chunk, int len, struct drained *d)
{
	struct source src = { .data = data, .len = dlen, .chunk = chunk };
	struct proxyproto_conn *c = proxyproto_conn_new();
	unsigned char buf[256];
	struct netaddr a;
	int n = 0, i;

	assert_non_null(c);
	assert_true(len > 0 && (size_t)len <= sizeof(buf));
	memset(d, 0, sizeof(*d));
	assert_false(proxyproto_conn_passing(c));
	assert_false(proxyproto_conn_client(c, &a));
	assert_int_equal(proxyproto_conn_pending(c), 0);
	for (i = 0; i < 100000; i++) {
		n = proxyproto_conn_read(c, buf, len, source_read, &src);
		if (n == PROXYPROTO_BAD || n == 0)
			break;
		if (n < 0) {
			/* The source's own would-block, passed on. */
			assert_int_equal(n, -1);
			continue;
		}
		assert_true(n <= len);
		assert_true(proxyproto_conn_passing(c));
		assert_true(d->len + (size_t)n <= sizeof(d->data));
		memcpy(d->data + d->len, buf, (size_t)n);
		d->len += (size_t)n;
	}
	assert_true(i < 100000);
	d->end = n;
	if (n == PROXYPROTO_BAD) {
		assert_false(proxyproto_conn_passing(c));
		assert_int_equal(proxyproto_conn_pending(c), 0);
		/* Every later call too, even with the connection's bytes still to come. */
		for (int k = 0; k < 3; k++)
			assert_int_equal(proxyproto_conn_read(c, buf, len, source_read, &src), PROXYPROTO_BAD);
	} else {
		/* Everything was handed on: nothing held back. */
		assert_int_equal(proxyproto_conn_pending(c), 0);
		assert_int_equal(src.pos, dlen);
	}
	d->has = proxyproto_conn_client(c, &d->client);
	proxyproto_conn_free(c);
}

static const size_t conn_chunks[] = { 1, 2, 3, 7, 13, 28, 64, 511, 512, 513, 5000 };
static const int conn_lens[] = { 1, 5, 9, 256 };

/* DATA is a good header of HLEN bytes and what follows it: every way of
 * reading it gives CLIENT (NULL for none) and the rest, unchanged. */
static void expect_conn(const void *data, size_t dlen, size_t hlen, int family, const char *client)
{
	for (size_t i = 0; i < sizeof(conn_chunks) / sizeof(conn_chunks[0]); i++) {
		for (size_t j = 0; j < sizeof(conn_lens) / sizeof(conn_lens[0]); j++) {
			struct drained d;

			conn_read_all(data, dlen, conn_chunks[i], conn_lens[j], &d);
			if (d.end != 0)
				fail_msg("chunk %zu len %d: ended with %d", conn_chunks[i], conn_lens[j], d.end);
			assert_int_equal(d.len, dlen - hlen);
			assert_memory_equal(d.data, (const unsigned char *)data + hlen, dlen - hlen);
			if (client == NULL) {
				assert_false(d.has);
			} else {
				assert_true(d.has);
				assert_int_equal(d.client.family, family);
				assert_string_equal(text_of(&d.client), client);
			}
		}
	}
}

/* DATA does not start with a good header: nothing of it is handed on. */
static void expect_conn_bad(const void *data, size_t dlen)
{
	for (size_t i = 0; i < sizeof(conn_chunks) / sizeof(conn_chunks[0]); i++) {
		for (size_t j = 0; j < sizeof(conn_lens) / sizeof(conn_lens[0]); j++) {
			struct drained d;

			conn_read_all(data, dlen, conn_chunks[i], conn_lens[j], &d);
			if (d.end != PROXYPROTO_BAD)
				fail_msg("chunk %zu len %d: ended with %d", conn_chunks[i], conn_lens[j], d.end);
			assert_int_equal(d.len, 0);
			assert_false(d.has);
		}
	}
}

/* Header HDR (HLEN bytes) followed by the payload TAIL, into OUT. */
static size_t with_tail(unsigned char *out, const void *hdr, size_t hlen, const char *tail, size_t tlen)
{
	memmove(out, hdr, hlen);
	memcpy(out + hlen, tail, tlen);
	return hlen + tlen;
}

/* A string literal and its length. */
#define STR(s) s, sizeof(s) - 1

static const char tls_tail[] = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 and more";
#define TLS_TAIL_LEN (sizeof(tls_tail) - 1)

static void test_conn_v1(void **state)
{
	static const char tcp4[] = "PROXY TCP4 192.0.2.9 10.0.0.1 5 443\r\n";
	static const char tcp6[] = "PROXY TCP6 2001:db8::7 ::1 1000 443\r\n";
	static const char mapped[] = "PROXY TCP6 ::ffff:198.51.100.9 ::1 1000 443\r\n";
	static const char unknown[] = "PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\n";
	static const char http[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	unsigned char buf[512];
	size_t n;

	(void)state;
	n = with_tail(buf, tcp4, sizeof(tcp4) - 1, tls_tail, TLS_TAIL_LEN);
	expect_conn(buf, n, sizeof(tcp4) - 1, AF_INET, "192.0.2.9");
	n = with_tail(buf, tcp6, sizeof(tcp6) - 1, http, sizeof(http) - 1);
	expect_conn(buf, n, sizeof(tcp6) - 1, AF_INET6, "2001:db8::7");
	n = with_tail(buf, mapped, sizeof(mapped) - 1, http, sizeof(http) - 1);
	expect_conn(buf, n, sizeof(mapped) - 1, AF_INET, "198.51.100.9");
	/* UNKNOWN: the connection speaks for itself. */
	n = with_tail(buf, unknown, sizeof(unknown) - 1, http, sizeof(http) - 1);
	expect_conn(buf, n, sizeof(unknown) - 1, 0, NULL);
	expect_conn(STR("PROXY UNKNOWN\r\nx"), 15, 0, NULL);
	/* Only the first header is taken: a second one is the connection's. */
	n = with_tail(buf, tcp4, sizeof(tcp4) - 1, tcp6, sizeof(tcp6) - 1);
	expect_conn(buf, n, sizeof(tcp4) - 1, AF_INET, "192.0.2.9");
	/* Nothing after the header. */
	expect_conn(tcp4, sizeof(tcp4) - 1, sizeof(tcp4) - 1, AF_INET, "192.0.2.9");
}

static void test_conn_v2(void **state)
{
	static const unsigned char addrs4[8] = { 203, 0, 113, 5, 10, 0, 0, 1 };
	static const unsigned char addrs6[32] = { 0x20, 0x01, 0x0d, 0xb8, [15] = 0x42 };
	static const unsigned char mapped[32] = { [10] = 0xff, [11] = 0xff, [12] = 198, [13] = 51, [14] = 100,
		[15] = 7 };
	static const char http[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	unsigned char hdr[8192], buf[8192];
	size_t h, n;

	(void)state;
	h = v2(hdr, 2, 1, 0x11, addrs4, 8, 0, -1);
	n = with_tail(buf, hdr, h, tls_tail, TLS_TAIL_LEN);
	expect_conn(buf, n, h, AF_INET, "203.0.113.5");
	h = v2(hdr, 2, 1, 0x21, addrs6, 32, 7, -1);
	n = with_tail(buf, hdr, h, http, sizeof(http) - 1);
	expect_conn(buf, n, h, AF_INET6, "2001:db8::42");
	h = v2(hdr, 2, 1, 0x21, mapped, 32, 0, -1);
	n = with_tail(buf, hdr, h, http, sizeof(http) - 1);
	expect_conn(buf, n, h, AF_INET, "198.51.100.7");
	/* The largest header, longer than one read of the connection. */
	h = v2(hdr, 2, 1, 0x11, addrs4, 8, PROXYPROTO_V2_MAX - 28, -1);
	assert_int_equal(h, PROXYPROTO_V2_MAX);
	n = with_tail(buf, hdr, h, tls_tail, TLS_TAIL_LEN);
	expect_conn(buf, n, h, AF_INET, "203.0.113.5");
	/* LOCAL, and PROXY over UNSPEC: no client. */
	h = v2(hdr, 2, 0, 0x00, NULL, 0, 0, -1);
	n = with_tail(buf, hdr, h, http, sizeof(http) - 1);
	expect_conn(buf, n, h, 0, NULL);
	h = v2(hdr, 2, 0, 0x11, addrs4, 8, 0, -1);
	n = with_tail(buf, hdr, h, "x", 1);
	expect_conn(buf, n, h, 0, NULL);
	h = v2(hdr, 2, 1, 0x00, NULL, 0, 12, -1);
	n = with_tail(buf, hdr, h, http, sizeof(http) - 1);
	expect_conn(buf, n, h, 0, NULL);
	/* What follows may look like a header: it is passed on unchanged. */
	h = v2(hdr, 2, 1, 0x11, addrs4, 8, 0, -1);
	n = with_tail(buf, hdr, h, STR("PROXY TCP4 1.1.1.1 2.2.2.2 1 2\r\n"));
	expect_conn(buf, n, h, AF_INET, "203.0.113.5");
	n = with_tail(buf, hdr, h, (const char *)hdr, h);
	expect_conn(buf, n, h, AF_INET, "203.0.113.5");
}

static void test_conn_bad(void **state)
{
	static const unsigned char addrs4[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
	static const char http[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	unsigned char buf[8192];
	size_t n;

	(void)state;
	/* No header at all: a client talking straight to the listener. */
	expect_conn_bad(http, sizeof(http) - 1);
	expect_conn_bad(tls_tail, TLS_TAIL_LEN);
	expect_conn_bad(STR("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\nGET / HTTP/1.1\r\n\r\n"));
	expect_conn_bad(STR("PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\nGET / HTTP/1.1\r\n\r\n"));
	n = v2(buf, 3, 1, 0x11, addrs4, 8, 0, -1);
	n = with_tail(buf, buf, n, http, sizeof(http) - 1);
	expect_conn_bad(buf, n);
	/* Over the cap, with every byte of it sent. */
	n = v2(buf, 2, 1, 0x11, addrs4, 8, PROXYPROTO_V2_MAX - 27, -1);
	n = with_tail(buf, buf, n, http, sizeof(http) - 1);
	expect_conn_bad(buf, n);
	/* No CRLF within the longest v1 line. */
	memset(buf, 'x', 300);
	memcpy(buf, "PROXY UNKNOWN ", 14);
	expect_conn_bad(buf, 300);
}

static void test_conn_cut_short(void **state)
{
	static const unsigned char addrs6[32] = { 0x20, 0x01, 0x0d, 0xb8, [15] = 0x42 };
	unsigned char buf[256];
	size_t n = v2(buf, 2, 1, 0x21, addrs6, 32, 0, -1);

	(void)state;
	/* The end of the stream inside the header: the source's 0, no client. */
	for (size_t cut = 0; cut < n; cut += 5) {
		struct drained d;

		conn_read_all(buf, cut, 3, 9, &d);
		assert_int_equal(d.end, 0);
		assert_int_equal(d.len, 0);
		assert_false(d.has);
	}
	for (size_t i = 0; i < sizeof(conn_chunks) / sizeof(conn_chunks[0]); i++) {
		struct drained d;

		conn_read_all(STR("PROXY TCP4 1.2.3.4"), conn_chunks[i], 5, &d);
		assert_int_equal(d.end, 0);
		assert_int_equal(d.len, 0);
		assert_false(d.has);
	}
}

static void test_conn_pending(void **state)
{
	static const char data[] = "PROXY TCP6 2001:db8::9 ::1 1 2\r\nabcdefgh";
	/* Starts "blocked", so the first call gets everything. */
	struct source src = { .data = (const unsigned char *)data, .len = sizeof(data) - 1, .chunk = 1000,
		.block = true };
	struct proxyproto_conn *c = proxyproto_conn_new();
	unsigned char buf[16];
	struct netaddr a;

	(void)state;
	assert_non_null(c);
	assert_int_equal(proxyproto_conn_read(c, buf, 3, source_read, &src), 3);
	assert_memory_equal(buf, "abc", 3);
	assert_true(proxyproto_conn_passing(c));
	assert_true(proxyproto_conn_client(c, &a));
	assert_string_equal(text_of(&a), "2001:db8::9");
	/* The rest came with the header and is held, in order. */
	assert_int_equal(src.pos, src.len);
	assert_int_equal(proxyproto_conn_pending(c), 5);
	assert_int_equal(proxyproto_conn_read(c, buf, 3, source_read, &src), 3);
	assert_memory_equal(buf, "def", 3);
	assert_int_equal(proxyproto_conn_pending(c), 2);
	assert_int_equal(proxyproto_conn_read(c, buf, (int)sizeof(buf), source_read, &src), 2);
	assert_memory_equal(buf, "gh", 2);
	assert_int_equal(proxyproto_conn_pending(c), 0);
	/* Then the connection itself: would block, then its end. */
	assert_int_equal(proxyproto_conn_read(c, buf, (int)sizeof(buf), source_read, &src), -1);
	assert_int_equal(proxyproto_conn_read(c, buf, (int)sizeof(buf), source_read, &src), 0);
	assert_true(proxyproto_conn_client(c, &a));
	assert_string_equal(text_of(&a), "2001:db8::9");
	proxyproto_conn_free(c);
	proxyproto_conn_free(NULL);
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
		cmocka_unit_test(test_conn_v1),
		cmocka_unit_test(test_conn_v2),
		cmocka_unit_test(test_conn_bad),
		cmocka_unit_test(test_conn_cut_short),
		cmocka_unit_test(test_conn_pending),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

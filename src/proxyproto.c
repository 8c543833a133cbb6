#include "proxyproto.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/event.h>

static const unsigned char proxyproto_v2_sig[12] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a
};

/* Sets *SRC from a 16-byte IPv6 address, an IPv4-mapped one becoming IPv4
 * (as netaddr_parse does). */
static void proxyproto_set6(struct netaddr *src, const unsigned char b[16])
{
	static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	memset(src, 0, sizeof(*src));
	if (memcmp(b, mapped, sizeof(mapped)) == 0) {
		src->family = AF_INET;
		memcpy(src->bytes, b + 12, 4);
	} else {
		src->family = AF_INET6;
		memcpy(src->bytes, b, 16);
	}
}

enum proxyproto_field { PP_ADDR4, PP_ADDR6, PP_PORT };

/* Whether C may appear in a v1 field of KIND. */
static bool proxyproto_v1_char(enum proxyproto_field kind, unsigned char c)
{
	if (c >= '0' && c <= '9')
		return true;
	if (kind == PP_ADDR4)
		return c == '.';
	if (kind == PP_ADDR6)
		return c == ':' || c == '.' || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
	return false;
}

/* Reads one v1 field of KIND at *POS of BUF (N bytes) ending with END.
 * 1 with *START and *FLEN set and *POS past END, 0 when BUF ends inside a field
 * that may still be valid, -1 otherwise. */
static int proxyproto_v1_field(const unsigned char *buf, size_t n, size_t *pos, enum proxyproto_field kind,
	unsigned char end, size_t *start, size_t *flen)
{
	size_t max = kind == PP_ADDR4 ? 15 : kind == PP_ADDR6 ? 45 : 5;
	size_t i = *pos;

	while (i < n && buf[i] != end) {
		if (!proxyproto_v1_char(kind, buf[i]) || i - *pos >= max)
			return -1;
		i++;
	}
	if (i == n)
		return 0;
	if (i == *pos)
		return -1;
	*start = *pos;
	*flen = i - *pos;
	*pos = i + 1;
	return 1;
}

static int proxyproto_v1_addr(const unsigned char *f, size_t len, bool v6, unsigned char out[16])
{
	char text[NETADDR_TEXT_MAX];

	memcpy(text, f, len); /* len <= 45 from proxyproto_v1_field */
	text[len] = '\0';
	return inet_pton(v6 ? AF_INET6 : AF_INET, text, out) == 1 ? 0 : -1;
}

static int proxyproto_v1_port(const unsigned char *f, size_t len)
{
	unsigned long v = 0;

	for (size_t i = 0; i < len; i++)
		v = v * 10 + (unsigned long)(f[i] - '0');
	return v <= 65535 ? 0 : -1;
}

/* "PROXY UNKNOWN" followed by anything up to CRLF, or "PROXY TCP4|TCP6 src
 * dst sport dport\r\n", in at most PROXYPROTO_V1_MAX bytes. */
static int proxyproto_v1(const unsigned char *buf, size_t len, struct netaddr *src, bool *has_addr)
{
	static const char prefix[] = "PROXY ";
	static const char *const protos[] = { "TCP4 ", "TCP6 ", "UNKNOWN" };
	size_t n = len < PROXYPROTO_V1_MAX ? len : PROXYPROTO_V1_MAX;
	/* Once N is the limit, a field cut short can no longer be completed. */
	int more = len < PROXYPROTO_V1_MAX ? 0 : -1;
	size_t pos = sizeof(prefix) - 1, start[4], flen[4];
	unsigned char a[2][16];
	int proto = -1, rc;
	bool v6;

	if (memcmp(buf, prefix, n < pos ? n : pos) != 0)
		return -1;
	if (n < pos)
		return more;
	for (int p = 0; p < 3 && proto < 0; p++) {
		size_t plen = strlen(protos[p]), have = n - pos < plen ? n - pos : plen;

		if (memcmp(buf + pos, protos[p], have) == 0) {
			if (have < plen)
				return more;
			proto = p;
		}
	}
	if (proto < 0)
		return -1;
	pos += strlen(protos[proto]);
	if (proto == 2) {
		/* The rest of an UNKNOWN line is ignored, but it must be a line. */
		if (pos < n && buf[pos] != ' ' && buf[pos] != '\r')
			return -1;
		while (pos < n && buf[pos] != '\r') {
			if (buf[pos] == '\n')
				return -1;
			pos++;
		}
		if (pos + 1 >= n)
			return more;
		if (buf[pos + 1] != '\n')
			return -1;
		*has_addr = false;
		return (int)(pos + 2);
	}
	v6 = proto == 1;
	for (int f = 0; f < 4; f++) {
		enum proxyproto_field kind = f < 2 ? (v6 ? PP_ADDR6 : PP_ADDR4) : PP_PORT;

		rc = proxyproto_v1_field(buf, n, &pos, kind, f < 3 ? ' ' : '\r', &start[f], &flen[f]);
		if (rc <= 0)
			return rc == 0 ? more : -1;
		if (f < 2 ? proxyproto_v1_addr(buf + start[f], flen[f], v6, a[f]) < 0 :
			    proxyproto_v1_port(buf + start[f], flen[f]) < 0)
			return -1;
	}
	if (pos >= n)
		return more;
	if (buf[pos] != '\n')
		return -1;
	if (v6) {
		proxyproto_set6(src, a[0]);
	} else {
		memset(src, 0, sizeof(*src));
		src->family = AF_INET;
		memcpy(src->bytes, a[0], 4);
	}
	*has_addr = true;
	return (int)(pos + 1);
}

/* The 16-byte v2 preamble (signature, version/command, family/transport,
 * length), then addresses and TLVs. */
static int proxyproto_v2(const unsigned char *buf, size_t len, struct netaddr *src, bool *has_addr)
{
	size_t total, need = 0;
	int cmd, fam;

	if (memcmp(buf, proxyproto_v2_sig, len < 12 ? len : 12) != 0)
		return -1;
	if (len < 13)
		return 0;
	if ((buf[12] >> 4) != 2)
		return -1;
	cmd = buf[12] & 0x0f;
	if (cmd > 1)
		return -1;
	if (len < 14)
		return 0;
	fam = buf[13];
	/* LOCAL ignores the family; PROXY takes TCP over IPv4 or IPv6, or
	 * UNSPEC (no address). */
	if (cmd == 1) {
		if (fam == 0x11)
			need = 12;
		else if (fam == 0x21)
			need = 36;
		else if (fam != 0x00)
			return -1;
	}
	if (len < 16)
		return 0;
	total = 16 + ((size_t)buf[14] << 8 | buf[15]);
	if (total - 16 < need || total > PROXYPROTO_V2_MAX)
		return -1;
	if (len < total)
		return 0;
	*has_addr = need > 0;
	if (need == 12) {
		memset(src, 0, sizeof(*src));
		src->family = AF_INET;
		memcpy(src->bytes, buf + 16, 4);
	} else if (need == 36) {
		proxyproto_set6(src, buf + 16);
	}
	return (int)total;
}

int proxyproto_parse(const unsigned char *buf, size_t len, struct netaddr *src, bool *has_addr)
{
	if (len == 0)
		return 0;
	if (buf[0] == 'P')
		return proxyproto_v1(buf, len, src, has_addr);
	if (buf[0] == proxyproto_v2_sig[0])
		return proxyproto_v2(buf, len, src, has_addr);
	return -1;
}

enum proxyproto_state { PP_WAITING, PP_PASSING, PP_FAILED };

struct proxyproto_conn {
	enum proxyproto_state state;
	bool has_addr;
	struct netaddr src;
	struct evbuffer *hold; /* bytes read past the header, not yet given */
};

struct proxyproto_conn *proxyproto_conn_new(void)
{
	return calloc(1, sizeof(struct proxyproto_conn));
}

void proxyproto_conn_free(struct proxyproto_conn *c)
{
	if (c == NULL)
		return;
	if (c->hold)
		evbuffer_free(c->hold);
	free(c);
}

bool proxyproto_conn_client(const struct proxyproto_conn *c, struct netaddr *out)
{
	if (c->state != PP_PASSING || !c->has_addr)
		return false;
	*out = c->src;
	return true;
}

/* Looks for a complete header at the start of IN: 1 when found (it is then
 * drained from IN and recorded), 0 when more is needed, -1 when malformed
 * (IN is then emptied). The state is no longer PP_WAITING unless 0. */
static int proxyproto_take(struct proxyproto_conn *c, struct evbuffer *in)
{
	size_t len = evbuffer_get_length(in);
	const unsigned char *p;
	struct netaddr addr;
	bool has_addr = false;
	int n;

	if (len > PROXYPROTO_V2_MAX)
		len = PROXYPROTO_V2_MAX;
	p = evbuffer_pullup(in, (ev_ssize_t)len);
	n = p ? proxyproto_parse(p, len, &addr, &has_addr) : -1;
	if (n == 0)
		return 0;
	if (n < 0) {
		c->state = PP_FAILED;
		evbuffer_drain(in, evbuffer_get_length(in));
		return -1;
	}
	evbuffer_drain(in, (size_t)n);
	c->has_addr = has_addr;
	if (has_addr)
		c->src = addr;
	c->state = PP_PASSING;
	return 1;
}

int proxyproto_conn_read(struct proxyproto_conn *c, unsigned char *buf, int len,
	int (*read)(void *arg, unsigned char *buf, int len), void *arg)
{
	unsigned char chunk[512];
	int n, rc;

	while (c->state == PP_WAITING) {
		n = read(arg, chunk, sizeof(chunk));
		if (n <= 0)
			return n;
		if (c->hold == NULL && (c->hold = evbuffer_new()) == NULL)
			return PROXYPROTO_BAD;
		if (evbuffer_add(c->hold, chunk, (size_t)n) < 0)
			return PROXYPROTO_BAD;
		rc = proxyproto_take(c, c->hold);
		if (rc < 0)
			return PROXYPROTO_BAD;
	}
	if (c->state == PP_FAILED)
		return PROXYPROTO_BAD;
	if (c->hold) {
		n = evbuffer_remove(c->hold, buf, (size_t)len);
		if (evbuffer_get_length(c->hold) == 0) {
			evbuffer_free(c->hold);
			c->hold = NULL;
		}
		if (n > 0)
			return n;
	}
	return read(arg, buf, len);
}

size_t proxyproto_conn_pending(const struct proxyproto_conn *c)
{
	return c->state == PP_PASSING && c->hold ? evbuffer_get_length(c->hold) : 0;
}

bool proxyproto_conn_passing(const struct proxyproto_conn *c)
{
	return c->state == PP_PASSING;
}

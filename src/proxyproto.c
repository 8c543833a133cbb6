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
	struct bufferevent *bev; /* the one evhttp has: the map's key */
	struct proxyproto_conn *next; /* in its map bucket */
	enum proxyproto_state state;
	bool has_addr;
	struct netaddr src;
	/* Plain listeners: the socket under the filter BEV, and the output
	 * hooks that keep evhttp's write callback honest. */
	struct bufferevent *sock;
	struct evbuffer_cb_entry *added_cb, *drained_cb;
	/* proxyproto_conn_read: bytes read past the header, not yet given. */
	struct evbuffer *hold;
};

/* Bufferevent -> proxyproto_conn, for proxyproto_client: libevent has no
 * public way to reach a filter's context (or to hang data on an OpenSSL
 * bufferevent). Sharded so that threads rarely meet on a lock. */
#define PP_SHARDS 64
#define PP_MIN_BUCKETS 16

struct proxyproto_shard {
	pthread_mutex_t lock;
	struct proxyproto_conn **buckets;
	size_t nbuckets; /* a power of two, or 0 when the shard is empty */
	size_t n;
};

static struct proxyproto_shard proxyproto_map[PP_SHARDS];
static pthread_once_t proxyproto_map_once = PTHREAD_ONCE_INIT;
static atomic_size_t proxyproto_live;

static void proxyproto_map_init(void)
{
	for (size_t i = 0; i < PP_SHARDS; i++)
		pthread_mutex_init(&proxyproto_map[i].lock, NULL);
}

static uint64_t proxyproto_hash(const void *p)
{
	uint64_t h = (uint64_t)(uintptr_t)p;

	h ^= h >> 33;
	h *= UINT64_C(0xff51afd7ed558ccd);
	h ^= h >> 33;
	return h;
}

static size_t proxyproto_bucket(uint64_t h, size_t nbuckets)
{
	return (size_t)(h / PP_SHARDS) & (nbuckets - 1);
}

static int proxyproto_map_add(struct proxyproto_conn *c)
{
	uint64_t h = proxyproto_hash(c->bev);
	struct proxyproto_shard *s = &proxyproto_map[h % PP_SHARDS];
	size_t i;
	int rc = 0;

	pthread_once(&proxyproto_map_once, proxyproto_map_init);
	pthread_mutex_lock(&s->lock);
	if (s->n >= s->nbuckets) {
		size_t nb = s->nbuckets ? s->nbuckets * 2 : PP_MIN_BUCKETS;
		struct proxyproto_conn **b = calloc(nb, sizeof(*b));

		if (b == NULL) {
			rc = -1;
			goto out;
		}
		for (i = 0; i < s->nbuckets; i++) {
			while (s->buckets[i]) {
				struct proxyproto_conn *e = s->buckets[i];
				size_t j = proxyproto_bucket(proxyproto_hash(e->bev), nb);

				s->buckets[i] = e->next;
				e->next = b[j];
				b[j] = e;
			}
		}
		free(s->buckets);
		s->buckets = b;
		s->nbuckets = nb;
	}
	i = proxyproto_bucket(h, s->nbuckets);
	c->next = s->buckets[i];
	s->buckets[i] = c;
	s->n++;
	atomic_fetch_add(&proxyproto_live, 1);
out:
	pthread_mutex_unlock(&s->lock);
	return rc;
}

static void proxyproto_map_del(struct proxyproto_conn *c)
{
	uint64_t h = proxyproto_hash(c->bev);
	struct proxyproto_shard *s = &proxyproto_map[h % PP_SHARDS];

	pthread_once(&proxyproto_map_once, proxyproto_map_init);
	pthread_mutex_lock(&s->lock);
	for (struct proxyproto_conn **p = s->nbuckets ? &s->buckets[proxyproto_bucket(h, s->nbuckets)] : NULL;
	     p && *p; p = &(*p)->next) {
		if (*p == c) {
			*p = c->next;
			s->n--;
			atomic_fetch_sub(&proxyproto_live, 1);
			break;
		}
	}
	if (s->n == 0 && s->nbuckets) {
		free(s->buckets);
		s->buckets = NULL;
		s->nbuckets = 0;
	}
	pthread_mutex_unlock(&s->lock);
}

/* Copies what BEV's header said, when BEV is in the map. */
static bool proxyproto_map_get(const struct bufferevent *bev, bool *has_addr, struct netaddr *src)
{
	uint64_t h = proxyproto_hash(bev);
	struct proxyproto_shard *s = &proxyproto_map[h % PP_SHARDS];
	bool found = false;

	pthread_mutex_lock(&s->lock);
	for (struct proxyproto_conn *c = s->nbuckets ? s->buckets[proxyproto_bucket(h, s->nbuckets)] : NULL; c;
	     c = c->next) {
		if (c->bev == bev) {
			found = true;
			*has_addr = c->state == PP_PASSING && c->has_addr;
			*src = c->src;
			break;
		}
	}
	pthread_mutex_unlock(&s->lock);
	return found;
}

struct proxyproto_conn *proxyproto_conn_new(struct bufferevent *bev)
{
	struct proxyproto_conn *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	c->bev = bev;
	if (proxyproto_map_add(c) < 0) {
		free(c);
		return NULL;
	}
	return c;
}

void proxyproto_conn_free(struct proxyproto_conn *c)
{
	if (c == NULL)
		return;
	proxyproto_map_del(c);
	if (c->hold)
		evbuffer_free(c->hold);
	free(c);
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
	/* No lock: the only reader, proxyproto_client, runs for a request on
	 * this connection, so on this connection's event loop thread. */
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

static enum bufferevent_filter_result proxyproto_pass(struct evbuffer *src, struct evbuffer *dst, ev_ssize_t limit)
{
	int rc = limit < 0 ? evbuffer_add_buffer(dst, src) : evbuffer_remove_buffer(src, dst, (size_t)limit) < 0 ? -1 : 0;

	return rc < 0 ? BEV_ERROR : BEV_OK;
}

/* The input filter: holds bytes back until the header is complete, then
 * drops it and passes everything after it through. A malformed header is
 * turned into an error event, which makes evhttp drop the connection
 * without an answer (libevent 2.1 ignores a filter's BEV_ERROR). */
static enum bufferevent_filter_result proxyproto_filter_in(struct evbuffer *src, struct evbuffer *dst,
	ev_ssize_t limit, enum bufferevent_flush_mode mode, void *arg)
{
	struct proxyproto_conn *c = arg;

	(void)mode;
	switch (c->state) {
	case PP_PASSING:
		return proxyproto_pass(src, dst, limit);
	case PP_FAILED:
		evbuffer_drain(src, evbuffer_get_length(src));
		return BEV_ERROR;
	case PP_WAITING:
		break;
	}
	switch (proxyproto_take(c, src)) {
	case 0:
		return BEV_NEED_MORE;
	case 1:
		return proxyproto_pass(src, dst, limit);
	default:
		bufferevent_trigger_event(c->bev, BEV_EVENT_READING | BEV_EVENT_ERROR, 0);
		return BEV_ERROR;
	}
}

/* Output goes straight to the socket, and the filter's write callback runs
 * only once the socket has handed it all to the kernel (proxyproto_drained):
 * evhttp frees the connection and shuts the socket down from that callback,
 * so running it earlier, as libevent 2.1's filters do, loses the answer.
 * NEED_MORE keeps libevent from running it. */
static enum bufferevent_filter_result proxyproto_filter_out(struct evbuffer *src, struct evbuffer *dst,
	ev_ssize_t limit, enum bufferevent_flush_mode mode, void *arg)
{
	(void)limit;
	(void)mode;
	(void)arg;
	return evbuffer_add_buffer(dst, src) < 0 ? BEV_ERROR : BEV_NEED_MORE;
}

/* evhttp adds its answer before it enables writing, which a libevent 2.1
 * filter never notices: move output down as soon as it is added. */
static void proxyproto_added(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	struct proxyproto_conn *c = arg;

	if (info->n_added && evbuffer_get_length(buf))
		evbuffer_add_buffer(bufferevent_get_output(c->sock), buf);
}

/* The socket wrote: progress restarts evhttp's write timeout, and an empty
 * socket buffer completes the write. */
static void proxyproto_drained(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	struct proxyproto_conn *c = arg;

	if (info->n_deleted == 0 || !(bufferevent_get_enabled(c->bev) & EV_WRITE))
		return;
	bufferevent_enable(c->bev, EV_WRITE);
	if (evbuffer_get_length(buf) == 0 && evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
		bufferevent_trigger(c->bev, EV_WRITE, 0);
}

static void proxyproto_filter_free(void *arg)
{
	struct proxyproto_conn *c = arg;

	/* The socket outlives this call (the filter holds a reference). */
	if (c->drained_cb)
		evbuffer_remove_cb_entry(bufferevent_get_output(c->sock), c->drained_cb);
	proxyproto_conn_free(c);
}

struct bufferevent *proxyproto_bufferevent_new(struct event_base *base)
{
	const int opts = BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS;
	struct proxyproto_conn *c = calloc(1, sizeof(*c));
	struct bufferevent *sock = NULL, *bev;

	if (c == NULL)
		return NULL;
	sock = bufferevent_socket_new(base, -1, opts);
	if (sock == NULL)
		goto fail;
	bev = bufferevent_filter_new(sock, proxyproto_filter_in, proxyproto_filter_out, opts,
		proxyproto_filter_free, c);
	if (bev == NULL)
		goto fail;
	/* From here on BEV owns SOCK and C. */
	c->bev = bev;
	c->sock = sock;
	c->added_cb = evbuffer_add_cb(bufferevent_get_output(bev), proxyproto_added, c);
	c->drained_cb = evbuffer_add_cb(bufferevent_get_output(sock), proxyproto_drained, c);
	if (c->added_cb == NULL || c->drained_cb == NULL || proxyproto_map_add(c) < 0) {
		bufferevent_free(bev);
		return NULL;
	}
	return bev;
fail:
	bufferevent_free(sock);
	free(c);
	return NULL;
}

bool proxyproto_client(struct bufferevent *bev, struct netaddr *out)
{
	bool has_addr = false;

	if (atomic_load_explicit(&proxyproto_live, memory_order_relaxed) == 0)
		return false;
	/* evhttp's bufferevent is the connection's own, or sits on it. */
	for (int depth = 0; bev && depth < 4; depth++) {
		if (proxyproto_map_get(bev, &has_addr, out))
			return has_addr;
		bev = bufferevent_get_underlying(bev);
	}
	return false;
}

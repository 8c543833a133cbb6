#include "http.h"

#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/queue.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <event2/event_struct.h>
#include <openssl/err.h>

#include "config.h"
#include "log.h"
#include "proxyproto.h"
#include "tls.h"

/* A pooled work area is poisoned under AddressSanitizer, so that a handler
 * touching its request after answering is caught as if it had been freed. */
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define HTTP_POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define HTTP_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define HTTP_POISON(p, n) ((void)(p), (void)(n))
#define HTTP_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

/* Input buffers of this size are pooled per server: a request that fits
 * (every device request does) costs no allocation, and an idle connection
 * holds none. */
#define HTTP_BUF_SMALL 4096
#define HTTP_POOL_MAX 256
/* Connections accepted per readiness of the listening socket. */
#define HTTP_ACCEPT_BURST 32
/* After accept() ran out of descriptors or memory: wait this long. */
#define HTTP_ACCEPT_PAUSE_MS 100

static atomic_long http_active;      /* requests in handlers */
static atomic_long http_open;        /* connections, all servers */
static long http_max_open = 1 << 20; /* set by http_set_max_connections */

enum http_conn_state {
	HTTP_C_HANDSHAKE, /* TLS handshake in progress */
	HTTP_C_IDLE,      /* between requests: no byte of the next one yet */
	HTTP_C_READING,   /* a request has started */
	HTTP_C_HANDLING,  /* a handler has it */
	HTTP_C_WRITING,   /* an answer is partly written */
	HTTP_C_LINGER,    /* answered and shut down: dropping what still comes */
};

struct http_server {
	struct event_base *base;
	const struct config *cfg;
	const struct http_service *svc;
	SSL_CTX *tls;
	bool proxy;
	bool draining;
	bool closing_soon; /* the drain's grace: still accepting, every answer closes */
	evutil_socket_t fd;
	struct event *accept_ev;
	struct event *pause_ev; /* accepting again after a pause */
	bool paused;
	const struct timeval *request_tv, *keepalive_tv; /* common timeouts */
	struct httpreq_limits limits;
	TAILQ_HEAD(, http_conn) all;
	char *pool[HTTP_POOL_MAX]; /* free HTTP_BUF_SMALL buffers */
	int npool;
	struct http_work *wpool[HTTP_POOL_MAX]; /* free work areas */
	int nwpool;
	uint64_t ids;      /* for generated request ids */
	unsigned id_salt;
};

/* What a request needs while it is read and handled (most of a connection's
 * size): idle keep-alive connections do not hold one. */
struct http_work {
	struct httpreq_parser ps;
	struct http_request req;
};

struct http_conn {
	struct http_server *srv;
	evutil_socket_t fd;
	SSL *ssl;
	struct proxyproto_conn *pp;
	struct event rd, wr, timer;
	enum http_conn_state state;
	bool rd_on, wr_on;
	bool closing;     /* close once nothing uses it */
	bool close_after; /* close once the answer is written */
	bool peer_done;   /* the client closed its side */
	bool continued;   /* "100 Continue" sent for this request */
	int busy;         /* callbacks on the stack */
	char *buf;        /* input: [start, len) is unparsed */
	size_t cap, len, start;
	size_t used;      /* bytes of the request being handled */
	char saved;       /* the byte after the body, overwritten by its NUL */
	struct http_work *w; /* from the first byte of a request to its answer */
	char *out;        /* the unwritten rest of an answer */
	size_t out_len, out_off;
	struct netaddr peer;
	TAILQ_ENTRY(http_conn) idle_link;
	TAILQ_ENTRY(http_conn) all_link;
	bool in_idle;
};

/* Idle keep-alive connections of every server on this thread (the public
 * and the admin listener share thread 0), oldest first: the ones to close
 * when the connection bound is reached. Only this thread touches them. */
static __thread TAILQ_HEAD(http_idle_head, http_conn) http_idle_list;
static __thread bool http_idle_ready;

static struct http_idle_head *http_idle_head(void)
{
	if (!http_idle_ready) {
		TAILQ_INIT(&http_idle_list);
		http_idle_ready = true;
	}
	return &http_idle_list;
}

static void http_conn_process(struct http_conn *c);
static void http_conn_close(struct http_conn *c);
static void http_conn_flush(struct http_conn *c);

static int http_split_listen(const char *addr, char *host, size_t hostlen, char *port, size_t portlen)
{
	const char *colon;
	size_t hl;

	if (addr[0] == '[') {
		const char *end = strchr(addr, ']');
		if (end == NULL || end[1] != ':')
			return -1;
		hl = (size_t)(end - addr - 1);
		addr++;
		colon = end + 1;
	} else {
		colon = strrchr(addr, ':');
		if (colon == NULL)
			return -1;
		hl = (size_t)(colon - addr);
	}
	if (hl >= hostlen || strlen(colon + 1) >= portlen || colon[1] == '\0')
		return -1;
	memcpy(host, addr, hl);
	host[hl] = '\0';
	strcpy(port, colon + 1);
	return 0;
}

int http_listen(const char *addr, bool reuseport, evutil_socket_t *out, char **cause)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	struct addrinfo *res = NULL;
	char host[256], port[16];
	int fd = -1, one = 1, rc;

	if (http_split_listen(addr, host, sizeof(host), port, sizeof(port)) < 0) {
		if (asprintf(cause, "listen address \"%s\": expected host:port", addr) < 0)
			*cause = NULL;
		return -1;
	}
	rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
	if (rc != 0) {
		if (asprintf(cause, "listen address \"%s\": %s", addr, gai_strerror(rc)) < 0)
			*cause = NULL;
		return -1;
	}
	fd = socket(res->ai_family, res->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, res->ai_protocol);
	if (fd < 0)
		goto fail;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
		goto fail;
	if (res->ai_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	/* Inherited by accepted sockets. Without it a TLS answer (headers and
	 * body in two records) waits for the client's delayed ACK: ~40 ms. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 4096) < 0)
		goto fail;
	freeaddrinfo(res);
	*out = fd;
	return 0;
fail:
	if (asprintf(cause, "cannot listen on %s: %s", addr, strerror(errno)) < 0)
		*cause = NULL;
	if (fd >= 0)
		close(fd);
	freeaddrinfo(res);
	return -1;
}


void http_set_max_connections(const struct config *cfg)
{
	struct rlimit rl;

	if (cfg->max_connections > 0) {
		http_max_open = cfg->max_connections;
		return;
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
		http_max_open = (long)(rl.rlim_cur / 10 * 9);
	if (http_max_open < 1)
		http_max_open = 1;
}

long http_inflight(void)
{
	return atomic_load(&http_active);
}

const char *http_reason(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 413: return "Payload Too Large";
	case 415: return "Unsupported Media Type";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 503: return "Service Unavailable";
	default: return "Error";
	}
}

double http_elapsed(const struct timespec *since)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - since->tv_sec) + (double)(now.tv_nsec - since->tv_nsec) / 1e9;
}

/* --- buffers --- */

static void http_buf_give(struct http_server *srv, char *buf, size_t cap)
{
	if (cap == HTTP_BUF_SMALL && srv->npool < HTTP_POOL_MAX)
		srv->pool[srv->npool++] = buf;
	else
		free(buf);
}

static void http_conn_buf_release(struct http_conn *c)
{
	if (c->buf)
		http_buf_give(c->srv, c->buf, c->cap);
	c->buf = NULL;
	c->cap = c->len = c->start = 0;
}

/* Room for at least one more byte, keeping one spare byte after the data
 * (where the body's NUL goes). Grows up to what the limits can need; false
 * when out of memory or past every limit. */
static bool http_conn_buf_room(struct http_conn *c)
{
	const struct httpreq_limits *l = &c->srv->limits;
	size_t most = l->max_header_bytes + l->max_body_bytes + 65536 + 1;
	size_t want;
	char *grown;

	if (c->buf == NULL) {
		c->buf = c->srv->npool ? c->srv->pool[--c->srv->npool] : malloc(HTTP_BUF_SMALL);
		if (c->buf == NULL)
			return false;
		c->cap = HTTP_BUF_SMALL;
		c->len = c->start = 0;
	}
	if (c->cap - c->len > 1)
		return true;
	if (c->start > 0) {
		memmove(c->buf, c->buf + c->start, c->len - c->start);
		c->len -= c->start;
		c->start = 0;
		if (c->cap - c->len > 1)
			return true;
	}
	if (c->cap >= most)
		return false;
	want = c->cap * 2 < most ? c->cap * 2 : most;
	/* A body of known length gets its room at once. */
	if (c->w && c->w->ps.head_done && (c->w->ps.p.flags & F_CONTENTLENGTH) &&
	    c->w->ps.p.content_length < most && c->len + c->w->ps.p.content_length + 1 > want &&
	    c->len + c->w->ps.p.content_length + 1 <= most)
		want = c->len + (size_t)c->w->ps.p.content_length + 1;
	grown = malloc(want);
	if (grown == NULL)
		return false;
	memcpy(grown, c->buf, c->len);
	http_buf_give(c->srv, c->buf, c->cap);
	c->buf = grown;
	c->cap = want;
	return true;
}

/* C's work area, from the pool when one is free. False when out of memory. */
static bool http_conn_work_take(struct http_conn *c)
{
	struct http_server *srv = c->srv;

	if (c->w != NULL)
		return true;
	if (srv->nwpool) {
		c->w = srv->wpool[--srv->nwpool];
		HTTP_UNPOISON(c->w, sizeof(*c->w));
	} else {
		c->w = malloc(sizeof(*c->w));
	}
	return c->w != NULL;
}

static void http_conn_work_give(struct http_conn *c)
{
	struct http_server *srv = c->srv;

	if (c->w == NULL)
		return;
	if (srv->nwpool < HTTP_POOL_MAX) {
		HTTP_POISON(c->w, sizeof(*c->w));
		srv->wpool[srv->nwpool++] = c->w;
	} else
		free(c->w);
	c->w = NULL;
}

/* --- events --- */

static void http_rd(struct http_conn *c, bool on)
{
	if (on == c->rd_on)
		return;
	c->rd_on = on;
	if (on)
		event_add(&c->rd, NULL);
	else
		event_del(&c->rd);
}

static void http_wr(struct http_conn *c, bool on)
{
	if (on == c->wr_on)
		return;
	c->wr_on = on;
	if (on)
		event_add(&c->wr, NULL);
	else
		event_del(&c->wr);
}

static void http_idle(struct http_conn *c, bool on)
{
	if (on == c->in_idle)
		return;
	c->in_idle = on;
	if (on)
		TAILQ_INSERT_TAIL(http_idle_head(), c, idle_link);
	else
		TAILQ_REMOVE(http_idle_head(), c, idle_link);
}

static void http_conn_free(struct http_conn *c)
{
	struct http_server *srv = c->srv;

	event_del(&c->rd);
	event_del(&c->wr);
	event_del(&c->timer);
	http_idle(c, false);
	TAILQ_REMOVE(&srv->all, c, all_link);
	if (c->ssl)
		SSL_free(c->ssl);
	proxyproto_conn_free(c->pp);
	if (c->fd >= 0)
		close(c->fd);
	http_conn_buf_release(c);
	http_conn_work_give(c);
	free(c->out);
	free(c);
	atomic_fetch_sub(&http_open, 1);
	metrics_connections(-1);
	/* A descriptor came free: accept again if the bound had stopped it. */
	if (srv->paused && !srv->draining && event_pending(srv->pause_ev, EV_TIMEOUT, NULL)) {
		event_del(srv->pause_ev);
		srv->paused = false;
		event_add(srv->accept_ev, NULL);
	}
}

/* Frees C now, or once the callbacks on the stack are done with it. */
static void http_conn_close(struct http_conn *c)
{
	c->closing = true;
	if (c->busy == 0)
		http_conn_free(c);
}

static void http_conn_unbusy(struct http_conn *c)
{
	if (--c->busy == 0 && c->closing)
		http_conn_free(c);
}

/* --- the socket --- */

enum { HTTP_IO_AGAIN = -1, HTTP_IO_ERROR = -2, HTTP_IO_BAD_PROXY = -3 };

static int http_sock_read(void *arg, unsigned char *buf, int len)
{
	struct http_conn *c = arg;
	ssize_t n = read(c->fd, buf, (size_t)len);

	return n < 0 ? -1 : (int)n;
}

/* Bytes read (> 0), 0 at the end of the stream, or HTTP_IO_*. */
static ssize_t http_conn_recv(struct http_conn *c, char *buf, size_t len)
{
	int n;

	if (c->ssl) {
		ERR_clear_error();
		n = SSL_read(c->ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len);
		if (n > 0)
			return n;
		switch (SSL_get_error(c->ssl, n)) {
		case SSL_ERROR_WANT_READ:
		case SSL_ERROR_WANT_WRITE:
			return HTTP_IO_AGAIN;
		case SSL_ERROR_ZERO_RETURN:
			return 0;
		case SSL_ERROR_SYSCALL:
			ERR_clear_error();
			return errno == EAGAIN || errno == EINTR ? HTTP_IO_AGAIN : 0;
		default:
			ERR_clear_error();
			return HTTP_IO_ERROR;
		}
	}
	errno = 0;
	if (c->pp)
		n = proxyproto_conn_read(c->pp, (unsigned char *)buf, len > INT32_MAX ? INT32_MAX : (int)len,
			http_sock_read, c);
	else
		n = (int)read(c->fd, buf, len);
	if (n == PROXYPROTO_BAD)
		return HTTP_IO_BAD_PROXY;
	if (n >= 0)
		return n;
	return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? HTTP_IO_AGAIN : HTTP_IO_ERROR;
}

/* Writes what it can of A and then B. Returns the bytes written or -1 when
 * the connection is broken. */
static ssize_t http_conn_send(struct http_conn *c, const char *a, size_t alen, const char *b, size_t blen)
{
	if (c->ssl == NULL) {
		struct iovec iov[2] = { { (void *)a, alen }, { (void *)b, blen } };
		ssize_t n = writev(c->fd, iov, blen ? 2 : 1);
		if (n >= 0)
			return n;
		return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
	}
	/* One TLS record for head and body when they fit: one write, one packet. */
	static __thread char joined[16384];
	size_t total = alen + blen, done = 0;
	const char *p = a;
	int n;

	if (blen && total <= sizeof(joined)) {
		memcpy(joined, a, alen);
		memcpy(joined + alen, b, blen);
		p = joined;
		alen = total;
		blen = 0;
	}
	for (int part = 0; part < 2; part++) {
		size_t plen = part == 0 ? alen : blen;
		const char *pp = part == 0 ? p : b;

		while (plen > 0) {
			ERR_clear_error();
			n = SSL_write(c->ssl, pp, plen > INT32_MAX ? INT32_MAX : (int)plen);
			if (n <= 0) {
				int e = SSL_get_error(c->ssl, n);
				ERR_clear_error();
				return e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ ? (ssize_t)done : -1;
			}
			done += (size_t)n;
			pp += n;
			plen -= (size_t)n;
		}
	}
	return (ssize_t)done;
}

/* Closes a connection whose answer is out: the client may still be sending
 * (a refused body), and closing with unread bytes would reset the
 * connection and could destroy the answer in flight. So: send our end,
 * then read and drop until the client closes or a short time passes. */
static void http_conn_linger(struct http_conn *c)
{
	static const struct timeval linger = { 2, 0 };

	if (c->ssl && SSL_is_init_finished(c->ssl)) {
		ERR_clear_error();
		SSL_shutdown(c->ssl);
		ERR_clear_error();
	}
	if (c->peer_done || shutdown(c->fd, SHUT_WR) < 0) {
		http_conn_close(c);
		return;
	}
	c->state = HTTP_C_LINGER;
	http_idle(c, false);
	http_wr(c, false);
	http_conn_buf_release(c);
	event_del(&c->timer);
	event_add(&c->timer, &linger);
	http_rd(c, true);
}

/* --- requests --- */

static bool http_id_sane(const char *s)
{
	size_t n = 0;

	for (; s[n]; n++)
		if (n == HTTP_ID_MAX || !((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= 'A' && s[n] <= 'Z') ||
			(s[n] >= '0' && s[n] <= '9') || s[n] == '.' || s[n] == '_' || s[n] == '-'))
			return false;
	return n > 0;
}

/* A refused request was not parsed: its X-Request-Id, if any, is looked for
 * in the raw bytes. */
static bool http_raw_id(const char *buf, size_t len, char out[HTTP_ID_MAX + 1])
{
	static const char name[] = "\nx-request-id:";
	size_t n = sizeof(name) - 1;

	for (size_t i = 0; i + n <= len; i++) {
		size_t k, v;
		if (strncasecmp(buf + i, name, n) != 0)
			continue;
		for (k = i + n; k < len && (buf[k] == ' ' || buf[k] == '\t'); k++)
			;
		for (v = 0; k + v < len && v <= HTTP_ID_MAX && buf[k + v] != '\r' && buf[k + v] != '\n' &&
		     buf[k + v] != ' '; v++)
			;
		if (v == 0 || v > HTTP_ID_MAX)
			return false;
		memcpy(out, buf + k, v);
		out[v] = '\0';
		return true;
	}
	return false;
}

/* 16 hex digits: the server's salt, then its request count. */
static void http_make_id(char out[HTTP_ID_MAX + 1], unsigned salt, uint64_t n)
{
	static const char hex[] = "0123456789abcdef";
	uint64_t v = ((uint64_t)salt << 32) | (n & 0xffffffffu);

	for (int i = 15; i >= 0; i--, v >>= 4)
		out[i] = hex[v & 15];
	out[16] = '\0';
}

/* Ready REQ for its handler: times, ids, the connection. */
static void http_request_begin(struct http_conn *c, bool parsed)
{
	struct http_request *req = &c->w->req;
	const char *given = parsed ? httpreq_header(&req->r, "X-Request-Id") : NULL;

	if (!parsed) {
		memset(&req->r, 0, offsetof(struct httpreq, headers));
		req->r.nheaders = 0;
	}
	clock_gettime(CLOCK_MONOTONIC, &req->started);
	req->route = c->srv->svc->fallback;
	req->matched = NULL;
	req->route_name = NULL;
	req->ctx = c->srv->svc->ctx;
	req->conn = c;
	req->extra_len = 0;
	if (given && http_id_sane(given))
		memcpy(req->id, given, strlen(given) + 1);
	else if (!parsed && c->buf && http_raw_id(c->buf + c->start, c->len - c->start, req->id) &&
		 http_id_sane(req->id))
		;
	else
		http_make_id(req->id, c->srv->id_salt, ++c->srv->ids);
	c->state = HTTP_C_HANDLING;
	http_idle(c, false);
	event_del(&c->timer);
	/* Reading stays on: most answers come before the next readiness, and
	 * http_conn_input turns it off if bytes come while the handler works. */
	if (c->srv->draining || c->srv->closing_soon)
		c->close_after = true;
	atomic_fetch_add(&http_active, 1);
	log_context_set(req->id);
}

static const char *http_refusal(int status)
{
	switch (status) {
	case 405: return "method not allowed";
	case 408: return "request not received in time";
	case 413: return "request body too large";
	case 431: return "request header fields too large";
	default: return "malformed request";
	}
}

/* A request refused before a route is known: answered in the listener's
 * shape, then the connection closes (what follows cannot be trusted). */
static void http_conn_refuse(struct http_conn *c, int status)
{
	c->close_after = true;
	c->used = 0;
	metrics_count(status == 408 ? METRICS_HTTP_TIMEOUTS : METRICS_HTTP_REFUSED);
	http_request_begin(c, false);
	c->srv->svc->error(&c->w->req, status, http_refusal(status));
	log_context_set(NULL);
}

static void http_conn_dispatch(struct http_conn *c)
{
	const struct http_service *svc = c->srv->svc;
	struct http_request *req = &c->w->req;
	const struct http_route *r = NULL;
	char *end = c->buf + c->start + c->used;

	/* The byte after the request (the next pipelined one's first, or the
	 * spare) holds the body's NUL while the request is handled. */
	c->saved = *end;
	if (req->r.body)
		req->r.body[req->r.body_len] = '\0';
	if (!req->r.keep_alive)
		c->close_after = true;
	http_request_begin(c, true);
	for (size_t i = 0; i < svc->nroutes; i++) {
		const struct http_route *cand = &svc->routes[i];
		if (cand->prefix ? strncmp(req->r.path, cand->path, strlen(cand->path)) == 0
				 : strcmp(req->r.path, cand->path) == 0) {
			r = cand;
			break;
		}
	}
	if (r == NULL) {
		svc->error(req, 404, "not found");
	} else {
		req->matched = r;
		req->route = r->metric;
		if (r->methods && (r->methods & HTTP_M(req->r.method)) == 0) {
			if (r->allow)
				http_add_header(req, "Allow", r->allow);
			svc->error(req, 405, "method not allowed");
		} else {
			r->fn(req, svc->ctx);
		}
	}
	log_context_set(NULL);
}

/* Parses and hands over every complete request in the buffer, in order,
 * one at a time. */
static void http_conn_process(struct http_conn *c)
{
	size_t used = 0;
	int rc;

	while (!c->closing && (c->state == HTTP_C_IDLE || c->state == HTTP_C_READING) && c->len > c->start) {
		if (c->state == HTTP_C_IDLE) {
			if (!http_conn_work_take(c)) {
				http_conn_close(c);
				return;
			}
			c->state = HTTP_C_READING;
			c->continued = false;
			http_idle(c, false);
			httpreq_parser_init(&c->w->ps, &c->srv->limits);
			/* From the first byte, however slowly the rest comes. */
			event_del(&c->timer);
			event_add(&c->timer, c->srv->request_tv);
		}
		rc = httpreq_parse(&c->w->ps, c->buf + c->start, c->len - c->start, &used, &c->w->req.r);
		if (rc == HTTPREQ_MORE) {
			if (!c->continued && httpreq_awaiting_body(&c->w->ps) &&
			    httpreq_expects_continue(&c->w->ps, c->buf + c->start)) {
				static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
				c->continued = true;
				/* Best effort: a client that gets nothing sends anyway. */
				if (http_conn_send(c, cont, sizeof(cont) - 1, NULL, 0) < 0)
					c->peer_done = true;
			}
			return;
		}
		if (rc != HTTPREQ_DONE) {
			http_conn_refuse(c, rc);
			return;
		}
		c->used = used;
		http_conn_dispatch(c);
	}
}

/* Reads what the socket has and processes it. */
static void http_conn_input(struct http_conn *c)
{
	for (;;) {
		ssize_t n;

		if (c->closing)
			return;
		if (c->state == HTTP_C_HANDLING || c->state == HTTP_C_WRITING) {
			http_rd(c, false);
			return;
		}
		if (!http_conn_buf_room(c)) {
			http_conn_close(c);
			return;
		}
		n = http_conn_recv(c, c->buf + c->len, c->cap - c->len - 1);
		if (n == HTTP_IO_AGAIN)
			return;
		if (n <= 0) {
			/* The end, a broken connection or a malformed PROXY header:
			 * a request cut short is not answered. */
			if (n == HTTP_IO_BAD_PROXY)
				log_debug("http", "malformed PROXY header: connection closed");
			c->peer_done = true;
			http_conn_close(c);
			return;
		}
		c->len += (size_t)n;
		http_conn_process(c);
		/* A short read emptied the socket; OpenSSL may still hold bytes. */
		if (c->len < c->cap - 1 && !(c->ssl && SSL_pending(c->ssl) > 0))
			return;
	}
}

static void http_conn_handshake(struct http_conn *c)
{
	char peer[NETADDR_TEXT_MAX];
	int rc, e;

	ERR_clear_error();
	rc = SSL_do_handshake(c->ssl);
	if (rc == 1) {
		c->state = HTTP_C_IDLE;
		http_wr(c, false);
		http_rd(c, true);
		event_del(&c->timer);
		event_add(&c->timer, c->srv->request_tv);
		return;
	}
	e = SSL_get_error(c->ssl, rc);
	if (e == SSL_ERROR_WANT_READ) {
		http_wr(c, false);
		http_rd(c, true);
		return;
	}
	if (e == SSL_ERROR_WANT_WRITE) {
		http_wr(c, true);
		return;
	}
	netaddr_format(&c->peer, peer);
	tls_handshake_failed(c->ssl, c->pp && !proxyproto_conn_passing(c->pp) ? TLS_FAILURE_PROXY_HEADER
		: tls_failure_classify(e, ERR_peek_error()), peer);
	http_conn_close(c);
}

/* The answer is out: the next request, or the end. */
static void http_conn_done(struct http_conn *c)
{
	free(c->out);
	c->out = NULL;
	c->out_len = c->out_off = 0;
	http_wr(c, false);
	if (c->close_after || c->peer_done) {
		http_conn_linger(c);
		return;
	}
	if (c->used) {
		c->buf[c->start + c->used] = c->saved;
		c->start += c->used;
		c->used = 0;
	}
	c->state = HTTP_C_IDLE;
	http_conn_work_give(c);
	if (c->start == c->len)
		http_conn_buf_release(c);
	http_idle(c, true);
	event_del(&c->timer);
	event_add(&c->timer, c->srv->keepalive_tv);
	http_rd(c, true);
	if (c->busy)
		return; /* the loop on the stack goes on with what is buffered */
	c->busy++;
	http_conn_process(c);
	if (c->ssl && SSL_pending(c->ssl) > 0)
		http_conn_input(c);
	http_conn_unbusy(c);
}

static void http_conn_flush(struct http_conn *c)
{
	ssize_t n = http_conn_send(c, c->out + c->out_off, c->out_len - c->out_off, NULL, 0);

	if (n < 0) {
		c->peer_done = true;
		http_conn_close(c);
		return;
	}
	c->out_off += (size_t)n;
	if (c->out_off == c->out_len)
		http_conn_done(c);
}

const char *http_header(const struct http_request *req, const char *name)
{
	return httpreq_header(&req->r, name);
}

int http_add_header(struct http_request *req, const char *name, const char *value)
{
	int n = snprintf(req->extra + req->extra_len, sizeof(req->extra) - req->extra_len, "%s: %s\r\n", name, value);

	if (n < 0 || (size_t)n >= sizeof(req->extra) - req->extra_len)
		return -1;
	req->extra_len += (size_t)n;
	return 0;
}

static char *http_put(char *p, const char *s, size_t n)
{
	memcpy(p, s, n);
	return p + n;
}

static char *http_put_uint(char *p, size_t v)
{
	char digits[24];
	size_t n = 0;

	do {
		digits[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n)
		*p++ = digits[--n];
	return p;
}

#define HTTP_PUT_LIT(p, lit) http_put((p), (lit), sizeof(lit) - 1)

/* The answer's head into BUF (CAP bytes): its length, or -1 when it does not
 * fit. Built by hand: on the hot path printf's formatting was a fifth of a
 * request's instructions. */
static int http_head(char *buf, size_t cap, int status, const char *ctype, size_t len, const char *id,
	const char *extra, size_t extra_len, const char *conn)
{
	const char *reason = http_reason(status);
	size_t rl = strlen(reason), cl = strlen(ctype), il = strlen(id), nl = strlen(conn);
	char *p = buf;

	if (status < 100 || status > 999 || 13 + rl + 16 + cl + 18 + 20 + 16 + il + extra_len + nl + 2 + 8 > cap)
		return -1;
	p = HTTP_PUT_LIT(p, "HTTP/1.1 ");
	p = http_put_uint(p, (size_t)status);
	*p++ = ' ';
	p = http_put(p, reason, rl);
	p = HTTP_PUT_LIT(p, "\r\nContent-Type: ");
	p = http_put(p, ctype, cl);
	p = HTTP_PUT_LIT(p, "\r\nContent-Length: ");
	p = http_put_uint(p, len);
	p = HTTP_PUT_LIT(p, "\r\nX-Request-Id: ");
	p = http_put(p, id, il);
	p = HTTP_PUT_LIT(p, "\r\n");
	p = http_put(p, extra, extra_len);
	p = http_put(p, conn, nl);
	p = HTTP_PUT_LIT(p, "\r\n");
	return (int)(p - buf);
}

static void http_log_access(const struct http_request *req, int status)
{
	char client[NETADDR_TEXT_MAX];
	struct netaddr peer;
	struct log_access a = {
		.method = req->r.path ? http_method_str(req->r.method) : "-",
		.route = http_route_name(req),
		.client = client,
		.request_id = req->id,
		.status = status,
		.seconds = http_elapsed(&req->started),
	};

	http_peer(req, &peer);
	netaddr_format(&peer, client);
	log_access(&a);
}

const char *http_route_name(const struct http_request *req)
{
	if (req->route_name != NULL)
		return req->route_name;
	if (req->matched != NULL && !req->matched->prefix)
		return req->matched->path;
	return "-";
}

void http_send(struct http_request *req, int status, const char *content_type, const char *body, size_t len)
{
	struct http_conn *c = req->conn;
	char head[640];
	const char *conn = "";
	ssize_t n;
	int hl;

	/* A request that began before the drain ends its connection too. */
	if (c->srv->draining || c->srv->closing_soon)
		c->close_after = true;
	if (c->close_after)
		conn = "Connection: close\r\n";
	else if (req->r.major == 1 && req->r.minor == 0)
		conn = "Connection: keep-alive\r\n";
	/* Always HTTP/1.1 and an exact Content-Length: the field SDKs insist. */
	hl = http_head(head, sizeof(head), status, content_type, len, req->id, req->extra, req->extra_len, conn);
	if (hl < 0)
		hl = snprintf(head, sizeof(head), "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n");
	metrics_request(req->route, status, http_elapsed(&req->started));
	if (log_access_on())
		http_log_access(req, status);
	if (c->srv->svc->answered)
		c->srv->svc->answered(req, status, c->srv->svc->ctx);
	atomic_fetch_sub(&http_active, 1);
	c->state = HTTP_C_WRITING;
	/* A HEAD answer says how long the body is, and sends none. */
	if (req->r.path != NULL && req->r.method == HTTP_HEAD)
		len = 0;
	n = http_conn_send(c, head, (size_t)hl, body, len);
	if (n < 0) {
		c->peer_done = true;
		http_conn_close(c);
		return;
	}
	if ((size_t)n == (size_t)hl + len) {
		http_conn_done(c);
		return;
	}
	/* The rest waits for the socket; the client gets request_timeout_s. */
	c->out_len = (size_t)hl + len - (size_t)n;
	c->out_off = 0;
	c->out = malloc(c->out_len);
	if (c->out == NULL) {
		http_conn_close(c);
		return;
	}
	if ((size_t)n < (size_t)hl) {
		memcpy(c->out, head + n, (size_t)hl - (size_t)n);
		memcpy(c->out + (size_t)hl - (size_t)n, body, len);
	} else {
		memcpy(c->out, body + ((size_t)n - (size_t)hl), c->out_len);
	}
	http_wr(c, true);
	event_del(&c->timer);
	event_add(&c->timer, c->srv->request_tv);
}

void http_peer(const struct http_request *req, struct netaddr *out)
{
	const struct http_conn *c = req->conn;

	if (c->pp == NULL || !proxyproto_conn_client(c->pp, out))
		*out = c->peer;
}

/* --- connection events --- */

static void http_on_read(evutil_socket_t fd, short what, void *arg)
{
	struct http_conn *c = arg;
	char drop[512];

	(void)fd;
	(void)what;
	c->busy++;
	if (c->state == HTTP_C_LINGER) {
		ssize_t n;
		while ((n = read(c->fd, drop, sizeof(drop))) > 0)
			;
		if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
			http_conn_close(c);
	} else if (c->state == HTTP_C_HANDSHAKE) {
		http_conn_handshake(c);
		if (!c->closing && c->state == HTTP_C_IDLE)
			http_conn_input(c);
	} else {
		http_conn_input(c);
	}
	http_conn_unbusy(c);
}

static void http_on_write(evutil_socket_t fd, short what, void *arg)
{
	struct http_conn *c = arg;

	(void)fd;
	(void)what;
	c->busy++;
	if (c->state == HTTP_C_HANDSHAKE) {
		http_conn_handshake(c);
		if (!c->closing && c->state == HTTP_C_IDLE)
			http_conn_input(c);
	} else if (c->out) {
		http_conn_flush(c);
		/* The answer left from here, not from a read: whatever the client
		 * pipelined behind it waits in the buffer (or in OpenSSL). */
		if (!c->closing && c->state == HTTP_C_IDLE) {
			http_conn_process(c);
			if (!c->closing && c->state == HTTP_C_IDLE && c->ssl && SSL_pending(c->ssl) > 0)
				http_conn_input(c);
		}
	} else {
		http_wr(c, false);
	}
	http_conn_unbusy(c);
}

static void http_on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct http_conn *c = arg;
	char peer[NETADDR_TEXT_MAX];

	(void)fd;
	(void)what;
	c->busy++;
	switch (c->state) {
	case HTTP_C_READING:
		http_conn_refuse(c, 408);
		break;
	case HTTP_C_HANDSHAKE:
		netaddr_format(&c->peer, peer);
		tls_handshake_failed(c->ssl, TLS_FAILURE_TIMEOUT, peer);
		http_conn_close(c);
		break;
	case HTTP_C_HANDLING:
		break; /* never armed: the handler answers within its own bounds */
	default:
		/* Idle, an answer the client does not read, or lingering. */
		http_conn_close(c);
		break;
	}
	http_conn_unbusy(c);
}

static void http_conn_new(struct http_server *srv, evutil_socket_t fd, const struct sockaddr_storage *ss)
{
	struct http_conn *c = calloc(1, sizeof(*c));

	if (c == NULL) {
		close(fd);
		return;
	}
	c->srv = srv;
	c->fd = fd;
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const void *)ss;
		static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
		if (memcmp(a->sin6_addr.s6_addr, mapped, 12) == 0) {
			c->peer.family = AF_INET;
			memcpy(c->peer.bytes, a->sin6_addr.s6_addr + 12, 4);
		} else {
			c->peer.family = AF_INET6;
			memcpy(c->peer.bytes, a->sin6_addr.s6_addr, 16);
		}
	} else {
		const struct sockaddr_in *a = (const void *)ss;
		c->peer.family = AF_INET;
		memcpy(c->peer.bytes, &a->sin_addr, 4);
	}
	if (srv->proxy && (c->pp = proxyproto_conn_new()) == NULL)
		goto fail;
	if (srv->tls && (c->ssl = tls_conn_new(srv->tls, fd, c->pp)) == NULL)
		goto fail;
	c->state = srv->tls ? HTTP_C_HANDSHAKE : HTTP_C_IDLE;
	event_assign(&c->rd, srv->base, fd, EV_READ | EV_PERSIST, http_on_read, c);
	event_assign(&c->wr, srv->base, fd, EV_WRITE | EV_PERSIST, http_on_write, c);
	evtimer_assign(&c->timer, srv->base, http_on_timer, c);
	TAILQ_INSERT_TAIL(&srv->all, c, all_link);
	atomic_fetch_add(&http_open, 1);
	metrics_connections(1);
	metrics_count(METRICS_HTTP_ACCEPTED);
	/* The first request (or handshake) must come within request_timeout_s;
	 * an idle connection is not put on the reclaim list before it has
	 * sent something, so that a flood of silent ones cannot evict live
	 * keep-alive clients' connections first. */
	event_add(&c->timer, srv->request_tv);
	http_rd(c, true);
	return;
fail:
	proxyproto_conn_free(c->pp);
	close(fd);
	free(c);
}

/* --- accepting --- */

/* Closes the oldest idle keep-alive connection of this thread to make room. */
static bool http_reclaim(void)
{
	struct http_conn *c = TAILQ_FIRST(http_idle_head());

	if (c == NULL)
		return false;
	metrics_count(METRICS_HTTP_RECLAIMED);
	http_conn_close(c);
	return true;
}

static void http_pause(struct http_server *srv)
{
	static const struct timeval pause = { 0, HTTP_ACCEPT_PAUSE_MS * 1000 };

	if (srv->paused)
		return;
	srv->paused = true;
	event_del(srv->accept_ev);
	event_add(srv->pause_ev, &pause);
}

static void http_on_resume(evutil_socket_t fd, short what, void *arg)
{
	struct http_server *srv = arg;

	(void)fd;
	(void)what;
	srv->paused = false;
	if (!srv->draining)
		event_add(srv->accept_ev, NULL);
}

static struct log_limit http_accept_log, http_bound_log;

static void http_on_accept(evutil_socket_t fd, short what, void *arg)
{
	struct http_server *srv = arg;

	(void)what;
	for (int i = 0; i < HTTP_ACCEPT_BURST; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		unsigned long dropped;
		int cfd;

		/* At the bound, a new connection replaces the oldest idle one;
		 * without any, new ones wait in the kernel's queue. */
		if (atomic_load(&http_open) >= http_max_open && TAILQ_EMPTY(http_idle_head())) {
			if (log_limit_pass(&http_bound_log, &dropped))
				log_warn("http", "%ld connections open, the limit: new ones wait (%lu more like this)",
					http_max_open, dropped);
			http_pause(srv);
			return;
		}
		cfd = accept4(fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (cfd >= 0) {
			if (atomic_load(&http_open) >= http_max_open)
				http_reclaim();
			http_conn_new(srv, cfd, &ss);
			continue;
		}
		switch (errno) {
		case EAGAIN:
#if EAGAIN != EWOULDBLOCK
		case EWOULDBLOCK:
#endif
			return;
		case EINTR:
		case ECONNABORTED:
		case EPROTO:
			continue;
		case EMFILE:
		case ENFILE:
		case ENOBUFS:
		case ENOMEM:
			metrics_count(METRICS_HTTP_ACCEPT_ERRORS);
			if (log_limit_pass(&http_accept_log, &dropped))
				log_warn("http", "cannot accept a connection: %s (%lu more like this)", strerror(errno),
					dropped);
			/* The kernel keeps the connection queued; make room or wait. */
			if (http_reclaim())
				continue;
			http_pause(srv);
			return;
		default:
			if (log_limit_pass(&http_accept_log, &dropped))
				log_warn("http", "accept: %s (%lu more like this)", strerror(errno), dropped);
			http_pause(srv);
			return;
		}
	}
}

struct http_server *http_server_new(struct event_base *base, evutil_socket_t fd, SSL_CTX *ctx, bool proxy_protocol,
	const struct config *cfg, const struct http_service *svc)
{
	struct http_server *srv = calloc(1, sizeof(*srv));
	struct timeval request = { cfg->request_timeout_s, 0 }, keepalive = { cfg->keepalive_timeout_s, 0 };

	if (srv == NULL)
		return NULL;
	srv->base = base;
	srv->cfg = cfg;
	srv->svc = svc;
	srv->tls = ctx;
	if (ctx != NULL)
		SSL_CTX_up_ref(ctx);
	srv->proxy = proxy_protocol;
	srv->fd = fd;
	srv->limits.max_header_bytes = (size_t)cfg->max_header_bytes;
	srv->limits.max_body_bytes = cfg->max_body_bytes;
	srv->id_salt = (unsigned)arc4random();
	TAILQ_INIT(&srv->all);
	srv->request_tv = event_base_init_common_timeout(base, &request);
	srv->keepalive_tv = event_base_init_common_timeout(base, &keepalive);
	srv->accept_ev = event_new(base, fd, EV_READ | EV_PERSIST, http_on_accept, srv);
	srv->pause_ev = evtimer_new(base, http_on_resume, srv);
	if (!srv->request_tv || !srv->keepalive_tv || !srv->accept_ev || !srv->pause_ev ||
	    event_add(srv->accept_ev, NULL) < 0) {
		srv->fd = -1; /* the caller still owns it */
		http_server_free(srv);
		return NULL;
	}
	return srv;
}

void http_server_set_tls(struct http_server *srv, SSL_CTX *ctx)
{
	if (srv->tls == NULL || ctx == NULL || ctx == srv->tls)
		return;
	SSL_CTX_up_ref(ctx);
	SSL_CTX_free(srv->tls);
	srv->tls = ctx;
}

void http_server_close_soon(struct http_server *srv)
{
	struct http_conn *c, *next;

	srv->closing_soon = true;
	for (c = TAILQ_FIRST(http_idle_head()); c; c = next) {
		next = TAILQ_NEXT(c, idle_link);
		if (c->srv == srv)
			http_conn_close(c);
	}
}

void http_server_drain(struct http_server *srv)
{
	struct http_conn *c, *next;

	srv->draining = true;
	if (srv->accept_ev)
		event_del(srv->accept_ev);
	if (srv->pause_ev)
		event_del(srv->pause_ev);
	if (srv->fd >= 0) {
		close(srv->fd);
		srv->fd = -1;
	}
	/* Idle ones go now (their clients reconnect elsewhere); busy ones close
	 * after their answer. */
	for (c = TAILQ_FIRST(http_idle_head()); c; c = next) {
		next = TAILQ_NEXT(c, idle_link);
		if (c->srv == srv)
			http_conn_close(c);
	}
}

void http_server_free(struct http_server *srv)
{
	struct http_conn *c;

	if (srv == NULL)
		return;
	while ((c = TAILQ_FIRST(&srv->all)) != NULL)
		http_conn_free(c);
	if (srv->accept_ev)
		event_free(srv->accept_ev);
	if (srv->pause_ev)
		event_free(srv->pause_ev);
	if (srv->fd >= 0)
		close(srv->fd);
	SSL_CTX_free(srv->tls);
	while (srv->npool)
		free(srv->pool[--srv->npool]);
	while (srv->nwpool) {
		HTTP_UNPOISON(srv->wpool[srv->nwpool - 1], sizeof(struct http_work));
		free(srv->wpool[--srv->nwpool]);
	}
	free(srv);
}

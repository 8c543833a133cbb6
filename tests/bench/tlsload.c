/* A load generator that opens one new connection per request, as a booting
 * device does: connect, TLS handshake (or none), one request, read the answer
 * to the server's close, close. wrk keeps its connections and, over TLS,
 * cannot force a full handshake per request; this can, and can also resume
 * every handshake from the session its connection slot got last.
 *
 *   tlsload --connect 127.0.0.1:PORT --requests FILE
 *           [--plain | --full | --ticket | --session-id] [--tls1.2 | --tls1.3]
 *           [--concurrency N] [--threads T] [--count N] [--duration S]
 *           [--timeout S] [--cafile PEM] [--ciphers LIST]
 *
 *   --requests FILE   raw HTTP requests separated by NUL bytes, used in turn;
 *                     each should say "Connection: close"
 *   --plain           no TLS: a TCP connect per request
 *   --full            a full handshake every time (the default)
 *   --ticket          resume with the last session ticket the slot received
 *   --session-id      resume by session id (TLS 1.2, tickets off)
 *   --concurrency N   connections in flight at any time (default 32)
 *   --threads T       client threads, each with its own epoll (default 1)
 *   --count N         stop after N connections (default: no bound but time)
 *   --duration S      stop starting connections after S seconds (default 10)
 *   --timeout S       a connection that takes longer fails (default 5)
 *   --cafile PEM      verify the server's certificate against PEM
 *
 * Prints one "tlsload-result key=value ..." line on stdout: connections
 * completed per second, resumed count, latency of the whole connection and of
 * the handshake (p50/p99, µs), negotiated protocol, cipher and group, and the
 * failures by kind. Exits 1 on a usage error or when nothing succeeded. */
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#define TLSLOAD_MAX_SAMPLES (8u << 20)
#define TLSLOAD_STATUS_BYTES 16

enum tlsload_mode { TLSLOAD_PLAIN, TLSLOAD_FULL, TLSLOAD_TICKET, TLSLOAD_SESSION_ID };

enum tlsload_state { TLSLOAD_IDLE, TLSLOAD_CONNECTING, TLSLOAD_HANDSHAKE, TLSLOAD_WRITING, TLSLOAD_READING };

struct tlsload_request {
	const char *data;
	size_t len;
};

struct tlsload_opts {
	enum tlsload_mode mode;
	struct sockaddr_in addr;
	int version; /* 0: what both sides support */
	int concurrency;
	int threads;
	long long count; /* < 0: unbounded */
	double duration;
	double timeout;
	const char *cafile;
	const char *ciphers;
	char *reqbuf; /* the file, which reqs point into */
	struct tlsload_request *reqs;
	size_t nreqs;
};

struct tlsload_samples {
	uint32_t *v;
	size_t n, cap;
	unsigned long long dropped;
};

struct tlsload_slot {
	struct tlsload_thread *t;
	enum tlsload_state state;
	int fd;
	bool watched; /* fd is in the epoll set */
	SSL *ssl;
	SSL_SESSION *sess; /* the latest this slot received, for resumption */
	const struct tlsload_request *req;
	size_t written;
	char status[TLSLOAD_STATUS_BYTES];
	size_t status_len;
	double started, handshaken, deadline;
	bool resumed;
};

struct tlsload_thread {
	pthread_t tid;
	const struct tlsload_opts *o;
	SSL_CTX *ctx;
	int ep;
	int nslots;
	struct tlsload_slot *slots;
	size_t next_req;
	struct tlsload_samples total, handshake;
	unsigned long long ok, resumed, non200, connect_errors, tls_errors, io_errors, timeouts;
	char protocol[32], cipher[64], group[32];
};

static atomic_llong tlsload_started;
static double tlsload_stop_at;
static volatile sig_atomic_t tlsload_interrupted;

static double tlsload_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void tlsload_on_signal(int sig)
{
	(void)sig;
	tlsload_interrupted = 1;
}

static void tlsload_sample(struct tlsload_samples *s, double seconds)
{
	double us = seconds * 1e6;

	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 65536;
		uint32_t *v;

		if (cap > TLSLOAD_MAX_SAMPLES || (v = realloc(s->v, cap * sizeof(*v))) == NULL) {
			s->dropped++;
			return;
		}
		s->v = v;
		s->cap = cap;
	}
	s->v[s->n++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

static int tlsload_cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted values; 0 when there are none. */
static uint32_t tlsload_percentile(const uint32_t *v, size_t n, double p)
{
	size_t rank;

	if (n == 0)
		return 0;
	rank = (size_t)(p / 100.0 * (double)n + 0.999999);
	if (rank < 1)
		rank = 1;
	if (rank > n)
		rank = n;
	return v[rank - 1];
}

/* The session a slot resumes with: the ticket (or id) received last. */
static int tlsload_new_session(SSL *ssl, SSL_SESSION *sess)
{
	struct tlsload_slot *s = SSL_get_app_data(ssl);

	if (s == NULL)
		return 0;
	SSL_SESSION_free(s->sess);
	s->sess = sess;
	return 1; /* we keep the reference */
}

static int tlsload_ctx_new(const struct tlsload_opts *o, SSL_CTX **out)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (ctx == NULL)
		return -1;
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	if (o->version) {
		SSL_CTX_set_min_proto_version(ctx, o->version);
		SSL_CTX_set_max_proto_version(ctx, o->version);
	}
	/* Servers close after answering "Connection: close"; some without close_notify. */
	SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_COMPRESSION |
		(o->mode == TLSLOAD_SESSION_ID ? SSL_OP_NO_TICKET : 0));
	if (o->ciphers && !SSL_CTX_set_cipher_list(ctx, o->ciphers))
		goto fail;
	if (o->cafile) {
		if (SSL_CTX_load_verify_locations(ctx, o->cafile, NULL) != 1)
			goto fail;
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	} else {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	}
	if (o->mode == TLSLOAD_TICKET || o->mode == TLSLOAD_SESSION_ID) {
		SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
		SSL_CTX_sess_set_new_cb(ctx, tlsload_new_session);
	} else {
		SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	}
	*out = ctx;
	return 0;
fail:
	SSL_CTX_free(ctx);
	return -1;
}

static void tlsload_watch(struct tlsload_slot *s, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = s };

	(void)epoll_ctl(s->t->ep, s->watched ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, s->fd, &ev);
	s->watched = true;
}

static void tlsload_close(struct tlsload_slot *s)
{
	if (s->ssl) {
		SSL_set_app_data(s->ssl, NULL);
		SSL_free(s->ssl);
		s->ssl = NULL;
	}
	if (s->fd >= 0) {
		close(s->fd); /* also leaves the epoll set */
		s->fd = -1;
	}
	s->watched = false;
	s->state = TLSLOAD_IDLE;
}

static void tlsload_fail(struct tlsload_slot *s, unsigned long long *counter)
{
	(*counter)++;
	ERR_clear_error();
	tlsload_close(s);
}

/* Starts the slot's next connection, unless the run is over. */
static void tlsload_start(struct tlsload_slot *s)
{
	struct tlsload_thread *t = s->t;
	const struct tlsload_opts *o = t->o;
	int one = 1;

	if (tlsload_interrupted || tlsload_now() >= tlsload_stop_at)
		return;
	if (o->count >= 0 && atomic_fetch_add(&tlsload_started, 1) >= o->count)
		return;
	s->req = &o->reqs[t->next_req++ % o->nreqs];
	s->written = 0;
	s->status_len = 0;
	s->resumed = false;
	s->started = tlsload_now();
	s->deadline = s->started + o->timeout;
	s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->fd < 0) {
		t->connect_errors++;
		return;
	}
	(void)setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(s->fd, (const struct sockaddr *)&o->addr, sizeof(o->addr)) != 0 && errno != EINPROGRESS) {
		tlsload_fail(s, &t->connect_errors);
		return;
	}
	s->state = TLSLOAD_CONNECTING;
	tlsload_watch(s, EPOLLOUT);
}

static void tlsload_finish(struct tlsload_slot *s)
{
	struct tlsload_thread *t = s->t;
	double now = tlsload_now();

	/* "HTTP/1.1 200 " */
	if (s->status_len < 13 || memcmp(s->status, "HTTP/1.", 7) != 0 || memcmp(s->status + 8, " 200 ", 5) != 0) {
		tlsload_fail(s, &t->non200);
		return;
	}
	t->ok++;
	if (s->resumed)
		t->resumed++;
	tlsload_sample(&t->total, now - s->started);
	if (s->ssl) {
		tlsload_sample(&t->handshake, s->handshaken - s->started);
		if (t->protocol[0] == '\0') {
			const SSL_CIPHER *c = SSL_get_current_cipher(s->ssl);
			const char *g = SSL_group_to_name(s->ssl, SSL_get_negotiated_group(s->ssl));

			snprintf(t->protocol, sizeof(t->protocol), "%s", SSL_get_version(s->ssl));
			snprintf(t->cipher, sizeof(t->cipher), "%s", c ? SSL_CIPHER_get_name(c) : "?");
			snprintf(t->group, sizeof(t->group), "%s", g ? g : "?");
		}
		/* Done cleanly (the server closed): without this, SSL_free would mark
		 * the session not resumable. No close_notify is sent back. */
		SSL_set_shutdown(s->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
	}
	tlsload_close(s);
}

/* SSL_ERROR_WANT_*: wait for the socket; anything else fails the connection. */
static bool tlsload_ssl_wait(struct tlsload_slot *s, int r)
{
	switch (SSL_get_error(s->ssl, r)) {
	case SSL_ERROR_WANT_READ:
		tlsload_watch(s, EPOLLIN);
		return true;
	case SSL_ERROR_WANT_WRITE:
		tlsload_watch(s, EPOLLOUT);
		return true;
	default:
		return false;
	}
}

static void tlsload_keep_status(struct tlsload_slot *s, const char *buf, size_t n)
{
	size_t k = sizeof(s->status) - s->status_len;

	if (k > n)
		k = n;
	memcpy(s->status + s->status_len, buf, k);
	s->status_len += k;
}

/* Advances the slot as far as the socket allows. */
static void tlsload_step(struct tlsload_slot *s)
{
	struct tlsload_thread *t = s->t;
	char buf[16384];
	int r;

	for (;;) {
		switch (s->state) {
		case TLSLOAD_IDLE:
			return;
		case TLSLOAD_CONNECTING: {
			int err = 0;
			socklen_t len = sizeof(err);

			if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
				tlsload_fail(s, &t->connect_errors);
				return;
			}
			if (t->o->mode == TLSLOAD_PLAIN) {
				s->state = TLSLOAD_WRITING;
				break;
			}
			s->ssl = SSL_new(t->ctx);
			if (s->ssl == NULL || SSL_set_fd(s->ssl, s->fd) != 1) {
				tlsload_fail(s, &t->tls_errors);
				return;
			}
			SSL_set_app_data(s->ssl, s);
			SSL_set_connect_state(s->ssl);
			if (s->sess && SSL_SESSION_is_resumable(s->sess))
				(void)SSL_set_session(s->ssl, s->sess);
			s->state = TLSLOAD_HANDSHAKE;
			break;
		}
		case TLSLOAD_HANDSHAKE:
			r = SSL_do_handshake(s->ssl);
			if (r != 1) {
				if (!tlsload_ssl_wait(s, r))
					tlsload_fail(s, &t->tls_errors);
				return;
			}
			s->handshaken = tlsload_now();
			s->resumed = SSL_session_reused(s->ssl) == 1;
			s->state = TLSLOAD_WRITING;
			break;
		case TLSLOAD_WRITING: {
			const char *p = s->req->data + s->written;
			size_t left = s->req->len - s->written;

			if (s->ssl) {
				r = SSL_write(s->ssl, p, (int)left);
				if (r <= 0) {
					if (!tlsload_ssl_wait(s, r))
						tlsload_fail(s, &t->io_errors);
					return;
				}
			} else {
				ssize_t w = send(s->fd, p, left, MSG_NOSIGNAL);

				if (w < 0) {
					if (errno == EAGAIN || errno == EWOULDBLOCK)
						tlsload_watch(s, EPOLLOUT);
					else
						tlsload_fail(s, &t->io_errors);
					return;
				}
				r = (int)w;
			}
			s->written += (size_t)r;
			if (s->written == s->req->len)
				s->state = TLSLOAD_READING;
			break;
		}
		case TLSLOAD_READING:
			if (s->ssl) {
				r = SSL_read(s->ssl, buf, sizeof(buf));
				if (r > 0) {
					tlsload_keep_status(s, buf, (size_t)r);
					break;
				}
				if (SSL_get_error(s->ssl, r) == SSL_ERROR_ZERO_RETURN) {
					tlsload_finish(s);
					return;
				}
				if (!tlsload_ssl_wait(s, r))
					tlsload_fail(s, &t->io_errors);
				return;
			} else {
				ssize_t n = recv(s->fd, buf, sizeof(buf), 0);

				if (n > 0) {
					tlsload_keep_status(s, buf, (size_t)n);
					break;
				}
				if (n == 0) {
					tlsload_finish(s);
				} else if (errno == EAGAIN || errno == EWOULDBLOCK) {
					tlsload_watch(s, EPOLLIN);
				} else {
					tlsload_fail(s, &t->io_errors);
				}
				return;
			}
		}
	}
}

static void *tlsload_run(void *arg)
{
	struct tlsload_thread *t = arg;
	struct epoll_event evs[256];
	int active;

	for (int i = 0; i < t->nslots; i++)
		tlsload_start(&t->slots[i]);
	do {
		int n = epoll_wait(t->ep, evs, 256, 50);
		double now;

		for (int i = 0; i < n; i++) {
			struct tlsload_slot *s = evs[i].data.ptr;

			tlsload_step(s);
		}
		now = tlsload_now();
		active = 0;
		for (int i = 0; i < t->nslots; i++) {
			struct tlsload_slot *s = &t->slots[i];

			if (s->state != TLSLOAD_IDLE && now >= s->deadline)
				tlsload_fail(s, &t->timeouts);
			if (s->state == TLSLOAD_IDLE)
				tlsload_start(s);
			if (s->state != TLSLOAD_IDLE)
				active++;
		}
	} while (active > 0);
	return NULL;
}

static int tlsload_read_requests(const char *path, struct tlsload_opts *o)
{
	FILE *f = fopen(path, "rb");
	char *data = NULL;
	size_t len = 0, cap = 0, n;
	size_t count = 0;

	if (f == NULL)
		return -1;
	for (;;) {
		if (len + 65536 > cap) {
			char *d = realloc(data, cap + 65536 + 1);

			if (d == NULL)
				goto fail;
			data = d;
			cap += 65536;
		}
		n = fread(data + len, 1, cap - len, f);
		len += n;
		if (n == 0)
			break;
	}
	if (ferror(f) || len == 0)
		goto fail;
	fclose(f);
	data[len] = '\0';
	o->reqbuf = data;
	for (size_t i = 0; i <= len; i++)
		if ((i == len || data[i] == '\0') && i > 0 && data[i - 1] != '\0')
			count++;
	o->reqs = calloc(count, sizeof(*o->reqs));
	if (o->reqs == NULL || count == 0)
		return -1;
	for (size_t i = 0, start = 0; i <= len; i++) {
		if (i == len || data[i] == '\0') {
			if (i > start)
				o->reqs[o->nreqs++] = (struct tlsload_request){ data + start, i - start };
			start = i + 1;
		}
	}
	return 0;
fail:
	fclose(f);
	free(data);
	return -1;
}

static void tlsload_usage(FILE *out)
{
	fprintf(out,
		"usage: tlsload --connect 127.0.0.1:PORT --requests FILE\n"
		"               [--plain | --full | --ticket | --session-id] [--tls1.2 | --tls1.3]\n"
		"               [--concurrency N] [--threads T] [--count N] [--duration S]\n"
		"               [--timeout S] [--cafile PEM] [--ciphers LIST]\n");
}

static int tlsload_number(const char *s, double lo, double hi, double *out)
{
	char *end;
	double v;

	if (s == NULL)
		return -1;
	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end != '\0' || v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

static int tlsload_parse(int argc, char **argv, struct tlsload_opts *o)
{
	const char *connect_to = NULL, *requests = NULL;
	double v;

	*o = (struct tlsload_opts){ .mode = TLSLOAD_FULL, .concurrency = 32, .threads = 1, .count = -1,
		.duration = 10, .timeout = 5 };
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(a, "--plain") == 0) {
			o->mode = TLSLOAD_PLAIN;
		} else if (strcmp(a, "--full") == 0) {
			o->mode = TLSLOAD_FULL;
		} else if (strcmp(a, "--ticket") == 0) {
			o->mode = TLSLOAD_TICKET;
		} else if (strcmp(a, "--session-id") == 0) {
			o->mode = TLSLOAD_SESSION_ID;
		} else if (strcmp(a, "--tls1.2") == 0) {
			o->version = TLS1_2_VERSION;
		} else if (strcmp(a, "--tls1.3") == 0) {
			o->version = TLS1_3_VERSION;
		} else if (strcmp(a, "--connect") == 0 && val) {
			connect_to = argv[++i];
		} else if (strcmp(a, "--requests") == 0 && val) {
			requests = argv[++i];
		} else if (strcmp(a, "--cafile") == 0 && val) {
			o->cafile = argv[++i];
		} else if (strcmp(a, "--ciphers") == 0 && val) {
			o->ciphers = argv[++i];
		} else if (strcmp(a, "--concurrency") == 0 && tlsload_number(val, 1, 100000, &v) == 0) {
			o->concurrency = (int)v;
			i++;
		} else if (strcmp(a, "--threads") == 0 && tlsload_number(val, 1, 64, &v) == 0) {
			o->threads = (int)v;
			i++;
		} else if (strcmp(a, "--count") == 0 && tlsload_number(val, 1, 1e12, &v) == 0) {
			o->count = (long long)v;
			i++;
		} else if (strcmp(a, "--duration") == 0 && tlsload_number(val, 0.1, 86400, &v) == 0) {
			o->duration = v;
			i++;
		} else if (strcmp(a, "--timeout") == 0 && tlsload_number(val, 0.01, 3600, &v) == 0) {
			o->timeout = v;
			i++;
		} else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			tlsload_usage(stdout);
			exit(0);
		} else {
			fprintf(stderr, "tlsload: bad argument \"%s\"\n", a);
			return -1;
		}
	}
	if (o->mode == TLSLOAD_SESSION_ID) {
		if (o->version == TLS1_3_VERSION) {
			fprintf(stderr, "tlsload: TLS 1.3 has no session-id resumption\n");
			return -1;
		}
		o->version = TLS1_2_VERSION;
	}
	if (o->threads > o->concurrency) {
		fprintf(stderr, "tlsload: --threads must not exceed --concurrency\n");
		return -1;
	}
	if (connect_to == NULL || requests == NULL) {
		fprintf(stderr, "tlsload: --connect and --requests are needed\n");
		return -1;
	}
	{
		char host[64];
		const char *colon = strrchr(connect_to, ':');
		double port;

		if (colon == NULL || (size_t)(colon - connect_to) >= sizeof(host) ||
		    tlsload_number(colon + 1, 1, 65535, &port) != 0) {
			fprintf(stderr, "tlsload: --connect wants ADDRESS:PORT, got \"%s\"\n", connect_to);
			return -1;
		}
		memcpy(host, connect_to, (size_t)(colon - connect_to));
		host[colon - connect_to] = '\0';
		o->addr.sin_family = AF_INET;
		o->addr.sin_port = htons((uint16_t)port);
		if (inet_pton(AF_INET, host, &o->addr.sin_addr) != 1) {
			fprintf(stderr, "tlsload: \"%s\" is not an IPv4 address\n", host);
			return -1;
		}
	}
	if (tlsload_read_requests(requests, o) != 0) {
		fprintf(stderr, "tlsload: cannot read requests from %s (or it holds none)\n", requests);
		return -1;
	}
	return 0;
}

static void tlsload_merge(struct tlsload_samples *into, const struct tlsload_samples *from)
{
	if (from->n && into->n + from->n <= into->cap) {
		memcpy(into->v + into->n, from->v, from->n * sizeof(*from->v));
		into->n += from->n;
	}
	into->dropped += from->dropped;
}

static const char *tlsload_mode_name(enum tlsload_mode m)
{
	static const char *const names[] = { "plain", "full", "ticket", "session-id" };

	return names[m];
}

int main(int argc, char **argv)
{
	struct tlsload_opts o;
	struct tlsload_thread *ts = NULL;
	struct tlsload_samples total = { 0 }, hs = { 0 };
	unsigned long long ok = 0, resumed = 0, non200 = 0, cerr = 0, terr = 0, ioerr = 0, tmo = 0;
	const char *protocol = "-", *cipher = "-", *group = "-";
	double t0, elapsed;
	int rc = 1;

	if (tlsload_parse(argc, argv, &o) != 0) {
		tlsload_usage(stderr);
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, tlsload_on_signal);
	signal(SIGTERM, tlsload_on_signal);
	ts = calloc((size_t)o.threads, sizeof(*ts));
	if (ts == NULL)
		return 1;
	for (int i = 0; i < o.threads; i++)
		ts[i].ep = -1;
	t0 = tlsload_now();
	tlsload_stop_at = t0 + o.duration;
	for (int i = 0; i < o.threads; i++) {
		struct tlsload_thread *t = &ts[i];

		t->o = &o;
		t->nslots = o.concurrency / o.threads + (i < o.concurrency % o.threads);
		t->slots = calloc((size_t)t->nslots, sizeof(*t->slots));
		t->ep = epoll_create1(EPOLL_CLOEXEC);
		t->next_req = (size_t)i * 499;
		if (t->slots == NULL || t->ep < 0 || (o.mode != TLSLOAD_PLAIN && tlsload_ctx_new(&o, &t->ctx) != 0)) {
			fprintf(stderr, "tlsload: cannot set up thread %d (TLS context, --cafile or --ciphers?)\n", i);
			ERR_print_errors_fp(stderr);
			goto out;
		}
		for (int j = 0; j < t->nslots; j++)
			t->slots[j] = (struct tlsload_slot){ .t = t, .fd = -1 };
	}
	for (int i = 0; i < o.threads; i++)
		if (pthread_create(&ts[i].tid, NULL, tlsload_run, &ts[i]) != 0) {
			fprintf(stderr, "tlsload: cannot start thread %d\n", i);
			tlsload_interrupted = 1;
			o.threads = i;
			break;
		}
	for (int i = 0; i < o.threads; i++)
		pthread_join(ts[i].tid, NULL);
	elapsed = tlsload_now() - t0;

	for (int i = 0; i < o.threads; i++) {
		total.cap += ts[i].total.n;
		hs.cap += ts[i].handshake.n;
	}
	total.v = malloc((total.cap + 1) * sizeof(*total.v));
	hs.v = malloc((hs.cap + 1) * sizeof(*hs.v));
	if (total.v == NULL || hs.v == NULL)
		goto out;
	for (int i = 0; i < o.threads; i++) {
		struct tlsload_thread *t = &ts[i];

		tlsload_merge(&total, &t->total);
		tlsload_merge(&hs, &t->handshake);
		ok += t->ok;
		resumed += t->resumed;
		non200 += t->non200;
		cerr += t->connect_errors;
		terr += t->tls_errors;
		ioerr += t->io_errors;
		tmo += t->timeouts;
		if (t->protocol[0] && protocol[0] == '-') {
			protocol = t->protocol;
			cipher = t->cipher;
			group = t->group;
		}
	}
	qsort(total.v, total.n, sizeof(*total.v), tlsload_cmp_u32);
	qsort(hs.v, hs.n, sizeof(*hs.v), tlsload_cmp_u32);
	printf("tlsload-result mode=%s connections=%llu duration_us=%.0f rate=%.1f resumed=%llu "
	       "p50_us=%" PRIu32 " p99_us=%" PRIu32 " max_us=%" PRIu32 " hs_p50_us=%" PRIu32 " hs_p99_us=%" PRIu32
	       " non200=%llu connect_errors=%llu tls_errors=%llu io_errors=%llu timeouts=%llu"
	       " unsampled=%llu protocol=%s cipher=%s group=%s interrupted=%d\n",
		tlsload_mode_name(o.mode), ok, elapsed * 1e6, (double)ok / elapsed, resumed,
		tlsload_percentile(total.v, total.n, 50), tlsload_percentile(total.v, total.n, 99),
		total.n ? total.v[total.n - 1] : 0, tlsload_percentile(hs.v, hs.n, 50),
		tlsload_percentile(hs.v, hs.n, 99), non200, cerr, terr, ioerr, tmo, total.dropped, protocol, cipher,
		group, (int)tlsload_interrupted);
	rc = ok > 0 ? 0 : 1;
out:
	for (int i = 0; ts && i < o.threads; i++) {
		for (int j = 0; ts[i].slots && j < ts[i].nslots; j++) {
			tlsload_close(&ts[i].slots[j]);
			SSL_SESSION_free(ts[i].slots[j].sess);
		}
		free(ts[i].slots);
		free(ts[i].total.v);
		free(ts[i].handshake.v);
		SSL_CTX_free(ts[i].ctx);
		if (ts[i].ep >= 0)
			close(ts[i].ep);
	}
	free(ts);
	free(total.v);
	free(hs.v);
	free(o.reqbuf);
	free(o.reqs);
	return rc;
}

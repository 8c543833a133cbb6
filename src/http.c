#include "http.h"

#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/http_struct.h>
#include <event2/keyvalq_struct.h>
#include <openssl/err.h>

#include "config.h"
#include "log.h"
#include "proxyproto.h"

/* Forward secrecy and AEAD only. */
static const char http_modern_ciphers[] =
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
/* Static-RSA CBC suites that small device TLS stacks in the field still need. */
static const char http_legacy_ciphers[] = "AES128-SHA256:AES256-SHA256:AES128-SHA:AES256-SHA";

static atomic_long http_active;

static void http_ssl_cause(char **cause, const char *what, const char *file)
{
	char err[256] = "";
	unsigned long e = ERR_peek_last_error();

	if (e)
		ERR_error_string_n(e, err, sizeof(err));
	ERR_clear_error();
	if (asprintf(cause, "%s%s%s: %s", what, file ? " " : "", file ? file : "", err[0] ? err : "failed") < 0)
		*cause = NULL;
}

/* The PROXY protocol under TLS. The load balancer's header comes in clear
 * before the ClientHello, and an OpenSSL socket bufferevent reads the socket
 * itself, so a filter BIO in front of its socket BIO takes the header off
 * (proxyproto_conn_read). Writes still go straight to the socket, so evhttp's
 * write callback still means "in the kernel": with libevent 2.1's
 * bufferevent_openssl_filter_new it runs as soon as OpenSSL has queued the
 * bytes, and evhttp then frees and shuts down connections it closes with
 * their answer unsent. libevent sets the socket BIO in bufferevent_setfd(),
 * after the bevcb, so the filter goes in when the handshake starts, before
 * OpenSSL reads anything. The proxyproto_conn hangs on the SSL (ex_data),
 * which frees it. */
static pthread_once_t http_proxy_once = PTHREAD_ONCE_INIT;
static int http_proxy_ssl_index = -1;
static BIO_METHOD *http_proxy_bio_method;
static int http_proxy_bio_type;

static void http_proxy_ex_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
	BIO *rbio;

	(void)ad;
	(void)idx;
	(void)argl;
	(void)argp;
	if (ptr == NULL)
		return;
	/* The BIO outlives the state by a moment inside SSL_free. */
	rbio = parent ? SSL_get_rbio(parent) : NULL;
	if (rbio && BIO_method_type(rbio) == http_proxy_bio_type)
		BIO_set_data(rbio, NULL);
	proxyproto_conn_free(ptr);
}

static int http_proxy_next_read(void *arg, unsigned char *buf, int len)
{
	return BIO_read(arg, buf, len);
}

static int http_proxy_bio_read(BIO *b, char *out, int outl)
{
	struct proxyproto_conn *c = BIO_get_data(b);
	BIO *next = BIO_next(b);
	int n;

	BIO_clear_retry_flags(b);
	if (c == NULL || next == NULL || outl <= 0)
		return outl == 0 ? 0 : -1;
	n = proxyproto_conn_read(c, (unsigned char *)out, outl, http_proxy_next_read, next);
	/* A malformed header is an error without retry: the handshake fails
	 * quietly (no alert) and evhttp closes the connection. */
	if (n == PROXYPROTO_BAD)
		return -1;
	if (n <= 0)
		BIO_copy_next_retry(b);
	return n;
}

static int http_proxy_bio_write(BIO *b, const char *in, int inl)
{
	BIO *next = BIO_next(b);
	int n;

	BIO_clear_retry_flags(b);
	if (next == NULL)
		return -1;
	n = BIO_write(next, in, inl);
	BIO_copy_next_retry(b);
	return n;
}

static long http_proxy_bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	struct proxyproto_conn *c = BIO_get_data(b);
	BIO *next = BIO_next(b);
	long pending = c ? (long)proxyproto_conn_pending(c) : 0;

	switch (cmd) {
	case BIO_CTRL_PENDING:
		return pending + (next ? BIO_ctrl(next, cmd, num, ptr) : 0);
	case BIO_CTRL_EOF:
		/* An end inside the header is a plain close too, not an alert. */
		if (c == NULL || !proxyproto_conn_passing(c) || pending)
			return 0;
		break;
	default:
		break;
	}
	return next ? BIO_ctrl(next, cmd, num, ptr) : 0;
}

static int http_proxy_bio_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

static int http_proxy_bio_destroy(BIO *b)
{
	BIO_set_data(b, NULL);
	BIO_set_init(b, 0);
	return 1;
}

static void http_proxy_init(void)
{
	int type = BIO_get_new_index() | BIO_TYPE_FILTER;
	BIO_METHOD *m = BIO_meth_new(type, "PROXY protocol");

	if (m == NULL || !BIO_meth_set_read(m, http_proxy_bio_read) || !BIO_meth_set_write(m, http_proxy_bio_write) ||
	    !BIO_meth_set_ctrl(m, http_proxy_bio_ctrl) || !BIO_meth_set_create(m, http_proxy_bio_create) ||
	    !BIO_meth_set_destroy(m, http_proxy_bio_destroy)) {
		BIO_meth_free(m);
		return;
	}
	http_proxy_ssl_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, http_proxy_ex_free);
	if (http_proxy_ssl_index < 0) {
		BIO_meth_free(m);
		return;
	}
	http_proxy_bio_type = type;
	http_proxy_bio_method = m;
}

/* At the start of the handshake of a PROXY listener's connection. Without
 * the filter (out of memory), the header reaches OpenSSL, which rejects it. */
static void http_proxy_tls_start(SSL *ssl)
{
	struct proxyproto_conn *c = http_proxy_bio_method ? SSL_get_ex_data(ssl, http_proxy_ssl_index) : NULL;
	BIO *sock = c ? SSL_get_rbio(ssl) : NULL;
	BIO *filter;

	if (sock == NULL || BIO_method_type(sock) == http_proxy_bio_type)
		return;
	filter = BIO_new(http_proxy_bio_method);
	if (filter == NULL)
		return;
	if (!BIO_up_ref(sock)) {
		BIO_free(filter);
		return;
	}
	BIO_set_data(filter, c);
	BIO_push(filter, sock);
	/* Drops the SSL's read reference to SOCK; its write one stays. */
	SSL_set0_rbio(ssl, filter);
}

/* A client that closes with close_notify leaves a good session: keep it in
 * the cache (OpenSSL drops sessions of connections freed mid-stream). */
static void http_tls_info(const SSL *ssl, int where, int ret)
{
	if ((where & SSL_CB_READ_ALERT) && (ret & 0xff) == SSL_AD_CLOSE_NOTIFY)
		SSL_set_shutdown((SSL *)ssl, SSL_get_shutdown(ssl) | SSL_SENT_SHUTDOWN);
	if (where & SSL_CB_HANDSHAKE_START)
		http_proxy_tls_start((SSL *)ssl);
}

int http_tls_new(const struct config_tls *tls, SSL_CTX **out, char **cause)
{
	static const unsigned char sid_ctx[] = "bootstrapd";
	char ciphers[1024];
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	/* Here, before the event loop threads start, so that they only read. */
	pthread_once(&http_proxy_once, http_proxy_init);

	if (ctx == NULL) {
		http_ssl_cause(cause, "cannot make a TLS context", NULL);
		return -1;
	}
	SSL_CTX_set_min_proto_version(ctx, tls->min_version ? tls->min_version : TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE |
		SSL_OP_NO_RENEGOTIATION);
	snprintf(ciphers, sizeof(ciphers), "%s%s%s", tls->ciphers ? tls->ciphers : http_modern_ciphers,
		tls->legacy_device_ciphers ? ":" : "", tls->legacy_device_ciphers ? http_legacy_ciphers : "");
	if (!SSL_CTX_set_cipher_list(ctx, ciphers)) {
		http_ssl_cause(cause, "tls.ciphers: no usable cipher in", ciphers);
		goto fail;
	}
	if (tls->ciphersuites && !SSL_CTX_set_ciphersuites(ctx, tls->ciphersuites)) {
		http_ssl_cause(cause, "tls.ciphersuites: no usable suite in", tls->ciphersuites);
		goto fail;
	}
	for (size_t i = 0; i < tls->ncerts; i++) {
		if (SSL_CTX_use_certificate_chain_file(ctx, tls->certs[i].cert) != 1) {
			http_ssl_cause(cause, "cannot use certificate", tls->certs[i].cert);
			goto fail;
		}
		if (SSL_CTX_use_PrivateKey_file(ctx, tls->certs[i].key, SSL_FILETYPE_PEM) != 1) {
			http_ssl_cause(cause, "cannot use private key", tls->certs[i].key);
			goto fail;
		}
		if (SSL_CTX_check_private_key(ctx) != 1) {
			http_ssl_cause(cause, "private key does not match certificate", tls->certs[i].cert);
			goto fail;
		}
	}
	/* Session-id resumption next to tickets (on by default). */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
	SSL_CTX_sess_set_cache_size(ctx, 20000);
	SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1);
	SSL_CTX_set_timeout(ctx, 3600);
	SSL_CTX_set_info_callback(ctx, http_tls_info);
	*out = ctx;
	return 0;
fail:
	SSL_CTX_free(ctx);
	return -1;
}

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

/* A TLS bufferevent for an accepted connection (fd set later by evhttp);
 * with PROXY, it reads the header first (see http_proxy_tls_start). */
static struct bufferevent *http_tls_bev(struct event_base *base, SSL_CTX *ctx, bool proxy)
{
	SSL *ssl = SSL_new(ctx);
	struct bufferevent *bev;
	struct proxyproto_conn *c;

	if (ssl == NULL)
		return NULL;
	bev = bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
		BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (bev == NULL) {
		SSL_free(ssl);
		return NULL;
	}
	if (proxy) {
		c = http_proxy_bio_method ? proxyproto_conn_new(bev) : NULL;
		if (c == NULL || !SSL_set_ex_data(ssl, http_proxy_ssl_index, c)) {
			proxyproto_conn_free(c);
			bufferevent_free(bev);
			return NULL;
		}
	}
	/* Devices often drop the link without close_notify; that is not an error. */
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	return bev;
}

static struct bufferevent *http_tls_bevcb(struct event_base *base, void *arg)
{
	return http_tls_bev(base, arg, false);
}

/* A PROXY protocol listener, TLS when ARG (an SSL_CTX) is set. */
static struct bufferevent *http_proxy_bevcb(struct event_base *base, void *arg)
{
	return arg ? http_tls_bev(base, arg, true) : proxyproto_bufferevent_new(base);
}

struct evhttp *http_server_new(struct event_base *base, evutil_socket_t fd, SSL_CTX *ctx,
	bool proxy_protocol, const struct config *cfg, void (*cb)(struct evhttp_request *, void *), void *arg,
	struct evhttp_bound_socket **bound)
{
	struct evhttp *http = evhttp_new(base);

	if (http == NULL)
		return NULL;
	evhttp_set_timeout(http, cfg->request_timeout_s);
	evhttp_set_max_body_size(http, (ev_ssize_t)cfg->max_body_bytes);
	evhttp_set_max_headers_size(http, 16384);
	/* Every method reaches the handlers, which answer 405 where it does not fit. */
	evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
		EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH |
		EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT);
	evhttp_set_default_content_type(http, "application/json; charset=utf-8");
	evhttp_set_gencb(http, cb, arg);
	if (proxy_protocol)
		evhttp_set_bevcb(http, http_proxy_bevcb, ctx);
	else if (ctx)
		evhttp_set_bevcb(http, http_tls_bevcb, ctx);
	*bound = evhttp_accept_socket_with_handle(http, fd);
	if (*bound == NULL) {
		evhttp_free(http);
		return NULL;
	}
	return http;
}

long http_inflight(void)
{
	return atomic_load(&http_active);
}

void http_begin(void)
{
	atomic_fetch_add(&http_active, 1);
}

const char *http_reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 409: return "Conflict";
	case 413: return "Payload Too Large";
	case 415: return "Unsupported Media Type";
	case 429: return "Too Many Requests";
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

/* OpenSSL forgets the session of a connection freed without a TLS shutdown,
 * which defeats session-id resumption: send close_notify on the way out. */
static void http_on_close(struct evhttp_connection *evcon, void *arg)
{
	struct bufferevent *bev = evhttp_connection_get_bufferevent(evcon);
	SSL *ssl = bev ? bufferevent_openssl_get_ssl(bev) : NULL;

	(void)arg;
	if (ssl && SSL_is_init_finished(ssl)) {
		SSL_shutdown(ssl);
		ERR_clear_error();
	}
}

void http_send(struct evhttp_request *req, enum metrics_route route, const struct timespec *started,
	int status, const char *content_type, const char *body, size_t len)
{
	struct evbuffer *out = evhttp_request_get_output_buffer(req);
	struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);

	if (evcon)
		evhttp_connection_set_closecb(evcon, http_on_close, NULL);

	char length[24];

	evhttp_remove_header(headers, "Content-Type");
	evhttp_add_header(headers, "Content-Type", content_type);
	/* Always an exact Content-Length (evhttp leaves it out for HTTP/1.0). */
	snprintf(length, sizeof(length), "%zu", len);
	evhttp_remove_header(headers, "Content-Length");
	evhttp_add_header(headers, "Content-Length", length);
	if (req->major == 1 && req->minor == 0) {
		/* Answered as HTTP/1.1, the field SDKs' parsers insist; the
		 * connection still closes unless the client asked to keep it. */
		const char *conn = evhttp_find_header(evhttp_request_get_input_headers(req), "Connection");
		if (conn == NULL || strcasecmp(conn, "keep-alive") != 0)
			evhttp_add_header(headers, "Connection", "close");
		req->minor = 1;
	}
	if (len)
		evbuffer_add(out, body, len);
	evhttp_send_reply(req, status, http_reason(status), NULL);
	metrics_request(route, status, http_elapsed(started));
	atomic_fetch_sub(&http_active, 1);
}

void http_peer(struct evhttp_request *req, char *buf, size_t len)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	char *addr = NULL;
	ev_uint16_t port = 0;

	buf[0] = '\0';
	if (evcon == NULL)
		return;
	evhttp_connection_get_peer(evcon, &addr, &port);
	if (addr)
		snprintf(buf, len, "%s", addr);
}

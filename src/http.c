#include "http.h"

#include <errno.h>
#include <netdb.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/http_struct.h>
#include <event2/keyvalq_struct.h>
#include <openssl/err.h>

#include "config.h"
#include "log.h"

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

/* A client that closes with close_notify leaves a good session: keep it in
 * the cache (OpenSSL drops sessions of connections freed mid-stream). */
static void http_tls_info(const SSL *ssl, int where, int ret)
{
	if ((where & SSL_CB_READ_ALERT) && (ret & 0xff) == SSL_AD_CLOSE_NOTIFY)
		SSL_set_shutdown((SSL *)ssl, SSL_get_shutdown(ssl) | SSL_SENT_SHUTDOWN);
}

int http_tls_new(const struct config_tls *tls, SSL_CTX **out, char **cause)
{
	static const unsigned char sid_ctx[] = "bootstrapd";
	char ciphers[1024];
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

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

static struct bufferevent *http_tls_bevcb(struct event_base *base, void *arg)
{
	SSL *ssl = SSL_new(arg);
	struct bufferevent *bev;

	if (ssl == NULL)
		return NULL;
	bev = bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
		BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (bev == NULL) {
		SSL_free(ssl);
		return NULL;
	}
	/* Devices often drop the link without close_notify; that is not an error. */
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	return bev;
}

struct evhttp *http_server_new(struct event_base *base, evutil_socket_t fd, SSL_CTX *ctx,
	const struct config *cfg, void (*cb)(struct evhttp_request *, void *), void *arg,
	struct evhttp_bound_socket **bound)
{
	struct evhttp *http = evhttp_new(base);

	if (http == NULL)
		return NULL;
	evhttp_set_timeout(http, cfg->http_timeout_s);
	evhttp_set_max_body_size(http, (ev_ssize_t)cfg->max_body_bytes);
	evhttp_set_max_headers_size(http, 16384);
	/* Every method reaches the handlers, which answer 405 where it does not fit. */
	evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
		EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH |
		EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT);
	evhttp_set_default_content_type(http, "application/json; charset=utf-8");
	evhttp_set_gencb(http, cb, arg);
	if (ctx)
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

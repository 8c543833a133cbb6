/* http: listening sockets, TLS contexts and evhttp servers, and the one way
 * answers leave the process (http_send), which also counts them. */
#ifndef BOOTSTRAPD_HTTP_H
#define BOOTSTRAPD_HTTP_H

#include <stddef.h>
#include <stdbool.h>
#include <time.h>
#include <event2/event.h>
#include <event2/http.h>
#include <openssl/ssl.h>

#include "metrics.h"

struct config;
struct config_tls;

/* Builds the server TLS context: every certificate/key pair, the minimum
 * version, cipher lists, session cache and tickets. -1 with *cause on error. */
int http_tls_new(const struct config_tls *tls, SSL_CTX **out, char **cause)
	__attribute__((warn_unused_result));

/* Binds and listens on LISTEN ("host:port", "[v6]:port"). With REUSEPORT,
 * several sockets may share the address (one per event loop). */
int http_listen(const char *listen, bool reuseport, evutil_socket_t *out, char **cause)
	__attribute__((warn_unused_result));

/* An evhttp on BASE accepting FD (which it then owns), TLS when CTX is set,
 * reading a PROXY protocol header first with PROXY_PROTOCOL, with the
 * configured body limit and timeouts; CB gets every request. */
struct evhttp *http_server_new(struct event_base *base, evutil_socket_t fd, SSL_CTX *ctx,
	bool proxy_protocol, const struct config *cfg, void (*cb)(struct evhttp_request *, void *), void *arg,
	struct evhttp_bound_socket **bound);

/* Requests started and not yet answered, over all threads (for the drain). */
long http_inflight(void);
void http_begin(void);

/* Answers REQ with STATUS and BODY (LEN bytes) of CONTENT_TYPE, with an exact
 * Content-Length, counts it under ROUTE with the time since STARTED, and ends
 * the request started with http_begin(). */
void http_send(struct evhttp_request *req, enum metrics_route route, const struct timespec *started,
	int status, const char *content_type, const char *body, size_t len);

const char *http_reason(int status);
double http_elapsed(const struct timespec *since);

/* The TCP peer's address as text (no port) into BUF. */
void http_peer(struct evhttp_request *req, char *buf, size_t len);

#endif

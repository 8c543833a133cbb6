/* http: the HTTP/1.1 server of both listeners. Listening sockets, client
 * connections on the event loop (plain or TLS, behind an optional PROXY
 * header), requests parsed in place (httpreq), a route table per listener,
 * deadlines and connection bounds, and the one way answers leave the process
 * (http_send), which also counts them. */
#ifndef BOOTSTRAPD_HTTP_H
#define BOOTSTRAPD_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#include "httpreq.h"
#include "log.h"
#include "metrics.h"
#include "netaddr.h"

struct config;
struct http_conn;
struct http_request;

#define HTTP_ID_MAX LOG_ID_MAX /* X-Request-Id: at most 64 of A-Za-z0-9._- */

/* Method bits for route tables. */
#define HTTP_M(m) (1u << (m))
#define HTTP_M_GET HTTP_M(HTTP_GET)
#define HTTP_M_POST HTTP_M(HTTP_POST)
#define HTTP_M_PUT HTTP_M(HTTP_PUT)
#define HTTP_M_DELETE HTTP_M(HTTP_DELETE)

typedef void (*http_handler)(struct http_request *req, void *ctx);

struct http_route {
	const char *path; /* the whole path, or its start when PREFIX */
	bool prefix;
	unsigned methods; /* HTTP_M bits; 0: any (the handler decides) */
	const char *allow; /* the Allow header of a 405 */
	enum metrics_route metric;
	http_handler fn;
};

/* What a listener serves: its routes, in order (the first match wins), and
 * how its errors look. ERROR answers REQ with STATUS in the listener's shape
 * (it must call http_send); it is also called for refusals found before a
 * route is known, with REQ's path NULL. */
struct http_service {
	const struct http_route *routes;
	size_t nroutes;
	enum metrics_route fallback; /* the metric of answers that match no route */
	void (*error)(struct http_request *req, int status, const char *message);
	void *ctx; /* given to every handler */
	/* NULL, or called with every answer's status as it goes (the audit log). */
	void (*answered)(struct http_request *req, int status, void *ctx);
};

/* One request being handled. Everything in it belongs to its connection and
 * stays valid until http_send; the handler must answer exactly once. */
struct http_request {
	struct httpreq r; /* method, path, query, headers, body (NUL-terminated, writable) */
	struct timespec started;
	enum metrics_route route;
	const struct http_route *matched; /* NULL before a route is known */
	const char *route_name; /* a static path template ("/v1/batches/{batchId}"), or NULL */
	char id[HTTP_ID_MAX + 1];
	void *ctx; /* the service's */
	struct http_conn *conn;
	char extra[256]; /* extra answer header lines */
	size_t extra_len;
};

/* Binds and listens on LISTEN ("host:port", "[v6]:port"). With REUSEPORT,
 * several sockets may share the address (one per event loop). */
int http_listen(const char *listen, bool reuseport, evutil_socket_t *out, char **cause)
	__attribute__((warn_unused_result));

/* A server on BASE accepting FD (which it then owns), TLS when CTX is set
 * (it takes a reference), reading a PROXY header first with PROXY_PROTOCOL, with the
 * limits of CFG (not owned; both must outlive it). NULL when out of memory. */
struct http_server *http_server_new(struct event_base *base, evutil_socket_t fd, SSL_CTX *ctx, bool proxy_protocol,
	const struct config *cfg, const struct http_service *svc);
/* New connections get CTX from now on (a reloaded certificate; the server
 * takes a reference and drops the old one, which the connections made with
 * it keep until they close). Nothing for a plain listener. */
void http_server_set_tls(struct http_server *srv, SSL_CTX *ctx);
/* The drain's grace period: keeps accepting, but closes idle connections
 * and every connection after its next answer, so that a load balancer's
 * kept-alive connections move to other replicas. */
void http_server_close_soon(struct http_server *srv);
/* Stops accepting and closes idle connections; answers from now on close
 * their connections. */
void http_server_drain(struct http_server *srv);
/* Closes every connection and the socket. Requests still in handlers must
 * have been answered (or be dropped by their handler's own teardown). */
void http_server_free(struct http_server *srv);

/* The process-wide bound on open connections (limits.max_connections, 0 =
 * 90 % of RLIMIT_NOFILE), set once before the servers start. */
void http_set_max_connections(const struct config *cfg);

/* Requests handed to handlers and not yet answered, over all threads. */
long http_inflight(void);

/* The first header named NAME (case-insensitive), or NULL. */
const char *http_header(const struct http_request *req, const char *name);
/* Adds "NAME: VALUE" to the answer. -1 when there is no room. */
int http_add_header(struct http_request *req, const char *name, const char *value);

/* Answers REQ with STATUS and BODY (LEN bytes) of CONTENT_TYPE, with an
 * exact Content-Length, counts it under REQ's route with its duration, and
 * ends the request: REQ must not be used afterwards. */
void http_send(struct http_request *req, int status, const char *content_type, const char *body, size_t len);

/* The connection's peer: the PROXY header's source when it named one, else
 * the TCP peer. */
void http_peer(const struct http_request *req, struct netaddr *out);

/* REQ's route as a path template: the handler's route_name, the matched
 * whole path, or "-" (no route, or a prefix the handler did not name). */
const char *http_route_name(const struct http_request *req);

const char *http_reason(int status);
double http_elapsed(const struct timespec *since);

#endif

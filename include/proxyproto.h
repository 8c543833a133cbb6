/* proxyproto: the PROXY protocol (v1 text, v2 binary) that load balancers
 * put in front of a connection to say who the client is, on listeners with
 * "proxy_protocol": true. The parser is pure; proxyproto_bufferevent_new puts
 * a filter under evhttp (and under TLS) that reads and strips the header, and
 * closes the connection when it is malformed or does not come in time. */
#ifndef BOOTSTRAPD_PROXYPROTO_H
#define BOOTSTRAPD_PROXYPROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <event2/bufferevent.h>

#include "netaddr.h"

#define PROXYPROTO_V1_MAX 107 /* the longest v1 line, CRLF included */
#define PROXYPROTO_V2_MAX 4096 /* the longest v2 header accepted, TLVs included */

/* Parses the header at the start of BUF (LEN bytes). Returns its length
 * (> 0), setting *HAS_ADDR and, when true, *SRC (the client); false means a
 * LOCAL (v2) or UNKNOWN (v1) header: the connection speaks for itself. Returns
 * 0 when more bytes are needed, -1 when it is not a valid PROXY header. */
int proxyproto_parse(const unsigned char *buf, size_t len, struct netaddr *src, bool *has_addr)
	__attribute__((warn_unused_result));

/* A bufferevent for an accepted plain connection on BASE (fd set later by
 * evhttp's bufferevent_setfd, which reaches the socket under it) that
 * consumes the PROXY header before passing bytes up; a malformed header is
 * reported as an error event. Its write callback runs once output is in the
 * kernel, as evhttp needs. The caller owns it; freeing it closes the
 * socket. NULL when out of memory. */
struct bufferevent *proxyproto_bufferevent_new(struct event_base *base);

/* The PROXY state of one connection whose header some other layer reads
 * (on TLS listeners, a BIO under OpenSSL: see http.c), registered under BEV
 * (not owned) for proxyproto_client. NULL when out of memory. Free it, with
 * proxyproto_conn_free (NULL is fine), before BEV's memory goes. */
struct proxyproto_conn;
struct proxyproto_conn *proxyproto_conn_new(struct bufferevent *bev);
void proxyproto_conn_free(struct proxyproto_conn *c);

#define PROXYPROTO_BAD (-2)

/* Reads the connection's bytes after the header into BUF (LEN > 0 bytes),
 * fetching them with READ(ARG, buf, len), which returns like read(2) (< 0
 * for would-block and errors alike). Returns n > 0, or READ's own 0 or < 0
 * when it has nothing to give, or PROXYPROTO_BAD when the header is
 * malformed (every later call too). */
int proxyproto_conn_read(struct proxyproto_conn *c, unsigned char *buf, int len,
	int (*read)(void *arg, unsigned char *buf, int len), void *arg);
/* Bytes read past the header and not yet returned. */
size_t proxyproto_conn_pending(const struct proxyproto_conn *c);
/* True once the header was read and was good. */
bool proxyproto_conn_passing(const struct proxyproto_conn *c);

/* The client that BEV's connection speaks for, when BEV is (or sits on) a
 * proxyproto bufferevent whose header named one; false otherwise (LOCAL,
 * UNKNOWN, or no PROXY layer). Call on BEV's event loop thread. */
bool proxyproto_client(struct bufferevent *bev, struct netaddr *out);

#endif

/* proxyproto: the PROXY protocol (v1 text, v2 binary) that load balancers
 * put in front of a connection to say who the client is, on listeners with
 * "proxy_protocol": true. The parser is pure; a proxyproto_conn reads a
 * connection's bytes, takes the header off and remembers its client. */
#ifndef BOOTSTRAPD_PROXYPROTO_H
#define BOOTSTRAPD_PROXYPROTO_H

#include <stdbool.h>
#include <stddef.h>

#include "netaddr.h"

#define PROXYPROTO_V1_MAX 107 /* the longest v1 line, CRLF included */
#define PROXYPROTO_V2_MAX 4096 /* the longest v2 header accepted, TLVs included */

/* Parses the header at the start of BUF (LEN bytes). Returns its length
 * (> 0), setting *HAS_ADDR and, when true, *SRC (the client); false means a
 * LOCAL (v2) or UNKNOWN (v1) header: the connection speaks for itself. Returns
 * 0 when more bytes are needed, -1 when it is not a valid PROXY header. */
int proxyproto_parse(const unsigned char *buf, size_t len, struct netaddr *src, bool *has_addr)
	__attribute__((warn_unused_result));

/* The PROXY state of one connection: the HTTP layer reads the connection's
 * bytes through it (plain listeners directly, TLS ones from a BIO under
 * OpenSSL). NULL when out of memory; proxyproto_conn_free accepts NULL. */
struct proxyproto_conn;
struct proxyproto_conn *proxyproto_conn_new(void);
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

/* The client that C's header named; false before a good header, and for
 * LOCAL (v2) and UNKNOWN (v1) headers. */
bool proxyproto_conn_client(const struct proxyproto_conn *c, struct netaddr *out);

#endif

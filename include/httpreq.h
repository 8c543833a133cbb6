/* httpreq: one HTTP/1.1 request parsed in place, incrementally, with
 * http-parser. Pure: the caller owns the bytes and feeds them as they arrive;
 * the parsed request points into them. Every way a request can be refused
 * before a route is known is decided here, as an HTTP status. */
#ifndef BOOTSTRAPD_HTTPREQ_H
#define BOOTSTRAPD_HTTPREQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <http_parser.h>

#define HTTPREQ_HEADERS_MAX 48

struct httpreq_limits {
	size_t max_header_bytes; /* request line and headers */
	size_t max_body_bytes;
};

struct httpreq_span {
	uint32_t off, len; /* from the start of the request's bytes */
};

struct httpreq_header {
	const char *name; /* NUL-terminated in place */
	const char *value; /* likewise; surrounding blanks removed */
	size_t value_len;
};

/* The request once complete. Every pointer is into the caller's buffer. */
struct httpreq {
	enum http_method method;
	unsigned char major, minor;
	bool keep_alive;      /* HTTP/1.1 without "close", or 1.0 with "keep-alive" */
	bool expect_continue; /* "Expect: 100-continue" */
	char *path;           /* NUL-terminated, not decoded */
	char *query;          /* after '?', NUL-terminated; NULL when absent */
	size_t query_len;
	char *body;           /* not NUL-terminated; NULL when empty */
	size_t body_len;
	struct httpreq_header headers[HTTPREQ_HEADERS_MAX];
	size_t nheaders;
};

/* One request's parse state; reset with httpreq_parser_init for each. */
struct httpreq_parser {
	http_parser p;
	struct httpreq_limits limits;
	char *base;     /* the buffer of the call in progress */
	size_t fed;     /* bytes of the buffer the parser has consumed */
	bool head_done; /* headers complete */
	bool done;      /* message complete */
	bool in_value;  /* the last header callback was a value */
	bool too_many;  /* a header past HTTPREQ_HEADERS_MAX: 431 once the head is read */
	int paused;     /* why a callback paused http-parser: HTTPREQ_AT_* */
	uint32_t head_len; /* request line, headers and the blank line */
	uint32_t data_end; /* where the last chunk's data ended */
	int status;     /* a refusal decided in a callback */
	uint32_t fault_at; /* where a callback's refusal became knowable, 0 if none */
	struct httpreq_span url;
	size_t nheaders;
	uint32_t body_off, body_len; /* the body, compacted in place when chunked */
	/* Last: not cleared by httpreq_parser_init (nheaders says what is set). */
	struct httpreq_span names[HTTPREQ_HEADERS_MAX], values[HTTPREQ_HEADERS_MAX];
};

enum {
	HTTPREQ_MORE = 0, /* a request is not complete yet: feed more bytes */
	HTTPREQ_DONE = 1, /* complete: *used bytes are this request's */
};

void httpreq_parser_init(struct httpreq_parser *ps, const struct httpreq_limits *limits);

/* Parses BUF[0..LEN), the bytes of this request since its first (BUF may
 * have moved since the last call, and only the bytes after those already
 * seen are new). Returns HTTPREQ_MORE, HTTPREQ_DONE with *USED and OUT
 * filled (BUF modified in place), or an HTTP status >= 400 when the request
 * is refused: 400 malformed or smuggling shapes, 405 unknown or lower-case
 * method, 413 body over the limit (known from Content-Length before the body
 * arrives), 431 head over the limit. After a refusal the connection must be
 * closed: what follows cannot be framed. */
int httpreq_parse(struct httpreq_parser *ps, char *buf, size_t len, size_t *used, struct httpreq *out)
	__attribute__((warn_unused_result));

/* True once the headers are complete and the body, if any, is still to
 * come: where "100 Continue" is answered. */
bool httpreq_awaiting_body(const struct httpreq_parser *ps);
/* After the headers: "Expect: 100-continue" was sent. */
bool httpreq_expects_continue(const struct httpreq_parser *ps, const char *buf);

/* The first header named NAME (case-insensitive), or NULL. */
const char *httpreq_header(const struct httpreq *req, const char *name);

#endif

#include "httpreq.h"

#include <string.h>
#include <strings.h>

/* http-parser reports where things are through callbacks; this keeps them as
 * offsets (the buffer may move between calls) and decides the refusals that
 * http-parser leaves to its user: header names that are not tokens, obs-fold
 * lines, the sizes, the HTTP version. http-parser itself refuses two
 * Content-Length headers, Content-Length beside Transfer-Encoding, NUL and
 * bare CR in a header. */

static struct httpreq_parser *httpreq_of(http_parser *p)
{
	return p->data;
}

static uint32_t httpreq_off(const struct httpreq_parser *ps, const char *at)
{
	return (uint32_t)(at - ps->base);
}

/* Extends SPAN with the bytes AT[0..N): a piece that is not contiguous with
 * what came before can only be an obs-fold continuation line. */
static int httpreq_extend(struct httpreq_parser *ps, struct httpreq_span *span, bool fresh, const char *at,
	size_t n)
{
	if (fresh) {
		span->off = httpreq_off(ps, at);
		span->len = (uint32_t)n;
		return 0;
	}
	if (span->off + span->len != httpreq_off(ps, at)) {
		ps->status = 400;
		ps->fault_at = httpreq_off(ps, at);
		return -1;
	}
	span->len += (uint32_t)n;
	return 0;
}

static int httpreq_on_url(http_parser *p, const char *at, size_t n)
{
	struct httpreq_parser *ps = httpreq_of(p);

	return httpreq_extend(ps, &ps->url, ps->url.len == 0, at, n);
}

enum { HTTPREQ_AT_HEAD = 1, HTTPREQ_AT_CHUNK_LINE, HTTPREQ_AT_CHUNK_END };

static int httpreq_on_field(http_parser *p, const char *at, size_t n)
{
	struct httpreq_parser *ps = httpreq_of(p);
	bool fresh = ps->nheaders == 0 || ps->in_value;

	if (ps->head_done)
		return 0; /* trailers are not headers */
	if (ps->too_many)
		return 0;

	if (fresh) {
		/* Refused once the head is read: a name cut by the end of the
		 * bytes so far must not decide before a whole one would (a bad
		 * byte in it is a 400 first). */
		if (ps->nheaders == HTTPREQ_HEADERS_MAX) {
			ps->too_many = true;
			return 0;
		}
		ps->values[ps->nheaders].off = 0;
		ps->values[ps->nheaders].len = 0;
		ps->nheaders++;
		ps->in_value = false;
	}
	return httpreq_extend(ps, &ps->names[ps->nheaders - 1], fresh, at, n);
}

static int httpreq_on_value(http_parser *p, const char *at, size_t n)
{
	struct httpreq_parser *ps = httpreq_of(p);
	bool fresh = !ps->in_value;

	if (ps->head_done || ps->too_many)
		return 0;
	if (fresh && n > 0) {
		const struct httpreq_span *name = &ps->names[ps->nheaders - 1];

		/* Only blanks between the colon and the value: else a fold. */
		for (const char *q = ps->base + name->off + name->len + 1; q < at; q++)
			if (*q != ' ' && *q != '\t') {
				ps->status = 400;
				ps->fault_at = httpreq_off(ps, at);
				return -1;
			}
	}
	ps->in_value = true;
	return httpreq_extend(ps, &ps->values[ps->nheaders - 1], fresh, at, n);
}

static int httpreq_on_headers_complete(http_parser *p)
{
	struct httpreq_parser *ps = httpreq_of(p);

	/* Checked in httpreq_check, in the order a trickled head meets them. */
	ps->head_done = true;
	ps->paused = HTTPREQ_AT_HEAD;
	http_parser_pause(p, 1);
	return 0;
}

static int httpreq_on_chunk_header(http_parser *p)
{
	httpreq_of(p)->paused = HTTPREQ_AT_CHUNK_LINE;
	http_parser_pause(p, 1);
	return 0;
}

static int httpreq_on_chunk_complete(http_parser *p)
{
	if (p->flags & F_TRAILING)
		return 0; /* the last chunk: checked with the message's end */
	httpreq_of(p)->paused = HTTPREQ_AT_CHUNK_END;
	http_parser_pause(p, 1);
	return 0;
}

static int httpreq_on_body(http_parser *p, const char *at, size_t n)
{
	struct httpreq_parser *ps = httpreq_of(p);
	uint32_t off = httpreq_off(ps, at);

	if (ps->body_len == 0 && ps->body_off == 0)
		ps->body_off = off;
	if ((size_t)ps->body_len + n > ps->limits.max_body_bytes) {
		ps->status = 413;
		return -1;
	}
	/* A chunked body is gathered in place: each piece moves back over the
	 * chunk lines already read, never over bytes still to be parsed. */
	if (ps->body_off + ps->body_len != off)
		memmove(ps->base + ps->body_off + ps->body_len, at, n);
	ps->body_len += (uint32_t)n;
	ps->data_end = off + (uint32_t)n;
	return 0;
}

static int httpreq_on_complete(http_parser *p)
{
	struct httpreq_parser *ps = httpreq_of(p);

	ps->done = true;
	/* One request a call: what follows is the next pipelined request. */
	http_parser_pause(p, 1);
	return 0;
}

static const http_parser_settings httpreq_settings = {
	.on_url = httpreq_on_url,
	.on_header_field = httpreq_on_field,
	.on_header_value = httpreq_on_value,
	.on_headers_complete = httpreq_on_headers_complete,
	.on_body = httpreq_on_body,
	.on_message_complete = httpreq_on_complete,
	.on_chunk_header = httpreq_on_chunk_header,
	.on_chunk_complete = httpreq_on_chunk_complete,
};

void httpreq_parser_init(struct httpreq_parser *ps, const struct httpreq_limits *limits)
{
	memset(ps, 0, offsetof(struct httpreq_parser, names));
	ps->limits = *limits;
	http_parser_init(&ps->p, HTTP_REQUEST);
	ps->p.data = ps;
}

/* RFC 9110 token characters, as a table: every header name byte is looked up. */
static const bool httpreq_tchars[256] = {
	['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1, ['+'] = 1, ['-'] = 1,
	['.'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1, ['~'] = 1,
	['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1,
	['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1, ['H'] = 1, ['I'] = 1, ['J'] = 1,
	['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1,
	['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1, ['Y'] = 1, ['Z'] = 1,
	['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1,
	['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1,
	['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1,
};

static bool httpreq_tchar(unsigned char c)
{
	return httpreq_tchars[c];
}

/* http-parser says "invalid method" for a bad first token and for a request
 * line that ends early ("GET\r\n"). A token of up to 24 letters followed by
 * a blank is a method we do not know (405); the rest is malformed (400).
 * Until the byte after the letters has come, that is not known yet. */
static int httpreq_method_error(const char *buf, size_t len)
{
	size_t i;

	for (i = 0; i < len && i < 24 && ((buf[i] >= 'A' && buf[i] <= 'Z') || (buf[i] >= 'a' && buf[i] <= 'z')); i++)
		;
	if (i == len)
		return HTTPREQ_MORE;
	return i > 0 && i < len && buf[i] == ' ' ? 405 : 400;
}

static int httpreq_status(const struct httpreq_parser *ps, const char *buf, size_t len)
{
	if (ps->status)
		return ps->status;
	switch (HTTP_PARSER_ERRNO(&ps->p)) {
	case HPE_INVALID_METHOD:
		return httpreq_method_error(buf, len);
	case HPE_HEADER_OVERFLOW:
		return 431;
	default:
		return 400;
	}
}

/* Trims blanks around a header value in place. */
static char *httpreq_trim(char *v, size_t *len)
{
	while (*len && (v[0] == ' ' || v[0] == '\t')) {
		v++;
		(*len)--;
	}
	while (*len && (v[*len - 1] == ' ' || v[*len - 1] == '\t'))
		(*len)--;
	return v;
}

static int httpreq_finish(struct httpreq_parser *ps, char *buf, struct httpreq *out)
{
	char *url = buf + ps->url.off, *q;

	memset(out, 0, offsetof(struct httpreq, headers));
	out->method = (enum http_method)ps->p.method;
	out->major = (unsigned char)ps->p.http_major;
	out->minor = (unsigned char)ps->p.http_minor;
	out->keep_alive = http_should_keep_alive(&ps->p) != 0;
	if (ps->url.len == 0 || url[0] != '/')
		return 400;
	/* Every span below is followed by a byte the parser has passed (a blank,
	 * ':' or a line end), which becomes its NUL. */
	url[ps->url.len] = '\0';
	out->path = url;
	q = memchr(url, '?', ps->url.len);
	if (q) {
		*q = '\0';
		out->query = q + 1;
		out->query_len = (size_t)(url + ps->url.len - out->query);
	}
	for (size_t i = 0; i < ps->nheaders; i++) {
		char *name = buf + ps->names[i].off;
		size_t vlen = ps->values[i].len;
		char *value = buf + ps->values[i].off;

		if (ps->names[i].len == 0)
			return 400;
		for (size_t k = 0; k < ps->names[i].len; k++)
			if (!httpreq_tchar((unsigned char)name[k]))
				return 400;
		name[ps->names[i].len] = '\0';
		if (vlen) {
			value = httpreq_trim(value, &vlen);
			value[vlen] = '\0';
		} else {
			value = (char *)"";
		}
		out->headers[i].name = name;
		out->headers[i].value = value;
		out->headers[i].value_len = vlen;
		if (ps->names[i].len == 6 && strcasecmp(name, "Expect") == 0 && strcasecmp(value, "100-continue") == 0 &&
		    !(out->major == 1 && out->minor == 0))
			out->expect_continue = true;
	}
	out->nheaders = ps->nheaders;
	if (ps->body_len) {
		out->body = buf + ps->body_off;
		out->body_len = ps->body_len;
	}
	return 0;
}

static bool httpreq_crlf(const char *buf, size_t end)
{
	return end >= 2 && buf[end - 2] == '\r' && buf[end - 1] == '\n';
}

/* The checks http-parser built without HTTP_PARSER_STRICT leaves out, where
 * a callback paused it. 0 or a status. */
static int httpreq_check(struct httpreq_parser *ps, const char *buf)
{
	const char *v;

	switch (ps->paused) {
	case HTTPREQ_AT_HEAD:
		/* Paused on the head's last LF, not yet consumed. */
		ps->head_len = (uint32_t)ps->fed + 1;
		if (ps->head_len > ps->limits.max_header_bytes || ps->too_many)
			return 431;
		for (size_t i = 0; i < ps->head_len; i++) {
			unsigned char c = (unsigned char)buf[i];

			if (c == '\r' ? i + 1 == ps->head_len || buf[i + 1] != '\n' :
					 (c < 0x20 && c != '\t' && c != '\n') || c == 0x7f)
				return 400;
		}
		v = buf + ps->url.off + ps->url.len;
		if (ps->url.off + ps->url.len + 6 > ps->head_len || memcmp(v, " HTTP/", 6) != 0 ||
		    ps->p.http_major != 1)
			return 400;
		if ((ps->p.flags & F_CONTENTLENGTH) && ps->p.content_length > ps->limits.max_body_bytes)
			return 413;
		return 0;
	case HTTPREQ_AT_CHUNK_LINE:
		return httpreq_crlf(buf, ps->fed) ? 0 : 400;
	case HTTPREQ_AT_CHUNK_END:
		return httpreq_crlf(buf, ps->fed) && ps->data_end + 2 == ps->fed ? 0 : 400;
	}
	return 0;
}

int httpreq_parse(struct httpreq_parser *ps, char *buf, size_t len, size_t *used, struct httpreq *out)
{
	size_t n;
	int rc;

	if (ps->status)
		return ps->status;
	if (HTTP_PARSER_ERRNO(&ps->p) == HPE_INVALID_METHOD)
		return httpreq_method_error(buf, len);
	ps->base = buf;
	/* http-parser takes no bytes for the end of the stream. */
	while (ps->fed < len) {
		n = http_parser_execute(&ps->p, &httpreq_settings, buf + ps->fed, len - ps->fed);
		ps->fed += n;
		if (ps->done || HTTP_PARSER_ERRNO(&ps->p) != HPE_PAUSED)
			break;
		rc = httpreq_check(ps, buf);
		if (rc)
			return ps->status = rc;
		ps->paused = 0;
		http_parser_pause(&ps->p, 0);
	}
	/* A fold is seen at the first byte of what follows it (AT in the
	 * callback): 431 when the limit was passed before that byte, as when
	 * the bytes come one by one. */
	if (ps->status == 400 && ps->fault_at)
		return ps->status = ps->fault_at + 1 > ps->limits.max_header_bytes ? 431 : 400;
	/* A head past its limit is 431 whatever follows, however it arrives. */
	if (!ps->head_done && ps->fed > ps->limits.max_header_bytes)
		return ps->status = 431;
	if (!ps->done && HTTP_PARSER_ERRNO(&ps->p) != HPE_OK)
		return httpreq_status(ps, buf, len);
	if (ps->done && (ps->p.flags & F_CHUNKED) && buf[ps->fed - 1] != '\n')
		return ps->status = 400;
	if ((ps->head_done ? ps->head_len : ps->fed) > ps->limits.max_header_bytes)
		return ps->status = 431;
	if (!ps->done)
		return HTTPREQ_MORE;
	rc = httpreq_finish(ps, buf, out);
	if (rc)
		return ps->status = rc;
	*used = ps->fed;
	return HTTPREQ_DONE;
}

bool httpreq_awaiting_body(const struct httpreq_parser *ps)
{
	return ps->head_done && !ps->done && ps->status == 0;
}

bool httpreq_expects_continue(const struct httpreq_parser *ps, const char *buf)
{
	/* RFC 9110 10.1.1: ignored in an HTTP/1.0 request. */
	if (ps->p.http_major == 1 && ps->p.http_minor == 0)
		return false;
	for (size_t i = 0; i < ps->nheaders; i++) {
		const char *v = buf + ps->values[i].off;
		size_t vl = ps->values[i].len;

		while (vl && (*v == ' ' || *v == '\t')) {
			v++;
			vl--;
		}
		while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
			vl--;
		if (ps->names[i].len == 6 && strncasecmp(buf + ps->names[i].off, "Expect", 6) == 0 && vl == 12 &&
		    strncasecmp(v, "100-continue", 12) == 0)
			return true;
	}
	return false;
}

const char *httpreq_header(const struct httpreq *req, const char *name)
{
	for (size_t i = 0; i < req->nheaders; i++)
		if (strcasecmp(req->headers[i].name, name) == 0)
			return req->headers[i].value;
	return NULL;
}

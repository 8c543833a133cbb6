/* httpreq_parse, the HTTP request parser, fed the input whole and then in
 * growing pieces (as a connection's bytes arrive, into a buffer that moves):
 * both must come to the same outcome, and a parsed request must point inside
 * its bytes. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "httpreq.h"

static int parse(const uint8_t *data, size_t size, size_t step, size_t *used, struct httpreq *out)
{
	static const struct httpreq_limits limits = { 1024, 4096 };
	struct httpreq_parser ps;
	char *buf = NULL;
	size_t len = 0;
	int rc = HTTPREQ_MORE;

	httpreq_parser_init(&ps, &limits);
	while (rc == HTTPREQ_MORE && len < size) {
		size_t n = size - len < step ? size - len : step;
		/* A fresh copy each time: the connection may move its buffer. */
		char *moved = malloc(len + n + 1);
		if (moved == NULL)
			abort();
		if (len)
			memcpy(moved, buf, len);
		memcpy(moved + len, data + len, n);
		free(buf);
		buf = moved;
		len += n;
		rc = httpreq_parse(&ps, buf, len, used, out);
		if (rc == HTTPREQ_DONE) {
			if (*used > len || strlen(out->path) > len || (out->body && out->body + out->body_len > buf + len))
				abort();
			for (size_t i = 0; i < out->nheaders; i++)
				if (out->headers[i].name < buf || out->headers[i].name >= buf + len)
					abort();
		}
	}
	free(buf);
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct httpreq out;
	size_t used_whole = 0, used_steps = 0;
	int whole = parse(data, size, size ? size : 1, &used_whole, &out);
	int steps = parse(data, size, 1 + (size ? data[0] % 7 : 0), &used_steps, &out);

	if (whole != steps || (whole == HTTPREQ_DONE && used_whole != used_steps))
		abort();
	return 0;
}

/* proxyproto_parse, the PROXY v1/v2 header parser, and the same bytes
 * through proxyproto_conn_read in chunks (the TLS listeners' path), which
 * must agree with it. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "fuzz.h"
#include "proxyproto.h"

/* Gives the input in chunks of 1..64 bytes (sizes taken from the input's
 * own bytes), would-block every third call. */
struct source {
	const uint8_t *data;
	size_t len, pos;
	unsigned calls;
};

static int source_read(void *arg, unsigned char *buf, int len)
{
	struct source *s = arg;
	size_t n = s->len - s->pos;

	if (++s->calls % 3 == 0)
		return -1;
	if (n == 0)
		return 0;
	if (n > 1 + (size_t)(s->data[s->calls % s->len] & 63))
		n = 1 + (size_t)(s->data[s->calls % s->len] & 63);
	if (n > (size_t)len)
		n = (size_t)len;
	memcpy(buf, s->data + s->pos, n);
	s->pos += n;
	return (int)n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned char *buf = malloc(size ? size : 1), out[300];
	struct netaddr src, again;
	bool has = false, has2 = false;
	int n, m;

	if (size)
		memcpy(buf, data, size);
	n = proxyproto_parse(buf, size, &src, &has);
	fuzz_assert(n >= -1 && (n <= 0 || (size_t)n <= size));
	if (n > 0) {
		if (has)
			fuzz_assert(src.family == AF_INET || src.family == AF_INET6);
		/* A header does not depend on what follows it, and any part of it
		 * asks for more. */
		fuzz_assert(proxyproto_parse(buf, (size_t)n, &again, &has2) == n && has2 == has);
		if (has)
			fuzz_assert(memcmp(&again, &src, sizeof(src)) == 0);
		fuzz_assert(proxyproto_parse(buf, (size_t)n - 1, &again, &has2) == 0);
		fuzz_assert(proxyproto_parse(buf, (size_t)n / 2, &again, &has2) == 0);
	}

	if (size > 0) {
		struct source s = { .data = buf, .len = size };
		struct proxyproto_conn *c = proxyproto_conn_new();
		size_t got = 0;
		int rc = 0;

		if (c == NULL)
			abort();
		for (int i = 0; i < 100000; i++) {
			m = proxyproto_conn_read(c, out, (int)sizeof(out), source_read, &s);
			if (m == PROXYPROTO_BAD || m == 0) {
				rc = m;
				break;
			}
			if (m > 0) {
				/* What follows the header, byte for byte. */
				fuzz_assert(n > 0 && (size_t)n + got + (size_t)m <= size);
				fuzz_assert(memcmp(out, buf + n + got, (size_t)m) == 0);
				got += (size_t)m;
			}
		}
		if (n < 0) {
			fuzz_assert(rc == PROXYPROTO_BAD && !proxyproto_conn_passing(c));
		} else if (n == 0) {
			fuzz_assert(rc == 0 && !proxyproto_conn_passing(c));
		} else {
			fuzz_assert(rc == 0 && proxyproto_conn_passing(c) && (size_t)n + got == size);
			fuzz_assert(proxyproto_conn_client(c, &again) == has);
			if (has)
				fuzz_assert(memcmp(&again, &src, sizeof(src)) == 0);
		}
		proxyproto_conn_free(c);
	}
	free(buf);
	return 0;
}

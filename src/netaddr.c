#include "netaddr.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int netaddr_parse(const char *s, size_t len, struct netaddr *out)
{
	char buf[NETADDR_TEXT_MAX + 8];
	const char *end;

	while (len && (*s == ' ' || *s == '\t')) {
		s++;
		len--;
	}
	while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
		len--;
	if (len == 0 || len >= sizeof(buf))
		return -1;
	if (s[0] == '[') {
		/* "[v6]" or "[v6]:port" */
		end = memchr(s, ']', len);
		if (end == NULL || (end + 1 != s + len && end[1] != ':'))
			return -1;
		len = (size_t)(end - s - 1);
		s++;
	} else if ((end = memchr(s, ':', len)) != NULL && memchr(end + 1, ':', len - (size_t)(end + 1 - s)) == NULL) {
		/* One colon: "v4:port". */
		len = (size_t)(end - s);
	}
	memcpy(buf, s, len);
	buf[len] = '\0';
	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET, buf, out->bytes) == 1) {
		out->family = AF_INET;
		return 0;
	}
	if (inet_pton(AF_INET6, buf, out->bytes) == 1) {
		static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
		out->family = AF_INET6;
		if (memcmp(out->bytes, mapped, sizeof(mapped)) == 0) {
			memmove(out->bytes, out->bytes + 12, 4);
			memset(out->bytes + 4, 0, 12);
			out->family = AF_INET;
		}
		return 0;
	}
	return -1;
}

void netaddr_format(const struct netaddr *a, char out[NETADDR_TEXT_MAX])
{
	if (inet_ntop(a->family, a->bytes, out, NETADDR_TEXT_MAX) == NULL)
		out[0] = '\0';
}

int netaddr_list_parse(char *const *cidrs, size_t n, struct netaddr_list *out, char **cause)
{
	out->items = n ? calloc(n, sizeof(*out->items)) : NULL;
	out->n = 0;
	if (n && out->items == NULL) {
		*cause = strdup("out of memory");
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		const char *slash = strchr(cidrs[i], '/');
		size_t alen = slash ? (size_t)(slash - cidrs[i]) : strlen(cidrs[i]);
		struct netaddr_cidr *c = &out->items[i];
		char *endp;
		long prefix;

		if (netaddr_parse(cidrs[i], alen, &c->addr) < 0)
			goto bad;
		prefix = c->addr.family == AF_INET ? 32 : 128;
		if (slash) {
			prefix = strtol(slash + 1, &endp, 10);
			if (slash[1] == '\0' || *endp || prefix < 0 || prefix > (c->addr.family == AF_INET ? 32 : 128))
				goto bad;
		}
		c->prefix = (int)prefix;
		out->n++;
		continue;
bad:
		if (asprintf(cause, "trusted_proxies[%zu]: \"%s\" is not an address or CIDR", i, cidrs[i]) < 0)
			*cause = NULL;
		netaddr_list_clear(out);
		return -1;
	}
	return 0;
}

void netaddr_list_clear(struct netaddr_list *list)
{
	free(list->items);
	list->items = NULL;
	list->n = 0;
}

static bool netaddr_in(const struct netaddr_cidr *c, const struct netaddr *a)
{
	int full = c->prefix / 8, rest = c->prefix % 8;

	if (c->addr.family != a->family)
		return false;
	if (memcmp(c->addr.bytes, a->bytes, (size_t)full) != 0)
		return false;
	if (rest == 0)
		return true;
	unsigned char mask = (unsigned char)(0xff << (8 - rest));
	return (c->addr.bytes[full] & mask) == (a->bytes[full] & mask);
}

bool netaddr_list_contains(const struct netaddr_list *list, const struct netaddr *a)
{
	for (size_t i = 0; i < list->n; i++)
		if (netaddr_in(&list->items[i], a))
			return true;
	return false;
}

/* Finds the "for=" value of one Forwarded element (S, LEN bytes). */
static bool netaddr_forwarded_for(const char *s, size_t len, const char **v, size_t *vlen)
{
	size_t i = 0;

	while (i < len) {
		size_t start, end;
		while (i < len && (s[i] == ' ' || s[i] == ';'))
			i++;
		start = i;
		while (i < len && s[i] != ';')
			i++;
		end = i;
		if (end - start > 4 && strncasecmp(s + start, "for=", 4) == 0) {
			*v = s + start + 4;
			*vlen = end - start - 4;
			while (*vlen && ((*v)[*vlen - 1] == ' '))
				(*vlen)--;
			if (*vlen >= 2 && (*v)[0] == '"' && (*v)[*vlen - 1] == '"') {
				(*v)++;
				*vlen -= 2;
			}
			return true;
		}
	}
	return false;
}

void netaddr_client(const struct netaddr *peer, const char *xff, const char *forwarded,
	const struct netaddr_list *trusted, struct netaddr *out)
{
	const char *list = xff ? xff : forwarded;
	size_t end;

	*out = *peer;
	if (list == NULL || !netaddr_list_contains(trusted, peer))
		return;
	/* Walk right to left while the hops are trusted proxies. */
	end = strlen(list);
	while (end > 0) {
		size_t start = end;
		struct netaddr a;
		const char *v;
		size_t vlen;

		while (start > 0 && list[start - 1] != ',')
			start--;
		v = list + start;
		vlen = end - start;
		if (list == forwarded && !netaddr_forwarded_for(v, vlen, &v, &vlen))
			return;
		if (netaddr_parse(v, vlen, &a) < 0)
			return;
		*out = a;
		if (!netaddr_list_contains(trusted, &a))
			return;
		end = start ? start - 1 : 0;
	}
}

bool netaddr_split_hostport(const char *node, char *host, size_t cap, int *port)
{
	const char *colon = strrchr(node, ':');
	const char *h = node;
	size_t hl;

	if (colon == NULL)
		return false;
	hl = (size_t)(colon - node);
	if (node[0] == '[' && hl >= 2 && node[hl - 1] == ']') {
		h++;
		hl -= 2;
	}
	if (hl == 0 || hl >= cap)
		return false;
	memcpy(host, h, hl);
	host[hl] = '\0';
	*port = atoi(colon + 1);
	return *port > 0 && *port < 65536;
}

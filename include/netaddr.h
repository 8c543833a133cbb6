/* netaddr: client addresses (SPEC §6). CIDR lists, and the address a request
 * speaks for: the TCP peer, or, when the peer is a trusted proxy, the
 * right-most untrusted address of X-Forwarded-For or Forwarded. Pure. */
#ifndef BOOTSTRAPD_NETADDR_H
#define BOOTSTRAPD_NETADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <netinet/in.h>

#define NETADDR_TEXT_MAX 46 /* INET6_ADDRSTRLEN */

struct netaddr {
	int family; /* AF_INET or AF_INET6 */
	unsigned char bytes[16];
};

struct netaddr_cidr {
	struct netaddr addr;
	int prefix;
};

struct netaddr_list {
	struct netaddr_cidr *items;
	size_t n;
};

/* Parses an address ("1.2.3.4", "::1", "[::1]", "1.2.3.4:5678", "[::1]:80").
 * An IPv4-mapped IPv6 address becomes IPv4. Returns 0 or -1. */
int netaddr_parse(const char *s, size_t len, struct netaddr *out) __attribute__((warn_unused_result));
void netaddr_format(const struct netaddr *a, char out[NETADDR_TEXT_MAX]);

/* Splits a node address "host:port" or "[v6]:port" into HOST (CAP bytes
 * with its NUL) and *PORT (1..65535). False when it is not one. */
bool netaddr_split_hostport(const char *node, char *host, size_t cap, int *port);

/* Parses N CIDR strings ("10.0.0.0/8", "::1/128", a bare address). On error
 * returns -1 with *cause naming the entry. Free with netaddr_list_clear. */
int netaddr_list_parse(char *const *cidrs, size_t n, struct netaddr_list *out, char **cause)
	__attribute__((warn_unused_result));
void netaddr_list_clear(struct netaddr_list *list);
bool netaddr_list_contains(const struct netaddr_list *list, const struct netaddr *a);

/* The client address for a request from PEER with the given header values
 * (either may be NULL). X-Forwarded-For is used when present, else
 * Forwarded. Unparsable entries end the walk at the last good address. */
void netaddr_client(const struct netaddr *peer, const char *xff, const char *forwarded,
	const struct netaddr_list *trusted, struct netaddr *out);

#endif

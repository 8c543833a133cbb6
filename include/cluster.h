/* cluster: Redis Cluster routing (https://redis.io/docs/reference/cluster-spec/).
 * Key slots with hash tags, which argument of a command routes it, MOVED and
 * ASK redirects, and the slot map built from CLUSTER SLOTS and kept up to
 * date by MOVED answers. Pure: the store does the I/O and owns one map per
 * event loop; nothing here locks. */
#ifndef BOOTSTRAPD_CLUSTER_H
#define BOOTSTRAPD_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <hiredis/hiredis.h>

#define CLUSTER_SLOTS 16384
/* The longest host name or address of a node (DNS allows 253). */
#define CLUSTER_HOST_MAX 255

/* CRC16-CCITT (XMODEM: polynomial 0x1021, initial value 0, no reflection),
 * the spec's key hash: "123456789" gives 0x31C3. */
uint16_t cluster_crc16(const void *buf, size_t len);

/* The slot of KEY (LEN bytes, any bytes): CRC16 mod 16384 of the whole key,
 * or of the text between the first '{' and the first '}' after it when that
 * text is not empty (a hash tag). */
unsigned cluster_key_slot(const char *key, size_t len);

/* The argument that routes a command: ARGV[i] of ARGVLEN[i] bytes (ARGVLEN
 * NULL: strlen). Returns 0 with *KEY (pointing into ARGV) and *KLEN set; 1 for
 * a command that goes to any node (PING, WAIT, INFO, MULTI, EXEC, DISCARD,
 * SCRIPT, CLUSTER, ROLE, CLIENT, AUTH, SELECT, HELLO, READONLY, READWRITE,
 * ASKING, PUBLISH); -1 when it cannot be routed. EVAL, EVALSHA, EVAL_RO,
 * EVALSHA_RO, FCALL and FCALL_RO route by their first key (-1 when numkeys is
 * 0, not a number or more than the keys given); XREAD and XREADGROUP by the
 * first key after STREAMS, options skipped as Redis does (-1 without one);
 * XGROUP, XINFO, OBJECT and MEMORY by ARGV[2], after their subcommand; any
 * other command by ARGV[1] (-1 when there is none). Names are
 * case-insensitive. */
int cluster_command_key(int argc, const char *const *argv, const size_t *argvlen, const char **key,
	size_t *klen);

struct cluster_redirect {
	bool ask; /* ASK (this command only, after ASKING), else MOVED */
	unsigned slot;
	/* Empty when Redis does not know the node's endpoint: use the node
	 * that gave the redirect. */
	char host[CLUSTER_HOST_MAX + 1];
	int port;
};

/* Parses a redirect error as hiredis gives it (no leading '-'), LEN bytes:
 * "MOVED <slot> <host>:<port>" or "ASK ...". The host is what comes before
 * the last ':' (an IPv6 address comes bare; a bracketed one is unwrapped).
 * 0 with *OUT set, or -1 (OUT untouched) for any other error or a malformed
 * one: slot past 16383, port outside 1..65535, host too long or holding
 * blanks, control bytes or brackets, trailing bytes. */
int cluster_redirect_parse(const char *err, size_t len, struct cluster_redirect *out)
	__attribute__((warn_unused_result));

/* The slot map: which master serves each slot. Masters are kept in a node
 * table, and slots point to nodes by index.
 *
 * Indexes are stable, so that the store can keep one connection per index: a
 * node keeps its index for as long as it is in the table, across loads and
 * MOVED answers. A node that no longer serves any slot stays in the table,
 * marked unused (cluster_map_serves() false), and gets its index back if it
 * serves slots again; the caller drops its connection. Only when the table
 * holds CLUSTER_SLOTS nodes does a new node take the index of one that was
 * unused before that call. So after each load or MOVED, drop the connection
 * of every index that does not serve. */
struct cluster_map;

/* An empty map (no node, no slot served). NULL when out of memory. */
struct cluster_map *cluster_map_new(void);
void cluster_map_free(struct cluster_map *m);

/* Replaces the slot map with a CLUSTER SLOTS reply (SLOTS borrowed): an array
 * of [start, end, [ip, port, ...], replicas...]. Only masters are kept. An
 * empty or NULL ip means the node that was asked: ASKED_HOST (may be NULL when
 * there is none, and then such an entry is an error). The reply is validated
 * whole (types, slots 0..16383 with start <= end, ports 1..65535, no slot
 * served twice) before anything changes: on error the map is unchanged and -1
 * is returned with *CAUSE (caller frees) saying which entry and why. A slot
 * no entry names is served by no node afterwards. */
int cluster_map_load(struct cluster_map *m, const redisReply *slots, const char *asked_host, char **cause)
	__attribute__((warn_unused_result));

/* The index of the node serving SLOT, or -1 (none, or SLOT out of range). */
int cluster_map_node_for_slot(const struct cluster_map *m, unsigned slot);

/* Every slot is served by a node. */
bool cluster_map_complete(const struct cluster_map *m);

/* A MOVED answer: SLOT is served by HOST:PORT from now on (HOST copied,
 * never empty: the caller puts in the node it asked for an empty one), which
 * is added to the table when new. 0, or -1 when out of memory, with an
 * argument out of range or no index free (the map is then unchanged). */
int cluster_map_moved(struct cluster_map *m, unsigned slot, const char *host, int port)
	__attribute__((warn_unused_result));

/* The table: nodes 0 .. cluster_map_nodes() - 1, used or not. HOST is
 * borrowed until the next load or MOVED; out of range gives NULL and 0. */
size_t cluster_map_nodes(const struct cluster_map *m);
const char *cluster_map_host(const struct cluster_map *m, size_t i);
int cluster_map_port(const struct cluster_map *m, size_t i);
/* Node I serves at least one slot. */
bool cluster_map_serves(const struct cluster_map *m, size_t i);

/* The index of HOST:PORT in the table (used or not), or -1. */
int cluster_map_find(const struct cluster_map *m, const char *host, int port);

#endif

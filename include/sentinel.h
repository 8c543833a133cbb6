/* sentinel: where the Redis master is, as Redis Sentinel says, on one event
 * loop. Asks the configured sentinels in turn (SENTINEL
 * get-master-addr-by-name) and keeps one subscribed to +switch-master, so
 * that a failover is followed at once rather than found by failing writes.
 * Each store that runs under Sentinel owns one (docs/architecture.md). */
#ifndef BOOTSTRAPD_SENTINEL_H
#define BOOTSTRAPD_SENTINEL_H

#include <stdbool.h>
#include <event2/event.h>

struct config;
struct sentinel;

/* The master's address (HOST borrowed for the call), or HOST NULL when no
 * sentinel could name it. */
typedef void (*sentinel_addr_fn)(void *arg, const char *host, int port);

/* A sentinel client for CFG's redis.sentinels and redis.master_name, on BASE
 * (both must outlive it). ON_SWITCH is called with the new master whenever a
 * sentinel announces a switch of ours, and after each (re)subscription with
 * what a sentinel then names (a switch may have passed unheard), and every
 * 5 s with what a sentinel names then (a subscription may die silently).
 * NULL when out of memory. */
struct sentinel *sentinel_new(struct event_base *base, const struct config *cfg, sentinel_addr_fn on_switch,
	void *arg);
/* Nothing is called back after this. */
void sentinel_free(struct sentinel *sn);

/* Asks for the master: FN is called once, later, never from inside this
 * call. One question at a time: -1 when one is pending already. */
int sentinel_ask(struct sentinel *sn, sentinel_addr_fn fn, void *arg);

/* Parses a +switch-master payload "<name> <old-ip> <old-port> <new-ip>
 * <new-port>": true when it is about NAME, with the new address in HOST (CAP
 * bytes) and PORT. */
bool sentinel_parse_switch(const char *payload, const char *name, char *host, size_t cap, int *port);

#endif

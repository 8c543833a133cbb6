#include "notify_route.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The alphabets of SPEC §5: productKey [A-Za-z0-9_-]{1,32}, deviceName
 * [A-Za-z0-9_.@:-]{4,32}. */
static bool notify_route_pk_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

static bool notify_route_dn_char(char c)
{
	return notify_route_pk_char(c) || c == '.' || c == '@' || c == ':';
}

/* PK (PL bytes) and DN (DL bytes) into OUT as "{pk}.{dn}" when both are valid. */
static int notify_route_join(const char *pk, size_t pl, const char *dn, size_t dl, char *out)
{
	if (pl < 1 || pl > 32 || dl < 4 || dl > 32)
		return -1;
	for (size_t i = 0; i < pl; i++)
		if (!notify_route_pk_char(pk[i]))
			return -1;
	for (size_t i = 0; i < dl; i++)
		if (!notify_route_dn_char(dn[i]))
			return -1;
	memcpy(out, pk, pl);
	out[pl] = '.';
	memcpy(out + pl + 1, dn, dl);
	out[pl + 1 + dl] = '\0';
	return 0;
}

int notify_route_client(const char *client_id, char *out)
{
	size_t n = strcspn(client_id, "|");
	/* A product key holds no '.': the first one ends it. */
	const char *dot = memchr(client_id, '.', n);

	if (dot == NULL)
		return -1;
	return notify_route_join(client_id, (size_t)(dot - client_id), dot + 1, n - (size_t)(dot - client_id) - 1, out);
}

int notify_route_topic(const char *topic, char *out)
{
	const char *pk, *dn, *end;

	if (strncmp(topic, "/sys/", 5) != 0)
		return -1;
	pk = topic + 5;
	if ((dn = strchr(pk, '/')) == NULL)
		return -1;
	dn++;
	if ((end = strchr(dn, '/')) == NULL || strncmp(end, "/thing/", 7) != 0)
		return -1;
	return notify_route_join(pk, (size_t)(dn - 1 - pk), dn, (size_t)(end - dn), out);
}

struct notify_route_entry {
	struct notify_route_entry *next;
	const void *conn;
	char *client_id;
	char device[NOTIFY_ROUTE_DEVICE_MAX + 1];
};

struct notify_route_table {
	struct notify_route_entry **slots;
	size_t nslots, count;
};

static uint32_t notify_route_hash(const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

struct notify_route_table *notify_route_table_new(void)
{
	struct notify_route_table *t = calloc(1, sizeof(*t));

	if (t == NULL)
		return NULL;
	t->nslots = 1024;
	if ((t->slots = calloc(t->nslots, sizeof(*t->slots))) == NULL) {
		free(t);
		return NULL;
	}
	return t;
}

void notify_route_table_free(struct notify_route_table *t)
{
	if (t == NULL)
		return;
	for (size_t i = 0; i < t->nslots; i++) {
		struct notify_route_entry *e = t->slots[i], *next;
		for (; e; e = next) {
			next = e->next;
			free(e->client_id);
			free(e);
		}
	}
	free(t->slots);
	free(t);
}

static struct notify_route_entry **notify_route_find(const struct notify_route_table *t, const char *device)
{
	struct notify_route_entry **p = &t->slots[notify_route_hash(device) & (t->nslots - 1)];

	while (*p && strcmp((*p)->device, device) != 0)
		p = &(*p)->next;
	return p;
}

/* Doubles the slots when the table holds two entries a slot (a broker of many devices). */
static void notify_route_grow(struct notify_route_table *t)
{
	size_t n = t->nslots * 2;
	struct notify_route_entry **slots = calloc(n, sizeof(*slots));

	if (slots == NULL)
		return; /* longer chains, still right */
	for (size_t i = 0; i < t->nslots; i++) {
		struct notify_route_entry *e = t->slots[i], *next;
		for (; e; e = next) {
			next = e->next;
			size_t k = notify_route_hash(e->device) & (n - 1);
			e->next = slots[k];
			slots[k] = e;
		}
	}
	free(t->slots);
	t->slots = slots;
	t->nslots = n;
}

int notify_route_put(struct notify_route_table *t, const char *device, const char *client_id, const void *conn)
{
	struct notify_route_entry **p = notify_route_find(t, device), *e = *p;
	char *copy = strdup(client_id);

	if (copy == NULL || strlen(device) > NOTIFY_ROUTE_DEVICE_MAX) {
		free(copy);
		return -1;
	}
	if (e == NULL) {
		if ((e = calloc(1, sizeof(*e))) == NULL) {
			free(copy);
			return -1;
		}
		memcpy(e->device, device, strlen(device) + 1);
		*p = e;
		t->count++;
	}
	free(e->client_id);
	e->client_id = copy;
	e->conn = conn;
	if (t->count > 2 * t->nslots)
		notify_route_grow(t);
	return 0;
}

const char *notify_route_get(const struct notify_route_table *t, const char *device)
{
	struct notify_route_entry *e = *notify_route_find(t, device);

	return e ? e->client_id : NULL;
}

void notify_route_gone(struct notify_route_table *t, const char *device, const void *conn)
{
	struct notify_route_entry **p = notify_route_find(t, device), *e = *p;

	/* A device that connected again (a takeover, or a new client id) keeps its entry. */
	if (e == NULL || e->conn != conn)
		return;
	*p = e->next;
	free(e->client_id);
	free(e);
	t->count--;
}

size_t notify_route_count(const struct notify_route_table *t)
{
	return t->count;
}

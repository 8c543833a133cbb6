/* notify_route: which device a client id or a notify topic names, and the
 * table of connected devices, for the mosquitto plugin (docs/notify.md).
 * Pure; no mosquitto headers. A device is named "{productKey}.{deviceName}",
 * as the vendor SDK 4.x starts its client id ("{pk}.{dn}|securemode=...|"). */
#ifndef BOOTSTRAPD_NOTIFY_ROUTE_H
#define BOOTSTRAPD_NOTIFY_ROUTE_H

#include <stddef.h>

#define NOTIFY_ROUTE_DEVICE_MAX (32 + 1 + 32) /* productKey . deviceName */

/* The device CLIENT_ID belongs to: the text before its first '|' (or all of
 * it), a valid productKey, '.', a valid deviceName. Writes it and a NUL into
 * OUT (at least NOTIFY_ROUTE_DEVICE_MAX + 1). 0, or -1 when it names none. */
int notify_route_client(const char *client_id, char *out);

/* The device of a topic "/sys/{productKey}/{deviceName}/thing/...", as above. */
int notify_route_topic(const char *topic, char *out);

/* Connected devices: device -> the client id and the connection (an opaque
 * pointer, compared only) that last connected as it. */
struct notify_route_table;
struct notify_route_table *notify_route_table_new(void);
void notify_route_table_free(struct notify_route_table *t);
/* Records that CONN connected as DEVICE with CLIENT_ID (copied). 0 or -1 (memory). */
int notify_route_put(struct notify_route_table *t, const char *device, const char *client_id, const void *conn);
/* The client id of DEVICE's connection, or NULL. */
const char *notify_route_get(const struct notify_route_table *t, const char *device);
/* CONN went away: forgets DEVICE if CONN is still the one recorded for it. */
void notify_route_gone(struct notify_route_table *t, const char *device, const void *conn);
size_t notify_route_count(const struct notify_route_table *t);

#endif

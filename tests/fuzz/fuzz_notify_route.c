/* The mosquitto plugin's reading of client ids and topics (plugin/notify_route.c):
 * what it takes is a valid "{productKey}.{deviceName}", and a table that
 * records it finds it again. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "notify_route.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = fuzz_strndup(data, size), d[NOTIFY_ROUTE_DEVICE_MAX + 1], t[NOTIFY_ROUTE_DEVICE_MAX + 1];
	struct notify_route_table *tab = notify_route_table_new();
	int conn;

	if (notify_route_client(text, d) == 0) {
		fuzz_assert(strlen(d) <= NOTIFY_ROUTE_DEVICE_MAX && strchr(d, '.') != NULL && strchr(d, '|') == NULL);
		fuzz_assert(strncmp(text, d, strlen(d)) == 0);
		if (tab && notify_route_put(tab, d, text, &conn) == 0) {
			fuzz_assert(notify_route_get(tab, d) != NULL && strcmp(notify_route_get(tab, d), text) == 0);
			notify_route_gone(tab, d, &conn);
			fuzz_assert(notify_route_get(tab, d) == NULL);
		}
	}
	if (notify_route_topic(text, t) == 0)
		fuzz_assert(strncmp(text, "/sys/", 5) == 0 && strchr(t, '/') == NULL);
	notify_route_table_free(tab);
	free(text);
	return 0;
}

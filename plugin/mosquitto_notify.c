/* bootstrapd_mosquitto: a mosquitto 2.0 plugin (interface version 5) that
 * hands bootstrapd's "/sys/{pk}/{dn}/thing/..." messages to the session of
 * that device, which never subscribes to them (the vendor SDK 4.x relies on
 * its platform's brokers doing so; SPEC §7, docs/notify.md).
 *
 *   plugin /usr/lib/bootstrapd/bootstrapd_mosquitto.so
 *   plugin_opt_publisher_username bootstrapd     (the default)
 *   plugin_opt_publisher_client_prefix bootstrapd-   (optional, instead or too)
 *
 * It learns which client id each device connected with when the client
 * authenticates (MOSQ_EVT_BASIC_AUTH, deferring the decision to the
 * broker's other authentication), forgets it at disconnect, and for each
 * message a bootstrapd client publishes on a device's topic, publishes a
 * copy to that client id (mosquitto_broker_publish_copy), at the message's
 * QoS. The message also goes to subscribers, as any other. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

#include "notify_route.h"

/* The module is built with hidden symbols: only mosquitto's entry points are seen. */
#define NOTIFY_PLUGIN_EXPORT __attribute__((visibility("default")))

struct notify_plugin {
	mosquitto_plugin_id_t *id;
	struct notify_route_table *devices;
	char *username;      /* publishers logged in as this, or NULL */
	char *client_prefix; /* publishers whose client id starts so, or NULL */
	unsigned long handed;
};

NOTIFY_PLUGIN_EXPORT int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
	for (int i = 0; i < supported_version_count; i++)
		if (supported_versions[i] == 5)
			return 5;
	return -1;
}

static int notify_plugin_auth(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_basic_auth *ed = event_data;
	struct notify_plugin *p = userdata;
	const char *cid = mosquitto_client_id(ed->client);
	char device[NOTIFY_ROUTE_DEVICE_MAX + 1];

	(void)event;
	if (cid != NULL && notify_route_client(cid, device) == 0 &&
	    notify_route_put(p->devices, device, cid, ed->client) < 0)
		mosquitto_log_printf(MOSQ_LOG_WARNING, "bootstrapd: out of memory; %s will not get its notify", cid);
	/* Not ours to decide: the broker's password file or other plugins do. */
	return MOSQ_ERR_PLUGIN_DEFER;
}

static int notify_plugin_disconnect(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_disconnect *ed = event_data;
	struct notify_plugin *p = userdata;
	const char *cid = mosquitto_client_id(ed->client);
	char device[NOTIFY_ROUTE_DEVICE_MAX + 1];

	(void)event;
	if (cid != NULL && notify_route_client(cid, device) == 0)
		notify_route_gone(p->devices, device, ed->client);
	return MOSQ_ERR_SUCCESS;
}

static bool notify_plugin_from_bootstrapd(const struct notify_plugin *p, const struct mosquitto *client)
{
	const char *user = mosquitto_client_username(client), *cid = mosquitto_client_id(client);

	if (p->username && (user == NULL || strcmp(user, p->username) != 0))
		return false;
	if (p->client_prefix && (cid == NULL || strncmp(cid, p->client_prefix, strlen(p->client_prefix)) != 0))
		return false;
	return true;
}

static int notify_plugin_message(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_message *ed = event_data;
	struct notify_plugin *p = userdata;
	char device[NOTIFY_ROUTE_DEVICE_MAX + 1];
	const char *target;
	int rc;

	(void)event;
	if (ed->topic == NULL || notify_route_topic(ed->topic, device) < 0 ||
	    !notify_plugin_from_bootstrapd(p, ed->client) || (target = notify_route_get(p->devices, device)) == NULL)
		return MOSQ_ERR_SUCCESS;
	rc = mosquitto_broker_publish_copy(target, ed->topic, (int)ed->payloadlen, ed->payload, ed->qos, false, NULL);
	if (rc != MOSQ_ERR_SUCCESS)
		mosquitto_log_printf(MOSQ_LOG_WARNING, "bootstrapd: %s not handed to %s: error %d", ed->topic, target, rc);
	else
		p->handed++;
	return MOSQ_ERR_SUCCESS;
}

static void notify_plugin_free(struct notify_plugin *p)
{
	if (p == NULL)
		return;
	notify_route_table_free(p->devices);
	free(p->username);
	free(p->client_prefix);
	free(p);
}

NOTIFY_PLUGIN_EXPORT int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata, struct mosquitto_opt *options,
	int option_count)
{
	struct notify_plugin *p = calloc(1, sizeof(*p));
	const char *user = "bootstrapd", *prefix = NULL;

	if (p == NULL || (p->devices = notify_route_table_new()) == NULL) {
		notify_plugin_free(p);
		return MOSQ_ERR_NOMEM;
	}
	for (int i = 0; i < option_count; i++) {
		if (strcmp(options[i].key, "publisher_username") == 0) {
			user = options[i].value;
		} else if (strcmp(options[i].key, "publisher_client_prefix") == 0) {
			prefix = options[i].value;
		} else {
			mosquitto_log_printf(MOSQ_LOG_ERR, "bootstrapd: unknown option plugin_opt_%s", options[i].key);
			notify_plugin_free(p);
			return MOSQ_ERR_INVAL;
		}
	}
	if ((user && user[0] && (p->username = strdup(user)) == NULL) ||
	    (prefix && prefix[0] && (p->client_prefix = strdup(prefix)) == NULL)) {
		notify_plugin_free(p);
		return MOSQ_ERR_NOMEM;
	}
	if (p->username == NULL && p->client_prefix == NULL) {
		mosquitto_log_printf(MOSQ_LOG_ERR, "bootstrapd: set plugin_opt_publisher_username or "
			"plugin_opt_publisher_client_prefix: anyone could reach every device otherwise");
		notify_plugin_free(p);
		return MOSQ_ERR_INVAL;
	}
	p->id = identifier;
	if (mosquitto_callback_register(identifier, MOSQ_EVT_BASIC_AUTH, notify_plugin_auth, NULL, p) != MOSQ_ERR_SUCCESS ||
	    mosquitto_callback_register(identifier, MOSQ_EVT_DISCONNECT, notify_plugin_disconnect, NULL, p) !=
		    MOSQ_ERR_SUCCESS ||
	    mosquitto_callback_register(identifier, MOSQ_EVT_MESSAGE, notify_plugin_message, NULL, p) != MOSQ_ERR_SUCCESS) {
		notify_plugin_free(p);
		return MOSQ_ERR_UNKNOWN;
	}
	*userdata = p;
	mosquitto_log_printf(MOSQ_LOG_INFO, "bootstrapd: device notify hand-over on, from %s%s%s%s",
		p->username ? "username " : "", p->username ? p->username : "",
		p->client_prefix ? " client ids " : "", p->client_prefix ? p->client_prefix : "");
	return MOSQ_ERR_SUCCESS;
}

NOTIFY_PLUGIN_EXPORT int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *options, int option_count)
{
	struct notify_plugin *p = userdata;

	(void)options;
	(void)option_count;
	if (p == NULL)
		return MOSQ_ERR_SUCCESS;
	mosquitto_callback_unregister(p->id, MOSQ_EVT_BASIC_AUTH, notify_plugin_auth, NULL);
	mosquitto_callback_unregister(p->id, MOSQ_EVT_DISCONNECT, notify_plugin_disconnect, NULL);
	mosquitto_callback_unregister(p->id, MOSQ_EVT_MESSAGE, notify_plugin_message, NULL);
	mosquitto_log_printf(MOSQ_LOG_INFO, "bootstrapd: %lu messages handed to devices", p->handed);
	notify_plugin_free(p);
	return MOSQ_ERR_SUCCESS;
}

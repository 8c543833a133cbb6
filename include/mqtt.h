/* mqtt: one MQTT broker connection (libmosquitto) driven by a libevent loop:
 * mosquitto's socket is watched by libevent, never by a thread of its own.
 * Connects and reconnects by itself (with a backoff), publishes at QoS 1 and
 * reports each PUBACK, and keeps one subscription. Protocol code only: what
 * is published and why is the notify module's business. */
#ifndef BOOTSTRAPD_MQTT_H
#define BOOTSTRAPD_MQTT_H

#include <stdbool.h>
#include <stddef.h>
#include <event2/event.h>

struct mqtt;

struct mqtt_options {
	const char *url;       /* mqtt://host[:port] or mqtts://host[:port] */
	const char *username;  /* NULL: none */
	const char *password;  /* NULL: none; never logged */
	const char *ca_file;   /* mqtts: CA bundle; NULL: the system's */
	const char *cert_file; /* mqtts client certificate, optional */
	const char *key_file;
	const char *client_id; /* unique per process and broker */
	const char *subscribe; /* a topic filter kept subscribed (QoS 1), or NULL */
	int keepalive;         /* seconds, 5..65535; 0: 30 */
	int max_inflight;      /* QoS 1 messages libmosquitto keeps in flight; 0: its default (20) */
};

/* Each callback may be NULL. They run from BASE's loop, never from inside
 * mqtt_new or mqtt_publish. */
struct mqtt_callbacks {
	/* The connection came up (CONNECTED true) or went down; WHY says why
	 * (e.g. "not authorised", "connection refused"); no secrets in it.
	 * Called once per change (the first failed attempt counts as one);
	 * later failures while down only update mqtt_state_reason(). */
	void (*on_state)(struct mqtt *m, bool connected, const char *why, void *arg);
	/* The broker acknowledged the QoS 1 message MID. */
	void (*on_puback)(struct mqtt *m, int mid, void *arg);
	/* A message on the subscription. TOPIC and PAYLOAD are borrowed. */
	void (*on_message)(struct mqtt *m, const char *topic, const void *payload, size_t len, void *arg);
};

/* Makes the client; it starts connecting on the next loop turn, so no
 * callback runs before this returns. The options are copied. NULL with
 * *cause (caller frees) when the URL or TLS files are unusable. The client
 * is used from the thread that runs BASE only; free it before BASE. Name
 * resolution happens inside the loop and blocks it (getaddrinfo). */
struct mqtt *mqtt_new(struct event_base *base, const struct mqtt_options *opt,
	const struct mqtt_callbacks *cb, void *arg, char **cause);
/* Disconnects; no callback runs after it returns. NULL is fine. May be
 * called from inside a callback (the client is then freed as it unwinds). */
void mqtt_free(struct mqtt *m);

bool mqtt_connected(const struct mqtt *m);
/* Why the connection is down: "connecting" before the first outcome, then
 * the latest failure; "" while up. Valid until the next loop turn. */
const char *mqtt_state_reason(const struct mqtt *m);

/* Publishes PAYLOAD on TOPIC at QoS 1 (borrowed; copied before returning).
 * Returns the message id (> 0), whose PUBACK on_puback reports, or -1 when
 * not connected or the library refuses. on_puback never runs before this
 * returns. A message that got an id stays queued in libmosquitto until its
 * PUBACK, across reconnects (it is sent again, flagged DUP, after each one),
 * so its on_puback may come after on_state(false) and on_state(true). */
int mqtt_publish(struct mqtt *m, const char *topic, const void *payload, size_t len)
	__attribute__((warn_unused_result));

/* Calls mosquitto_lib_init once for the process (thread-safe). */
void mqtt_global_init(void);

#endif

/* mqtt: one broker connection through libmosquitto, driven by libevent.
 * libmosquitto runs no thread of its own: its socket is watched here (read
 * always, write while it has output), a 500 ms timer runs its keepalive, and
 * reconnecting is ours (mosquitto_reconnect_async after a backoff). */
#include "mqtt.h"

#include "log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <mosquitto.h>

#define MQTT_MISC_MS 500
#define MQTT_BACKOFF_MIN_MS 250
#define MQTT_BACKOFF_MAX_MS 5000
#define MQTT_KEEPALIVE_DEFAULT 30
#define MQTT_HOST_MAX 253
#define MQTT_READ_ROUNDS 32
#define MQTT_SYSTEM_CA_PATH "/etc/ssl/certs"

enum mqtt_phase {
	MQTT_WAITING,    /* down: ev_retry pending, no socket watched */
	MQTT_CONNECTING, /* socket watched, no CONNACK yet */
	MQTT_UP,
};

struct mqtt {
	struct event_base *base;
	struct mosquitto *mosq;
	struct mqtt_callbacks cb;
	void *arg;
	char *url;               /* for log lines; never carries credentials */
	char *subscribe;
	char host[MQTT_HOST_MAX + 1];
	int port;
	int keepalive;
	bool tls;
	bool started;            /* mosquitto_connect_async has taken host and port */
	enum mqtt_phase phase;
	int fd;                  /* the socket ev_read and ev_write watch, or -1 */
	struct event *ev_read;
	struct event *ev_write;
	struct event *ev_misc;
	struct event *ev_retry;
	int backoff_ms;
	bool refused;            /* reason is a CONNACK refusal: keep it over the close */
	bool reported;           /* on_state ran at least once ... */
	bool reported_up;        /* ... and said this */
	char reason[320];        /* fits "cannot resolve <longest host>" */
	char lib_error[160];     /* libmosquitto's last error line (TLS details) */
	int depth;               /* nesting of our entry points on the stack */
	bool dead;               /* mqtt_free ran: free once depth is back to 0 */
};

static void mqtt_on_read(evutil_socket_t fd, short what, void *arg);
static void mqtt_on_write(evutil_socket_t fd, short what, void *arg);

static pthread_once_t mqtt_once = PTHREAD_ONCE_INIT;

static void mqtt_lib_init(void)
{
	mosquitto_lib_init();
}

void mqtt_global_init(void)
{
	pthread_once(&mqtt_once, mqtt_lib_init);
}

static int mqtt_fail(char **cause, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int mqtt_fail(char **cause, const char *fmt, ...)
{
	va_list ap;

	if (cause == NULL)
		return -1;
	free(*cause);
	va_start(ap, fmt);
	if (vasprintf(cause, fmt, ap) < 0)
		*cause = NULL;
	va_end(ap);
	return -1;
}

static bool mqtt_is_host_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		c == '.' || c == '-' || c == '_';
}

/* Splits mqtt[s]://host[:port][/] into m->host, m->port and m->tls. */
static int mqtt_parse_url(struct mqtt *m, const char *url, char **cause)
{
	const char *rest;
	size_t n;

	if (url == NULL || url[0] == '\0')
		return mqtt_fail(cause, "no broker URL");
	/* Checked first so that no message below repeats a password. */
	if (strchr(url, '@') != NULL)
		return mqtt_fail(cause, "broker URL must not carry credentials: "
			"give a username and a password from the environment");
	if (strncmp(url, "mqtt://", 7) == 0) {
		rest = url + 7;
		m->port = 1883;
	} else if (strncmp(url, "mqtts://", 8) == 0) {
		rest = url + 8;
		m->port = 8883;
		m->tls = true;
	} else {
		return mqtt_fail(cause, "broker URL \"%s\": must be mqtt://host[:port] or "
			"mqtts://host[:port]", url);
	}
	if (rest[0] == '[') {
		const char *end = strchr(rest, ']');
		struct in6_addr addr;

		n = end != NULL ? (size_t)(end - rest - 1) : 0;
		if (end == NULL || n == 0 || n >= INET6_ADDRSTRLEN)
			return mqtt_fail(cause, "broker URL \"%s\": bad [IPv6 address]", url);
		memcpy(m->host, rest + 1, n);
		m->host[n] = '\0';
		if (inet_pton(AF_INET6, m->host, &addr) != 1)
			return mqtt_fail(cause, "broker URL \"%s\": bad [IPv6 address]", url);
		rest = end + 1;
	} else {
		n = strcspn(rest, ":/");
		if (n == 0)
			return mqtt_fail(cause, "broker URL \"%s\": no host", url);
		if (n > MQTT_HOST_MAX)
			return mqtt_fail(cause, "broker URL: host longer than %d characters",
				MQTT_HOST_MAX);
		for (size_t i = 0; i < n; i++)
			if (!mqtt_is_host_char(rest[i]))
				return mqtt_fail(cause, "broker URL \"%s\": bad host name", url);
		memcpy(m->host, rest, n);
		m->host[n] = '\0';
		rest += n;
	}
	if (rest[0] == ':') {
		size_t digits = strspn(rest + 1, "0123456789");
		long port = 0;

		for (size_t i = 0; i < digits && i < 6; i++)
			port = port * 10 + (rest[1 + i] - '0');
		if (digits == 0 || digits > 5 || port < 1 || port > 65535)
			return mqtt_fail(cause, "broker URL \"%s\": port must be 1..65535", url);
		m->port = (int)port;
		rest += 1 + digits;
	}
	if (strcmp(rest, "") != 0 && strcmp(rest, "/") != 0)
		return mqtt_fail(cause, "broker URL \"%s\": unexpected \"%s\" after host and port",
			url, rest);
	return 0;
}

static int mqtt_check_file(const char *what, const char *path, char **cause)
{
	if (path != NULL && access(path, R_OK) != 0)
		return mqtt_fail(cause, "%s %s: %s", what, path, strerror(errno));
	return 0;
}

static int mqtt_check_options(struct mqtt *m, const struct mqtt_options *opt, char **cause)
{
	if (mqtt_parse_url(m, opt->url, cause) != 0)
		return -1;
	if (opt->keepalive != 0 && (opt->keepalive < 5 || opt->keepalive > 65535))
		return mqtt_fail(cause, "MQTT keepalive must be 5..65535 seconds, got %d",
			opt->keepalive);
	m->keepalive = opt->keepalive != 0 ? opt->keepalive : MQTT_KEEPALIVE_DEFAULT;
	if (!m->tls && (opt->ca_file != NULL || opt->cert_file != NULL || opt->key_file != NULL))
		return mqtt_fail(cause, "broker %s: ca_file, cert_file and key_file need mqtts://",
			opt->url);
	if ((opt->cert_file == NULL) != (opt->key_file == NULL))
		return mqtt_fail(cause, "broker %s: cert_file and key_file go together", opt->url);
	if (opt->password != NULL && opt->username == NULL)
		return mqtt_fail(cause, "broker %s: a password needs a username", opt->url);
	if (mqtt_check_file("ca_file", opt->ca_file, cause) != 0 ||
	    mqtt_check_file("cert_file", opt->cert_file, cause) != 0 ||
	    mqtt_check_file("key_file", opt->key_file, cause) != 0)
		return -1;
	return 0;
}

/* OUT gets TEXT with its first letter lowered when the word is not an
 * acronym ("Connection refused" but "TLS ..."). */
static void mqtt_lower_first(char *out, size_t size, const char *text)
{
	snprintf(out, size, "%s", text);
	if (out[0] >= 'A' && out[0] <= 'Z' && out[1] >= 'a' && out[1] <= 'z')
		out[0] = (char)(out[0] - 'A' + 'a');
}

static void mqtt_describe_connack(char *out, size_t size, int rc)
{
	static const char *const texts[] = {
		[1] = "connection refused: unacceptable protocol version",
		[2] = "connection refused: identifier rejected",
		[3] = "connection refused: server unavailable",
		[4] = "connection refused: bad user name or password",
		[5] = "connection refused: not authorised",
	};

	if (rc > 0 && rc < (int)(sizeof(texts) / sizeof(texts[0])))
		snprintf(out, size, "%s", texts[rc]);
	else
		mqtt_lower_first(out, size, mosquitto_connack_string(rc));
}

/* Short text for a libmosquitto result RC; ERR is errno as RC was made. */
static void mqtt_describe(const struct mqtt *m, char *out, size_t size, int rc, int err)
{
	char text[128];

	switch (rc) {
	case MOSQ_ERR_ERRNO:
		mqtt_lower_first(out, size, err != 0 ? strerror(err) : "system error");
		break;
	case MOSQ_ERR_CONN_LOST:
		snprintf(out, size, "connection lost");
		break;
	case MOSQ_ERR_KEEPALIVE:
		snprintf(out, size, "no answer within the keepalive");
		break;
	case MOSQ_ERR_EAI:
	case MOSQ_ERR_LOOKUP:
		snprintf(out, size, "cannot resolve %s", m->host);
		break;
	case MOSQ_ERR_TLS:
	case MOSQ_ERR_TLS_HANDSHAKE: {
		/* "OpenSSL Error[0]: error:0A000086:SSL routines::certificate
		 * verify failed": the words after the last colon. */
		const char *detail = strrchr(m->lib_error, ':');

		if (detail != NULL && detail[1] != '\0')
			snprintf(out, size, "TLS error: %s", detail + 1 + strspn(detail + 1, " "));
		else
			snprintf(out, size, "TLS error");
		break;
	}
	case MOSQ_ERR_CONN_REFUSED:
		snprintf(out, size, "connection refused by the broker");
		break;
	default:
		mqtt_lower_first(text, sizeof(text), mosquitto_strerror(rc));
		text[strcspn(text, ".")] = '\0';
		snprintf(out, size, "%s", text);
		break;
	}
}

static void mqtt_unwatch(struct mqtt *m)
{
	/* Freeing an event inside its own callback is fine in libevent 2.1:
	 * it copies what it needs before calling us. */
	if (m->ev_read != NULL)
		event_free(m->ev_read);
	if (m->ev_write != NULL)
		event_free(m->ev_write);
	m->ev_read = NULL;
	m->ev_write = NULL;
	m->fd = -1;
}

/* Calls on_state when the state differs from what it last said. */
static void mqtt_report(struct mqtt *m, bool up)
{
	if (m->reported && m->reported_up == up)
		return;
	m->reported = true;
	m->reported_up = up;
	if (m->cb.on_state != NULL)
		m->cb.on_state(m, up, up ? "" : m->reason, m->arg);
}

/* The connection is down (or never came up) because of WHY: say so once and
 * try again after the backoff. */
static void mqtt_down(struct mqtt *m, const char *why)
{
	struct timeval tv;
	bool changed = m->phase == MQTT_UP || strcmp(m->reason, why) != 0 || !m->reported;

	mqtt_unwatch(m);
	m->phase = MQTT_WAITING;
	m->refused = false;
	if (changed)
		log_warn("mqtt", "%s: down: %s (retrying)", m->url, why);
	else
		log_debug("mqtt", "%s: still down: %s", m->url, why);
	if (m->reason != why)
		snprintf(m->reason, sizeof(m->reason), "%s", why);
	tv.tv_sec = m->backoff_ms / 1000;
	tv.tv_usec = (m->backoff_ms % 1000) * 1000;
	if (event_add(m->ev_retry, &tv) != 0)
		log_error("mqtt", "%s: cannot schedule a reconnect", m->url);
	m->backoff_ms = m->backoff_ms * 2 > MQTT_BACKOFF_MAX_MS ? MQTT_BACKOFF_MAX_MS
		: m->backoff_ms * 2;
	mqtt_report(m, false);
}

/* Follows libmosquitto's socket: read and write events on the current one,
 * the write event pending while libmosquitto has output. Every path that
 * closes a socket goes through mqtt_down, which drops the events first, so a
 * new socket reusing the descriptor number is never mistaken for the old. */
static void mqtt_watch(struct mqtt *m)
{
	int fd;

	if (m->dead || m->phase == MQTT_WAITING)
		return;
	fd = mosquitto_socket(m->mosq);
	if (fd < 0) {
		mqtt_down(m, "connection closed");
		return;
	}
	if (fd != m->fd)
		mqtt_unwatch(m);
	if (m->ev_read == NULL) {
		m->ev_read = event_new(m->base, fd, EV_READ | EV_PERSIST, mqtt_on_read, m);
		m->ev_write = event_new(m->base, fd, EV_WRITE, mqtt_on_write, m);
		if (m->ev_read == NULL || m->ev_write == NULL) {
			mqtt_down(m, "out of memory");
			return;
		}
		m->fd = fd;
	}
	if (!event_pending(m->ev_read, EV_READ, NULL) && event_add(m->ev_read, NULL) != 0) {
		mqtt_down(m, "cannot watch the socket");
		return;
	}
	if (mosquitto_want_write(m->mosq) && !event_pending(m->ev_write, EV_WRITE, NULL) &&
	    event_add(m->ev_write, NULL) != 0)
		mqtt_down(m, "cannot watch the socket");
}

static void mqtt_destroy(struct mqtt *m)
{
	mqtt_unwatch(m);
	if (m->ev_misc != NULL)
		event_free(m->ev_misc);
	if (m->ev_retry != NULL)
		event_free(m->ev_retry);
	if (m->mosq != NULL) {
		/* Best effort: DISCONNECT is written at once if the socket takes it. */
		if (m->phase == MQTT_UP)
			(void)mosquitto_disconnect(m->mosq);
		mosquitto_destroy(m->mosq);
	}
	free(m->url);
	free(m->subscribe);
	free(m);
}

static void mqtt_enter(struct mqtt *m)
{
	m->depth++;
}

/* Leaves an entry point: re-arms the socket events, or frees M when
 * mqtt_free ran meanwhile. M must not be used after. */
static void mqtt_leave(struct mqtt *m)
{
	mqtt_watch(m);
	if (--m->depth == 0 && m->dead)
		mqtt_destroy(m);
}

/* The socket is gone: RC (libmosquitto's result) and ERR (errno with it)
 * say why, unless a CONNACK refusal already did. */
static void mqtt_lost(struct mqtt *m, int rc, int err)
{
	char why[sizeof(m->reason)];

	if (m->refused)
		snprintf(why, sizeof(why), "%s", m->reason);
	else
		mqtt_describe(m, why, sizeof(why), rc != MOSQ_ERR_SUCCESS ? rc : MOSQ_ERR_CONN_LOST,
			err);
	mqtt_down(m, why);
}

/* libmosquitto 2.0.11 closes the socket without calling on_disconnect when a
 * TLS handshake fails inside mosquitto_loop_read: take that as a disconnect. */
static void mqtt_check_closed(struct mqtt *m, int rc, int err)
{
	if (!m->dead && m->phase != MQTT_WAITING && mosquitto_socket(m->mosq) < 0)
		mqtt_lost(m, rc, err);
}

/* Reads until libmosquitto has nothing buffered. With TLS, OpenSSL may hold
 * decrypted bytes the socket no longer signals, and libmosquitto 2.0 has no
 * call that tells: a read that ends without EAGAIN may have more behind it.
 * After MQTT_READ_ROUNDS the read handler is queued again, so that other
 * events get their turn. */
static void mqtt_read(struct mqtt *m)
{
	for (int i = 0; i < MQTT_READ_ROUNDS; i++) {
		int rc;

		if (m->dead || m->phase == MQTT_WAITING)
			return;
		errno = 0;
		rc = mosquitto_loop_read(m->mosq, 1);
		if (rc != MOSQ_ERR_SUCCESS) {
			mqtt_check_closed(m, rc, errno);
			return;
		}
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return;
	}
	if (m->ev_read != NULL && mosquitto_socket(m->mosq) == m->fd)
		event_active(m->ev_read, EV_READ, 1);
}

static void mqtt_on_read(evutil_socket_t fd, short what, void *arg)
{
	struct mqtt *m = arg;

	(void)fd;
	(void)what;
	mqtt_enter(m);
	mqtt_read(m);
	mqtt_leave(m);
}

static void mqtt_on_write(evutil_socket_t fd, short what, void *arg)
{
	struct mqtt *m = arg;

	(void)fd;
	(void)what;
	mqtt_enter(m);
	if (!m->dead && m->phase != MQTT_WAITING) {
		int rc = mosquitto_loop_write(m->mosq, 1);

		mqtt_check_closed(m, rc, errno);
	}
	mqtt_leave(m);
}

static void mqtt_on_misc(evutil_socket_t fd, short what, void *arg)
{
	struct mqtt *m = arg;

	(void)fd;
	(void)what;
	mqtt_enter(m);
	if (!m->dead && m->phase != MQTT_WAITING) {
		int rc = mosquitto_loop_misc(m->mosq);

		mqtt_check_closed(m, rc, errno);
	}
	/* A backstop for bytes OpenSSL holds (see mqtt_read). */
	if (m->tls)
		mqtt_read(m);
	mqtt_leave(m);
}

/* One connection attempt; the socket is watched once it exists. */
static void mqtt_attempt(struct mqtt *m)
{
	char why[sizeof(m->reason)];
	int rc, err;

	mqtt_unwatch(m);
	m->refused = false;
	m->lib_error[0] = '\0';
	errno = 0;
	if (!m->started)
		rc = mosquitto_connect_async(m->mosq, m->host, m->port, m->keepalive);
	else
		rc = mosquitto_reconnect_async(m->mosq);
	err = errno;
	if (rc != MOSQ_ERR_INVAL)
		m->started = true;
	if (m->dead)
		return;
	if (rc == MOSQ_ERR_SUCCESS || rc == MOSQ_ERR_CONN_PENDING) {
		log_debug("mqtt", "%s: connecting", m->url);
		m->phase = MQTT_CONNECTING;
		return;
	}
	mqtt_describe(m, why, sizeof(why), rc, err);
	mqtt_down(m, why);
}

static void mqtt_on_retry(evutil_socket_t fd, short what, void *arg)
{
	struct mqtt *m = arg;

	(void)fd;
	(void)what;
	mqtt_enter(m);
	if (!m->dead)
		mqtt_attempt(m);
	mqtt_leave(m);
}

/* The mosquitto callbacks below run inside a loop call made by one of the
 * handlers above, so M stays allocated until they return. They keep errno
 * as they found it: mqtt_read judges libmosquitto's reads by it. */

static void mqtt_cb_connect(struct mosquitto *mosq, void *arg, int rc)
{
	struct mqtt *m = arg;
	int saved = errno;

	if (m->dead)
		return;
	if (rc != 0) {
		/* The close that follows calls mqtt_cb_disconnect: keep this reason. */
		mqtt_describe_connack(m->reason, sizeof(m->reason), rc);
		m->refused = true;
		errno = saved;
		return;
	}
	if (m->subscribe != NULL) {
		int src = mosquitto_subscribe(mosq, NULL, m->subscribe, 1);

		if (src != MOSQ_ERR_SUCCESS)
			log_error("mqtt", "%s: cannot subscribe to %s: %s", m->url, m->subscribe,
				mosquitto_strerror(src));
	}
	log_info("mqtt", "%s: connected", m->url);
	m->phase = MQTT_UP;
	m->backoff_ms = MQTT_BACKOFF_MIN_MS;
	m->reason[0] = '\0';
	mqtt_report(m, true);
	errno = saved;
}

static void mqtt_cb_disconnect(struct mosquitto *mosq, void *arg, int rc)
{
	struct mqtt *m = arg;
	int saved = errno;

	(void)mosq;
	if (!m->dead && m->phase != MQTT_WAITING)
		mqtt_lost(m, rc, saved);
	errno = saved;
}

static void mqtt_cb_publish(struct mosquitto *mosq, void *arg, int mid)
{
	struct mqtt *m = arg;
	int saved = errno;

	(void)mosq;
	if (!m->dead && m->cb.on_puback != NULL)
		m->cb.on_puback(m, mid, m->arg);
	errno = saved;
}

static void mqtt_cb_message(struct mosquitto *mosq, void *arg, const struct mosquitto_message *msg)
{
	struct mqtt *m = arg;
	int saved = errno;

	(void)mosq;
	if (!m->dead && m->cb.on_message != NULL)
		m->cb.on_message(m, msg->topic, msg->payload, (size_t)msg->payloadlen, m->arg);
	errno = saved;
}

static void mqtt_cb_log(struct mosquitto *mosq, void *arg, int level, const char *str)
{
	struct mqtt *m = arg;
	int saved = errno;

	(void)mosq;
	if (level == MOSQ_LOG_ERR)
		snprintf(m->lib_error, sizeof(m->lib_error), "%s", str);
	log_debug("mqtt", "%s: %s", m->url, str);
	errno = saved;
}

static int mqtt_setup_library(struct mqtt *m, const struct mqtt_options *opt, char **cause)
{
	int rc;

	errno = 0;
	m->mosq = mosquitto_new(opt->client_id, true, m);
	if (m->mosq == NULL)
		return mqtt_fail(cause, "broker %s: cannot make a client: %s", m->url,
			errno == EINVAL ? "bad client id" : strerror(errno));
	(void)mosquitto_threaded_set(m->mosq, false);
	(void)mosquitto_int_option(m->mosq, MOSQ_OPT_TCP_NODELAY, 1);
	if (opt->max_inflight > 0)
		(void)mosquitto_max_inflight_messages_set(m->mosq, (unsigned int)opt->max_inflight);
	mosquitto_connect_callback_set(m->mosq, mqtt_cb_connect);
	mosquitto_disconnect_callback_set(m->mosq, mqtt_cb_disconnect);
	mosquitto_publish_callback_set(m->mosq, mqtt_cb_publish);
	mosquitto_message_callback_set(m->mosq, mqtt_cb_message);
	mosquitto_log_callback_set(m->mosq, mqtt_cb_log);
	if (opt->username != NULL) {
		rc = mosquitto_username_pw_set(m->mosq, opt->username, opt->password);
		if (rc != MOSQ_ERR_SUCCESS)
			return mqtt_fail(cause, "broker %s: username: %s", m->url,
				mosquitto_strerror(rc));
	}
	if (m->tls) {
		rc = mosquitto_tls_set(m->mosq, opt->ca_file,
			opt->ca_file != NULL ? NULL : MQTT_SYSTEM_CA_PATH,
			opt->cert_file, opt->key_file, NULL);
		if (rc == MOSQ_ERR_SUCCESS)
			rc = mosquitto_tls_opts_set(m->mosq, 1, "tlsv1.2", NULL);
		if (rc != MOSQ_ERR_SUCCESS)
			return mqtt_fail(cause, "broker %s: TLS settings: %s", m->url,
				mosquitto_strerror(rc));
	}
	return 0;
}

struct mqtt *mqtt_new(struct event_base *base, const struct mqtt_options *opt,
	const struct mqtt_callbacks *cb, void *arg, char **cause)
{
	struct timeval misc = { 0, MQTT_MISC_MS * 1000 };
	struct timeval now = { 0, 0 };
	struct mqtt *m;

	mqtt_global_init();
	m = calloc(1, sizeof(*m));
	if (m == NULL) {
		mqtt_fail(cause, "out of memory");
		return NULL;
	}
	m->base = base;
	m->arg = arg;
	if (cb != NULL)
		m->cb = *cb;
	m->fd = -1;
	m->phase = MQTT_WAITING;
	m->backoff_ms = MQTT_BACKOFF_MIN_MS;
	snprintf(m->reason, sizeof(m->reason), "connecting");
	if (mqtt_check_options(m, opt, cause) != 0)
		goto fail;
	m->url = strdup(opt->url);
	m->subscribe = opt->subscribe != NULL ? strdup(opt->subscribe) : NULL;
	if (m->url == NULL || (opt->subscribe != NULL && m->subscribe == NULL)) {
		mqtt_fail(cause, "out of memory");
		goto fail;
	}
	if (mqtt_setup_library(m, opt, cause) != 0)
		goto fail;
	m->ev_misc = event_new(base, -1, EV_PERSIST, mqtt_on_misc, m);
	m->ev_retry = evtimer_new(base, mqtt_on_retry, m);
	/* The first attempt runs from the loop, so no callback runs in here. */
	if (m->ev_misc == NULL || m->ev_retry == NULL || event_add(m->ev_misc, &misc) != 0 ||
	    event_add(m->ev_retry, &now) != 0) {
		mqtt_fail(cause, "broker %s: cannot add events", m->url);
		goto fail;
	}
	return m;
fail:
	mqtt_destroy(m);
	return NULL;
}

void mqtt_free(struct mqtt *m)
{
	if (m == NULL)
		return;
	memset(&m->cb, 0, sizeof(m->cb));
	m->dead = true;
	if (m->depth == 0)
		mqtt_destroy(m);
}

bool mqtt_connected(const struct mqtt *m)
{
	return m != NULL && !m->dead && m->phase == MQTT_UP;
}

const char *mqtt_state_reason(const struct mqtt *m)
{
	return m->reason;
}

int mqtt_publish(struct mqtt *m, const char *topic, const void *payload, size_t len)
{
	int mid = -1, rc;

	if (m == NULL || m->dead || m->phase != MQTT_UP || topic == NULL || len > INT_MAX)
		return -1;
	mqtt_enter(m);
	rc = mosquitto_publish(m->mosq, &mid, topic, (int)len, payload, 1, false);
	if (rc == MOSQ_ERR_CONN_LOST || rc == MOSQ_ERR_ERRNO || rc == MOSQ_ERR_NO_CONN) {
		/* The connection died under us, but the message was queued with
		 * its id before the write failed: libmosquitto sends it again
		 * after the reconnect, and its PUBACK comes then. */
		log_debug("mqtt", "%s: publish on %s (mid %d) waits for a reconnect: %s", m->url,
			topic, mid, mosquitto_strerror(rc));
	} else if (rc != MOSQ_ERR_SUCCESS) {
		log_warn("mqtt", "%s: cannot publish on %s: %s", m->url, topic,
			mosquitto_strerror(rc));
		mid = -1;
	}
	mqtt_leave(m);
	return mid > 0 ? mid : -1;
}

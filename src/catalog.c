/* catalog: parses and validates regions.json (SPEC §3) into an immutable,
 * refcounted struct catalog. Pure apart from catalog_load's file read. */
#include "catalog.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yajl/yajl_gen.h>
#include <yajl/yajl_parse.h>
#include <yajl/yajl_tree.h>

#include "jsonstrict.h"

#define CATALOG_DEPTH_MAX 16      /* the format needs 6 levels */
#define CATALOG_NAME_MAX 128      /* region display name, bytes */
#define CATALOG_PROTOCOL_MAX 16
#define CATALOG_ENDPOINTS_MAX 64  /* protocols per instance */
#define CATALOG_BROKER_HOST_MAX 253
#define CATALOG_USERNAME_MAX 256
#define CATALOG_ENV_NAME_MAX 128
#define CATALOG_PATH_MAX 4096
/* Length of {"code":200,"data":{"resources":{"mqtt":{"host":"","port":}}},"message":"success"}
 * and of ,"ip":"" — the fixed parts of the default answer (answer.h). */
#define CATALOG_ANSWER_FIXED 82
#define CATALOG_ANSWER_IP_FIXED 8

enum catalog_var {
	CATALOG_VAR_PRODUCT_KEY,
	CATALOG_VAR_DEVICE_NAME,
	CATALOG_VAR_REGION_ID,
	CATALOG_VAR_INSTANCE_ID,
	CATALOG_VAR_COUNT
};

static const char *const catalog_var_names[CATALOG_VAR_COUNT] = {
	"productKey", "deviceName", "regionId", "instanceId",
};

#define CATALOG_VARS_KNOWN "${productKey}, ${deviceName}, ${regionId}, ${instanceId}"

struct catalog_parser {
	const char *name;  /* file name for messages */
	char **cause;
	char where[256];   /* regions[3] ("eu-central-1").instances[0] ("iot-eu-1") */
};

/* Where an id was seen, to find duplicates after sorting. */
struct catalog_seen {
	const char *id;
	size_t region, instance;
};

static int catalog_fail(struct catalog_parser *p, const char *field, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int catalog_fail(struct catalog_parser *p, const char *field, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	bool dot = p->where[0] != '\0' && field[0] != '\0';
	bool sep = p->where[0] != '\0' || field[0] != '\0';

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (p->cause != NULL && asprintf(p->cause, "%s: %s%s%s%s%s", p->name, p->where,
			dot ? "." : "", field, sep ? ": " : "", msg) < 0)
		*p->cause = NULL;
	return -1;
}

/* Writes S quoted for a message: escaped, and cut after 40 bytes. */
static const char *catalog_quote(char *buf, size_t size, const char *s)
{
	size_t o = 0, i;

	buf[o++] = '"';
	for (i = 0; s[i] != '\0' && i < 40 && o + 10 < size; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '"' || c == '\\') {
			buf[o++] = '\\';
			buf[o++] = (char)c;
		} else if (c < 0x20 || c == 0x7f) {
			o += (size_t)snprintf(buf + o, size - o, "\\x%02x", c);
		} else {
			buf[o++] = (char)c;
		}
	}
	if (s[i] != '\0') {
		memcpy(buf + o, "...", 3);
		o += 3;
	}
	buf[o++] = '"';
	buf[o] = '\0';
	return buf;
}

static const char *catalog_type_name(yajl_val v)
{
	switch (v->type) {
	case yajl_t_string: return "a string";
	case yajl_t_number: return "a number";
	case yajl_t_object: return "an object";
	case yajl_t_array: return "an array";
	case yajl_t_true:
	case yajl_t_false: return "a boolean";
	default: return "null";
	}
}

static yajl_val catalog_get(yajl_val obj, const char *key)
{
	for (size_t i = 0; i < obj->u.object.len; i++)
		if (strcmp(obj->u.object.keys[i], key) == 0)
			return obj->u.object.values[i];
	return NULL;
}

static bool catalog_is_lower_id(const char *s)
{
	for (; *s != '\0'; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-'))
			return false;
	return true;
}

static bool catalog_is_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static bool catalog_is_instance_id(const char *s)
{
	for (; *s != '\0'; s++)
		if (!catalog_is_alnum(*s) && *s != '_' && *s != '.' && *s != '-')
			return false;
	return true;
}

static bool catalog_is_protocol(const char *s)
{
	for (; *s != '\0'; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9')))
			return false;
	return true;
}

static bool catalog_is_host_char(char c)
{
	return catalog_is_alnum(c) || c == '.' || c == '-';
}

static bool catalog_is_env_name(const char *s)
{
	if (!((*s >= 'A' && *s <= 'Z') || *s == '_'))
		return false;
	for (s++; *s != '\0'; s++)
		if (!((*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_'))
			return false;
	return true;
}

static bool catalog_has_control(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return true;
	return false;
}

/* Checks that OBJ has only keys from ALLOWED (NULL-terminated), each once.
 * Unknown keys are checked first, so the duplicate scan is bounded. */
static int catalog_check_keys(struct catalog_parser *p, yajl_val obj, const char *field,
	const char *const *allowed, const char *known)
{
	char q[96];

	for (size_t i = 0; i < obj->u.object.len; i++) {
		const char *key = obj->u.object.keys[i];
		size_t a;

		for (a = 0; allowed[a] != NULL; a++)
			if (strcmp(key, allowed[a]) == 0)
				break;
		if (allowed[a] == NULL)
			return catalog_fail(p, field, "unknown key %s (known: %s)",
				catalog_quote(q, sizeof(q), key), known);
		for (size_t j = 0; j < i; j++)
			if (strcmp(key, obj->u.object.keys[j]) == 0)
				return catalog_fail(p, field, "duplicate key %s",
					catalog_quote(q, sizeof(q), key));
	}
	return 0;
}

static int catalog_dup(struct catalog_parser *p, const char *field, const char *s, char **out)
{
	*out = strdup(s);
	if (*out == NULL)
		return catalog_fail(p, field, "out of memory");
	return 0;
}

/* A string of 1..MAX bytes without control characters. */
static int catalog_text(struct catalog_parser *p, yajl_val v, const char *field, size_t max,
	char **out)
{
	char q[96];
	size_t len;

	if (!YAJL_IS_STRING(v))
		return catalog_fail(p, field, "must be a string, got %s", catalog_type_name(v));
	len = strlen(v->u.string);
	if (len == 0 || len > max)
		return catalog_fail(p, field, "must be 1..%zu bytes, got %zu", max, len);
	if (catalog_has_control(v->u.string))
		return catalog_fail(p, field, "must not contain control characters, got %s",
			catalog_quote(q, sizeof(q), v->u.string));
	return catalog_dup(p, field, v->u.string, out);
}

static int catalog_coordinate(struct catalog_parser *p, yajl_val v, const char *field,
	double bound, double *out)
{
	if (v == NULL)
		return catalog_fail(p, field, "required");
	if (!YAJL_IS_NUMBER(v))
		return catalog_fail(p, field, "must be a number, got %s", catalog_type_name(v));
	if (!(v->u.number.flags & YAJL_NUMBER_DOUBLE_VALID) || v->u.number.d < -bound ||
			v->u.number.d > bound)
		return catalog_fail(p, field, "must be in [%g, %g], got %.40s", -bound, bound,
			v->u.number.r);
	*out = v->u.number.d;
	return 0;
}

static int catalog_port(struct catalog_parser *p, yajl_val v, const char *field, int *out)
{
	if (v == NULL)
		return catalog_fail(p, field, "required");
	if (!YAJL_IS_NUMBER(v))
		return catalog_fail(p, field, "must be a number 1..65535, got %s",
			catalog_type_name(v));
	if (!(v->u.number.flags & YAJL_NUMBER_INT_VALID))
		return catalog_fail(p, field, "must be an integer 1..65535, got %.40s", v->u.number.r);
	if (v->u.number.i < 1 || v->u.number.i > 65535)
		return catalog_fail(p, field, "must be 1..65535, got %.40s", v->u.number.r);
	*out = (int)v->u.number.i;
	return 0;
}

/* If S starts with a known ${variable}, returns it and sets *SKIP to its length. */
static int catalog_template_var(const char *s, size_t *skip)
{
	if (s[0] != '$' || s[1] != '{')
		return -1;
	for (int v = 0; v < CATALOG_VAR_COUNT; v++) {
		size_t n = strlen(catalog_var_names[v]);

		if (strncmp(s + 2, catalog_var_names[v], n) == 0 && s[2 + n] == '}') {
			*skip = n + 3;
			return v;
		}
	}
	return -1;
}

/* Validates a host template and returns its length with the longest values
 * substituted, and whether it needs the device's identity. Without DEVICE
 * (regionHost), ${productKey} and ${deviceName} are refused. */
static int catalog_check_host(struct catalog_parser *p, const char *field, const char *host,
	const char *region_id, const char *instance_id, bool device, size_t *maxlen,
	unsigned *uses)
{
	char q[96], q2[96];
	size_t len = 0, hostlen = strlen(host);
	unsigned vars = 0;

	if (hostlen == 0)
		return catalog_fail(p, field, "must not be empty");
	for (const char *s = host; *s != '\0';) {
		size_t skip;
		int var;

		if (*s != '$') {
			if (!catalog_is_host_char(*s)) {
				char c[2] = { *s, '\0' };

				return catalog_fail(p, field,
					"character %s at offset %zu of %s is not allowed "
					"(only A-Z a-z 0-9 . - and " CATALOG_VARS_KNOWN ")",
					catalog_quote(q, sizeof(q), c), (size_t)(s - host),
					catalog_quote(q2, sizeof(q2), host));
			}
			len++;
			s++;
			continue;
		}
		var = catalog_template_var(s, &skip);
		if (var < 0) {
			const char *end = s[1] == '{' ? strchr(s, '}') : NULL;

			if (end != NULL) {
				char name[48];
				size_t n = (size_t)(end - s) + 1;

				if (n >= sizeof(name))
					n = sizeof(name) - 1;
				memcpy(name, s, n);
				name[n] = '\0';
				return catalog_fail(p, field, "unknown variable %s in %s (known: "
					CATALOG_VARS_KNOWN ")", catalog_quote(q, sizeof(q), name),
					catalog_quote(q2, sizeof(q2), host));
			}
			return catalog_fail(p, field, "\"$\" at offset %zu of %s does not start a "
				"variable (known: " CATALOG_VARS_KNOWN ")", (size_t)(s - host),
				catalog_quote(q, sizeof(q), host));
		}
		if (!device && (var == CATALOG_VAR_PRODUCT_KEY || var == CATALOG_VAR_DEVICE_NAME))
			return catalog_fail(p, field, "%s uses ${%s}, but the regionId form knows no "
				"device (only ${regionId} and ${instanceId} may be used here)",
				catalog_quote(q, sizeof(q), host), catalog_var_names[var]);
		switch (var) {
		case CATALOG_VAR_PRODUCT_KEY:
			len += CATALOG_PRODUCT_KEY_MAX;
			vars |= CATALOG_USES_PRODUCT_KEY;
			break;
		case CATALOG_VAR_DEVICE_NAME:
			len += CATALOG_DEVICE_NAME_MAX;
			vars |= CATALOG_USES_DEVICE_NAME;
			break;
		case CATALOG_VAR_REGION_ID:
			len += strlen(region_id);
			break;
		default:
			len += strlen(instance_id);
			break;
		}
		s += skip;
	}
	if (host[0] == '.' || host[hostlen - 1] == '.' || strstr(host, "..") != NULL)
		return catalog_fail(p, field, "%s has an empty label (leading, trailing or double \".\")",
			catalog_quote(q, sizeof(q), host));
	if (len > CATALOG_HOST_MAX)
		return catalog_fail(p, field, "%s is %zu characters with the longest values substituted "
			"(${productKey} %d, ${deviceName} %d, ${regionId} and ${instanceId} their own ids), "
			"more than %d", catalog_quote(q, sizeof(q), host), len, CATALOG_PRODUCT_KEY_MAX,
			CATALOG_DEVICE_NAME_MAX, CATALOG_HOST_MAX);
	*maxlen = len;
	*uses = vars;
	return 0;
}

static size_t catalog_digits(int n)
{
	size_t d = 1;

	for (; n >= 10; n /= 10)
		d++;
	return d;
}

static int catalog_parse_endpoint(struct catalog_parser *p, yajl_val v, const char *protocol,
	const struct catalog_region *r, const struct catalog_instance *inst,
	struct catalog_endpoint *ep)
{
	static const char *const keys[] = { "host", "regionHost", "port", "ip", NULL };
	char field[64], sub[80], q[96];
	struct in_addr addr;
	yajl_val host, region_host, ip;
	size_t maxlen = 0, region_maxlen = 0;
	unsigned unused;

	snprintf(field, sizeof(field), "endpoints.%s", protocol);
	if (!YAJL_IS_OBJECT(v))
		return catalog_fail(p, field, "must be an object, got %s", catalog_type_name(v));
	if (catalog_check_keys(p, v, field, keys, "host, regionHost, port, ip") < 0)
		return -1;
	if (catalog_dup(p, field, protocol, &ep->protocol) < 0)
		return -1;

	snprintf(sub, sizeof(sub), "%s.host", field);
	host = catalog_get(v, "host");
	if (host == NULL)
		return catalog_fail(p, sub, "required");
	if (!YAJL_IS_STRING(host))
		return catalog_fail(p, sub, "must be a string, got %s", catalog_type_name(host));
	if (catalog_check_host(p, sub, host->u.string, r->id, inst->id, true, &maxlen, &ep->uses) < 0)
		return -1;
	ep->host_max = maxlen;
	ep->needs_device = ep->uses != 0;
	if (catalog_dup(p, sub, host->u.string, &ep->host) < 0)
		return -1;

	region_host = catalog_get(v, "regionHost");
	if (region_host != NULL) {
		snprintf(sub, sizeof(sub), "%s.regionHost", field);
		if (!YAJL_IS_STRING(region_host))
			return catalog_fail(p, sub, "must be a string, got %s",
				catalog_type_name(region_host));
		if (catalog_check_host(p, sub, region_host->u.string, r->id, inst->id, false,
				&region_maxlen, &unused) < 0)
			return -1;
		ep->region_host_max = region_maxlen;
		if (catalog_dup(p, sub, region_host->u.string, &ep->region_host) < 0)
			return -1;
	}

	snprintf(sub, sizeof(sub), "%s.port", field);
	if (catalog_port(p, catalog_get(v, "port"), sub, &ep->port) < 0)
		return -1;

	ip = catalog_get(v, "ip");
	if (ip != NULL) {
		snprintf(sub, sizeof(sub), "%s.ip", field);
		if (!YAJL_IS_STRING(ip))
			return catalog_fail(p, sub, "must be a string, got %s", catalog_type_name(ip));
		if (inet_pton(AF_INET, ip->u.string, &addr) != 1)
			return catalog_fail(p, sub, "must be an IPv4 address (a.b.c.d), got %s",
				catalog_quote(q, sizeof(q), ip->u.string));
		if (catalog_dup(p, sub, ip->u.string, &ep->ip) < 0)
			return -1;
	}

	/* The regionId form answers with regionHost: its answer has the same bound. */
	if (strcmp(protocol, "mqtt") == 0) {
		bool longer = region_maxlen > maxlen;
		size_t hostlen = longer ? region_maxlen : maxlen;
		size_t iplen = ep->ip != NULL ? CATALOG_ANSWER_IP_FIXED + strlen(ep->ip) : 0;
		size_t body = CATALOG_ANSWER_FIXED + hostlen + catalog_digits(ep->port) + iplen;

		if (body > CATALOG_ANSWER_MAX)
			return catalog_fail(p, field, "the default answer would be %zu bytes with the "
				"longest values substituted, more than %d (%d + %s %zu + port %zu + ip %zu)",
				body, CATALOG_ANSWER_MAX, CATALOG_ANSWER_FIXED,
				longer ? "regionHost" : "host", hostlen, catalog_digits(ep->port), iplen);
	}
	return 0;
}

static int catalog_parse_endpoints(struct catalog_parser *p, yajl_val v,
	const struct catalog_region *r, struct catalog_instance *inst)
{
	char q[96];
	size_t n, mqtt = SIZE_MAX;

	if (v == NULL)
		return catalog_fail(p, "endpoints", "required");
	if (!YAJL_IS_OBJECT(v))
		return catalog_fail(p, "endpoints", "must be an object, got %s", catalog_type_name(v));
	n = v->u.object.len;
	if (n == 0)
		return catalog_fail(p, "endpoints", "must name at least one protocol");
	if (n > CATALOG_ENDPOINTS_MAX)
		return catalog_fail(p, "endpoints", "%zu protocols, more than %d", n,
			CATALOG_ENDPOINTS_MAX);
	for (size_t i = 0; i < n; i++) {
		const char *name = v->u.object.keys[i];
		size_t len = strlen(name);

		if (len == 0 || len > CATALOG_PROTOCOL_MAX || !catalog_is_protocol(name))
			return catalog_fail(p, "endpoints", "protocol name %s must be 1..%d characters "
				"of [a-z0-9]", catalog_quote(q, sizeof(q), name), CATALOG_PROTOCOL_MAX);
		for (size_t j = 0; j < i; j++)
			if (strcmp(name, v->u.object.keys[j]) == 0)
				return catalog_fail(p, "endpoints", "duplicate protocol %s",
					catalog_quote(q, sizeof(q), name));
		if (strcmp(name, "mqtt") == 0)
			mqtt = i;
	}
	inst->endpoints = calloc(n, sizeof(*inst->endpoints));
	if (inst->endpoints == NULL)
		return catalog_fail(p, "endpoints", "out of memory");
	inst->nendpoints = n;
	/* Checked in file order, stored with mqtt first (SDKs take the first host). */
	for (size_t i = 0; i < n; i++) {
		size_t slot = i;

		if (i == mqtt)
			slot = 0;
		else if (mqtt != SIZE_MAX && i < mqtt)
			slot = i + 1;
		if (catalog_parse_endpoint(p, v->u.object.values[i], v->u.object.keys[i], r, inst,
				&inst->endpoints[slot]) < 0)
			return -1;
	}
	return 0;
}

/* Splits mqtt[s]://host[:port]; stores the URL normalized with its port. */
static int catalog_parse_broker(struct catalog_parser *p, const char *url,
	struct catalog_notify *n)
{
	static const char *const field = "notify.broker";
	char q[96], host[CATALOG_BROKER_HOST_MAX + 1];
	const char *rest, *after, *scheme;
	size_t hostlen;
	bool v6 = false;
	int port;

	if (strncmp(url, "mqtt://", 7) == 0) {
		scheme = "mqtt";
		rest = url + 7;
		port = 1883;
	} else if (strncmp(url, "mqtts://", 8) == 0) {
		scheme = "mqtts";
		rest = url + 8;
		port = 8883;
		n->broker_tls = true;
	} else {
		return catalog_fail(p, field, "must be mqtt://host:port or mqtts://host:port, got %s",
			catalog_quote(q, sizeof(q), url));
	}
	if (strchr(rest, '@') != NULL)
		return catalog_fail(p, field, "must not carry credentials: use \"username\" and "
			"\"password_env\"");
	if (rest[0] == '[') {
		const char *end = strchr(rest, ']');
		struct in6_addr addr;

		hostlen = end != NULL ? (size_t)(end - rest - 1) : 0;
		if (end == NULL || hostlen >= INET6_ADDRSTRLEN)
			return catalog_fail(p, field, "bad [IPv6 address] in %s",
				catalog_quote(q, sizeof(q), url));
		memcpy(host, rest + 1, hostlen);
		host[hostlen] = '\0';
		if (inet_pton(AF_INET6, host, &addr) != 1)
			return catalog_fail(p, field, "bad [IPv6 address] in %s",
				catalog_quote(q, sizeof(q), url));
		v6 = true;
		after = end + 1;
	} else {
		hostlen = strcspn(rest, ":/?#");
		if (hostlen == 0 || hostlen > CATALOG_BROKER_HOST_MAX)
			return catalog_fail(p, field, "must name a host of 1..%d characters, got %s",
				CATALOG_BROKER_HOST_MAX, catalog_quote(q, sizeof(q), url));
		for (size_t i = 0; i < hostlen; i++)
			if (!catalog_is_host_char(rest[i]))
				return catalog_fail(p, field, "bad host name in %s (only A-Z a-z 0-9 . -)",
					catalog_quote(q, sizeof(q), url));
		memcpy(host, rest, hostlen);
		host[hostlen] = '\0';
		after = rest + hostlen;
	}
	if (after[0] == ':') {
		size_t digits = strspn(after + 1, "0123456789");
		long value = 0;

		for (size_t i = 0; i < digits && i < 6; i++)
			value = value * 10 + (after[1 + i] - '0');
		if (digits == 0 || digits > 5 || value < 1 || value > 65535)
			return catalog_fail(p, field, "port must be 1..65535 in %s",
				catalog_quote(q, sizeof(q), url));
		port = (int)value;
		after += 1 + digits;
	}
	if (after[0] != '\0')
		return catalog_fail(p, field, "unexpected %s after host and port (no path, query or "
			"fragment)", catalog_quote(q, sizeof(q), after));
	n->broker_port = port;
	if (catalog_dup(p, field, host, &n->broker_host) < 0)
		return -1;
	if (asprintf(&n->broker, "%s://%s%s%s:%d", scheme, v6 ? "[" : "", host, v6 ? "]" : "",
			port) < 0) {
		n->broker = NULL;
		return catalog_fail(p, field, "out of memory");
	}
	return 0;
}

static int catalog_parse_notify(struct catalog_parser *p, yajl_val v, struct catalog_notify *n)
{
	static const char *const keys[] = { "broker", "username", "password_env", "ca_file", "cert_file",
		"key_file", NULL };
	char q[96];
	yajl_val broker, f;

	if (!YAJL_IS_OBJECT(v))
		return catalog_fail(p, "notify", "must be an object, got %s", catalog_type_name(v));
	if (catalog_get(v, "password") != NULL)
		return catalog_fail(p, "notify.password", "passwords do not belong in the catalog: "
			"put it in an environment variable and name that in \"password_env\"");
	if (catalog_check_keys(p, v, "notify", keys,
		    "broker, username, password_env, ca_file, cert_file, key_file") < 0)
		return -1;
	broker = catalog_get(v, "broker");
	if (broker == NULL)
		return catalog_fail(p, "notify.broker", "required");
	if (!YAJL_IS_STRING(broker))
		return catalog_fail(p, "notify.broker", "must be a string, got %s",
			catalog_type_name(broker));
	if (catalog_parse_broker(p, broker->u.string, n) < 0)
		return -1;
	f = catalog_get(v, "username");
	if (f != NULL && catalog_text(p, f, "notify.username", CATALOG_USERNAME_MAX, &n->username) < 0)
		return -1;
	f = catalog_get(v, "password_env");
	if (f != NULL) {
		if (!YAJL_IS_STRING(f))
			return catalog_fail(p, "notify.password_env", "must be a string, got %s",
				catalog_type_name(f));
		if (strlen(f->u.string) > CATALOG_ENV_NAME_MAX || !catalog_is_env_name(f->u.string))
			return catalog_fail(p, "notify.password_env", "must name an environment "
				"variable ([A-Z_][A-Z0-9_]*, at most %d), got %s", CATALOG_ENV_NAME_MAX,
				catalog_quote(q, sizeof(q), f->u.string));
		if (catalog_dup(p, "notify.password_env", f->u.string, &n->password_env) < 0)
			return -1;
	}
	f = catalog_get(v, "ca_file");
	if (f != NULL) {
		if (catalog_text(p, f, "notify.ca_file", CATALOG_PATH_MAX, &n->ca_file) < 0)
			return -1;
		if (!n->broker_tls)
			return catalog_fail(p, "notify.ca_file", "needs an mqtts:// broker");
	}
	/* A client certificate for brokers that ask for one: both files or neither. */
	f = catalog_get(v, "cert_file");
	if (f != NULL && catalog_text(p, f, "notify.cert_file", CATALOG_PATH_MAX, &n->cert_file) < 0)
		return -1;
	f = catalog_get(v, "key_file");
	if (f != NULL && catalog_text(p, f, "notify.key_file", CATALOG_PATH_MAX, &n->key_file) < 0)
		return -1;
	if ((n->cert_file != NULL) != (n->key_file != NULL))
		return catalog_fail(p, n->cert_file ? "notify.key_file" : "notify.cert_file",
			"cert_file and key_file go together");
	if (n->cert_file && !n->broker_tls)
		return catalog_fail(p, "notify.cert_file", "needs an mqtts:// broker");
	return 0;
}

/* Reads V's "id": a string of 1..MAX characters accepted by VALID. */
static int catalog_parse_id(struct catalog_parser *p, yajl_val v, size_t max, bool (*valid)(const char *),
	const char *charset, char **out)
{
	yajl_val id = catalog_get(v, "id");
	char q[96];
	size_t len;

	if (id == NULL)
		return catalog_fail(p, "id", "required");
	if (!YAJL_IS_STRING(id))
		return catalog_fail(p, "id", "must be a string, got %s", catalog_type_name(id));
	len = strlen(id->u.string);
	if (len == 0 || len > max || !valid(id->u.string))
		return catalog_fail(p, "id", "must be 1..%zu characters of %s, got %s", max, charset,
			catalog_quote(q, sizeof(q), id->u.string));
	return catalog_dup(p, "id", id->u.string, out);
}

static int catalog_parse_instance(struct catalog_parser *p, yajl_val v, size_t index,
	const char *region_where, struct catalog_region *r, struct catalog_instance *inst)
{
	static const char *const keys[] = { "id", "default", "endpoints", "notify", NULL };
	yajl_val def, notify;

	inst->region = r;
	snprintf(p->where, sizeof(p->where), "%s.instances[%zu]", region_where, index);
	if (!YAJL_IS_OBJECT(v))
		return catalog_fail(p, "", "must be an object, got %s", catalog_type_name(v));
	if (catalog_parse_id(p, v, CATALOG_INSTANCE_ID_MAX, catalog_is_instance_id, "[A-Za-z0-9_.-]",
		    &inst->id) < 0)
		return -1;
	snprintf(p->where, sizeof(p->where), "%s.instances[%zu] (\"%s\")", region_where, index,
		inst->id);
	if (catalog_check_keys(p, v, "", keys, "id, default, endpoints, notify") < 0)
		return -1;
	def = catalog_get(v, "default");
	if (def != NULL) {
		if (!YAJL_IS_TRUE(def) && !YAJL_IS_FALSE(def))
			return catalog_fail(p, "default", "must be true or false, got %s",
				catalog_type_name(def));
		inst->is_default = YAJL_IS_TRUE(def);
	}
	if (catalog_parse_endpoints(p, catalog_get(v, "endpoints"), r, inst) < 0)
		return -1;
	notify = catalog_get(v, "notify");
	if (notify != NULL && catalog_parse_notify(p, notify, &inst->notify) < 0)
		return -1;
	return 0;
}

/* "aliases": other names of the region in the regionId form. They keep the
 * region id rules, being path segments of the same URL. Uniqueness against
 * every id and alias is checked once all regions are read (catalog_index). */
static int catalog_parse_aliases(struct catalog_parser *p, yajl_val v, struct catalog_region *r)
{
	char field[32], q[96];
	size_t n;

	if (!YAJL_IS_ARRAY(v))
		return catalog_fail(p, "aliases", "must be an array of strings, got %s",
			catalog_type_name(v));
	n = v->u.array.len;
	if (n > CATALOG_ALIASES_MAX)
		return catalog_fail(p, "aliases", "%zu aliases, more than %d", n, CATALOG_ALIASES_MAX);
	if (n == 0)
		return 0;
	r->aliases = calloc(n, sizeof(*r->aliases));
	if (r->aliases == NULL)
		return catalog_fail(p, "aliases", "out of memory");
	for (size_t i = 0; i < n; i++) {
		yajl_val a = v->u.array.values[i];
		size_t len;

		snprintf(field, sizeof(field), "aliases[%zu]", i);
		if (!YAJL_IS_STRING(a))
			return catalog_fail(p, field, "must be a string, got %s", catalog_type_name(a));
		len = strlen(a->u.string);
		if (len == 0 || len > CATALOG_REGION_ID_MAX || !catalog_is_lower_id(a->u.string))
			return catalog_fail(p, field, "must be 1..%d characters of [a-z0-9-], got %s",
				CATALOG_REGION_ID_MAX, catalog_quote(q, sizeof(q), a->u.string));
		if (catalog_dup(p, field, a->u.string, &r->aliases[i]) < 0)
			return -1;
		r->naliases = i + 1;
	}
	return 0;
}

static int catalog_parse_region(struct catalog_parser *p, yajl_val v, size_t index,
	struct catalog_region *r)
{
	static const char *const keys[] = { "id", "name", "aliases", "latitude", "longitude",
		"instances", NULL };
	char where[128];
	yajl_val name, aliases, instances;
	size_t first_default = SIZE_MAX;

	snprintf(p->where, sizeof(p->where), "regions[%zu]", index);
	if (!YAJL_IS_OBJECT(v))
		return catalog_fail(p, "", "must be an object, got %s", catalog_type_name(v));
	if (catalog_parse_id(p, v, CATALOG_REGION_ID_MAX, catalog_is_lower_id, "[a-z0-9-]", &r->id) < 0)
		return -1;
	snprintf(where, sizeof(where), "regions[%zu] (\"%s\")", index, r->id);
	snprintf(p->where, sizeof(p->where), "%s", where);
	if (catalog_check_keys(p, v, "", keys, "id, name, aliases, latitude, longitude, instances") < 0)
		return -1;

	name = catalog_get(v, "name");
	if (name != NULL) {
		if (catalog_text(p, name, "name", CATALOG_NAME_MAX, &r->name) < 0)
			return -1;
	} else if (catalog_dup(p, "name", r->id, &r->name) < 0) {
		return -1;
	}
	aliases = catalog_get(v, "aliases");
	if (aliases != NULL && catalog_parse_aliases(p, aliases, r) < 0)
		return -1;
	if (catalog_coordinate(p, catalog_get(v, "latitude"), "latitude", 90, &r->latitude) < 0 ||
			catalog_coordinate(p, catalog_get(v, "longitude"), "longitude", 180,
				&r->longitude) < 0)
		return -1;

	instances = catalog_get(v, "instances");
	if (instances == NULL)
		return catalog_fail(p, "instances", "required");
	if (!YAJL_IS_ARRAY(instances))
		return catalog_fail(p, "instances", "must be an array, got %s",
			catalog_type_name(instances));
	if (instances->u.array.len == 0)
		return catalog_fail(p, "instances", "must hold at least one instance");
	r->instances = calloc(instances->u.array.len, sizeof(*r->instances));
	if (r->instances == NULL)
		return catalog_fail(p, "instances", "out of memory");
	r->ninstances = instances->u.array.len;
	for (size_t i = 0; i < r->ninstances; i++) {
		struct catalog_instance *inst = &r->instances[i];

		if (catalog_parse_instance(p, instances->u.array.values[i], i, where, r, inst) < 0)
			return -1;
		if (!inst->is_default)
			continue;
		if (first_default != SIZE_MAX)
			return catalog_fail(p, "default", "a second default instance in this region "
				"(instances[%zu] (\"%s\") is the default already)", first_default,
				r->instances[first_default].id);
		first_default = i;
	}
	snprintf(p->where, sizeof(p->where), "%s", where);
	return 0;
}

static int catalog_seen_cmp(const void *a, const void *b)
{
	const struct catalog_seen *x = a, *y = b;
	int c = strcmp(x->id, y->id);

	if (c != 0)
		return c;
	if (x->region != y->region)
		return x->region < y->region ? -1 : 1;
	if (x->instance != y->instance)
		return x->instance < y->instance ? -1 : 1;
	return 0;
}

/* Sorts SEEN and returns the index of the duplicate that comes first in the
 * file (its earlier twin is at index - 1), or SIZE_MAX. */
static size_t catalog_first_duplicate(struct catalog_seen *seen, size_t n)
{
	size_t best = SIZE_MAX;

	qsort(seen, n, sizeof(*seen), catalog_seen_cmp);
	for (size_t k = 1; k < n; k++) {
		if (strcmp(seen[k].id, seen[k - 1].id) != 0)
			continue;
		if (k >= 2 && strcmp(seen[k].id, seen[k - 2].id) == 0)
			continue; /* only the second of a group matters */
		if (best == SIZE_MAX || seen[k].region < seen[best].region ||
				(seen[k].region == seen[best].region &&
					seen[k].instance < seen[best].instance))
			best = k;
	}
	return best;
}

/* Says what S is (a region id: .instance 0, alias k: .instance k + 1) as seen
 * from regions[HERE]. */
static const char *catalog_seen_what(const struct catalog *cat, const struct catalog_seen *s,
	size_t here, char *buf, size_t size)
{
	if (s->instance == 0 && s->region == here)
		snprintf(buf, size, "this region's id");
	else if (s->instance == 0)
		snprintf(buf, size, "the id of regions[%zu]", s->region);
	else if (s->region == here)
		snprintf(buf, size, "aliases[%zu] of this region", s->instance - 1);
	else
		snprintf(buf, size, "aliases[%zu] of regions[%zu] (\"%s\")", s->instance - 1,
			s->region, cat->regions[s->region].id);
	return buf;
}

/* Checks that region ids and aliases are unique together, and builds the
 * sorted index the lookups search. */
static int catalog_index(struct catalog_parser *p, struct catalog *cat)
{
	struct catalog_seen *seen = NULL;
	size_t n = cat->nregions, k;
	char what[160];
	int rc = -1;

	p->where[0] = '\0';
	for (size_t r = 0; r < cat->nregions; r++)
		n += cat->regions[r].naliases;
	seen = calloc(n, sizeof(*seen));
	cat->names = calloc(n, sizeof(*cat->names));
	if (seen == NULL || cat->names == NULL) {
		catalog_fail(p, "regions", "out of memory");
		goto out;
	}
	n = 0;
	for (size_t r = 0; r < cat->nregions; r++) {
		const struct catalog_region *reg = &cat->regions[r];

		seen[n++] = (struct catalog_seen){ reg->id, r, 0 };
		for (size_t a = 0; a < reg->naliases; a++)
			seen[n++] = (struct catalog_seen){ reg->aliases[a], r, a + 1 };
	}
	k = catalog_first_duplicate(seen, n);
	if (k != SIZE_MAX) {
		const struct catalog_seen *a = &seen[k - 1], *b = &seen[k];

		snprintf(p->where, sizeof(p->where), "regions[%zu] (\"%s\")", b->region,
			cat->regions[b->region].id);
		catalog_seen_what(cat, a, b->region, what, sizeof(what));
		if (b->instance == 0 && a->instance == 0)
			catalog_fail(p, "id", "duplicate region id (regions[%zu] has it already)",
				a->region);
		else if (b->instance == 0)
			catalog_fail(p, "id", "region id \"%s\" is %s already (region ids and "
				"aliases are unique across the catalog)", b->id, what);
		else {
			char field[32];

			snprintf(field, sizeof(field), "aliases[%zu]", b->instance - 1);
			catalog_fail(p, field, "alias \"%s\" is %s already (region ids and aliases "
				"are unique across the catalog)", b->id, what);
		}
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		cat->names[i] = (struct catalog_name){ seen[i].id, &cat->regions[seen[i].region],
			seen[i].instance != 0 };
	cat->nnames = n;
	rc = 0;
out:
	free(seen);
	return rc;
}

static int catalog_check_unique(struct catalog_parser *p, const struct catalog *cat)
{
	struct catalog_seen *seen = NULL;
	size_t n = 0, k;
	int rc = -1;

	p->where[0] = '\0';
	for (size_t r = 0; r < cat->nregions; r++)
		n += cat->regions[r].ninstances;
	seen = calloc(n, sizeof(*seen));
	if (seen == NULL) {
		catalog_fail(p, "regions", "out of memory");
		goto out;
	}
	n = 0;
	for (size_t r = 0; r < cat->nregions; r++)
		for (size_t i = 0; i < cat->regions[r].ninstances; i++)
			seen[n++] = (struct catalog_seen){ cat->regions[r].instances[i].id, r, i };
	k = catalog_first_duplicate(seen, n);
	if (k != SIZE_MAX) {
		const struct catalog_seen *a = &seen[k - 1], *b = &seen[k];

		snprintf(p->where, sizeof(p->where), "regions[%zu] (\"%s\").instances[%zu] (\"%s\")",
			b->region, cat->regions[b->region].id, b->instance, b->id);
		catalog_fail(p, "id", "duplicate instance id (regions[%zu] (\"%s\").instances[%zu] "
			"has it already; instance ids are unique across all regions)", a->region,
			cat->regions[a->region].id, a->instance);
		goto out;
	}
	rc = 0;
out:
	free(seen);
	return rc;
}

/* The strict pass first: yajl_tree_parse alone would accept comments and
 * could not say where a syntax error is. */
static int catalog_scan(struct catalog_parser *p, const char *json, size_t len)
{
	struct jsonstrict_error e;

	if (jsonstrict_check(json, len, CATALOG_DEPTH_MAX, &e) == 0)
		return 0;
	if (p->cause != NULL && asprintf(p->cause, "%s:%zu:%zu: %s", p->name, e.line, e.col, e.message) < 0)
		*p->cause = NULL;
	return -1;
}

static void catalog_free(struct catalog *cat)
{
	if (cat == NULL)
		return;
	for (size_t r = 0; r < cat->nregions; r++) {
		struct catalog_region *reg = &cat->regions[r];

		for (size_t i = 0; i < reg->ninstances; i++) {
			struct catalog_instance *inst = &reg->instances[i];

			for (size_t e = 0; e < inst->nendpoints; e++) {
				free(inst->endpoints[e].protocol);
				free(inst->endpoints[e].host);
				free(inst->endpoints[e].ip);
				free(inst->endpoints[e].region_host);
			}
			free(inst->endpoints);
			free(inst->notify.broker);
			free(inst->notify.broker_host);
			free(inst->notify.username);
			free(inst->notify.password_env);
			free(inst->notify.ca_file);
			free(inst->notify.cert_file);
			free(inst->notify.key_file);
			free(inst->id);
		}
		free(reg->instances);
		for (size_t a = 0; a < reg->naliases; a++)
			free(reg->aliases[a]);
		free(reg->aliases);
		free(reg->id);
		free(reg->name);
	}
	free(cat->regions);
	free(cat->names);
	free(cat);
}

int catalog_parse(const char *json, size_t len, const char *name, struct catalog **out,
	char **cause)
{
	static const char *const keys[] = { "regions", NULL };
	struct catalog_parser p = { name != NULL ? name : "catalog", cause, "" };
	struct catalog *cat = NULL;
	yajl_val tree = NULL, regions;
	char *buf = NULL, err[256];
	int rc = -1;

	*out = NULL;
	if (cause != NULL)
		*cause = NULL;
	if (len > CATALOG_FILE_MAX) {
		catalog_fail(&p, "", "%zu bytes, more than the %d byte limit", len, CATALOG_FILE_MAX);
		goto out;
	}
	if (len >= 3 && memcmp(json, "\xef\xbb\xbf", 3) == 0) {
		json += 3;
		len -= 3;
	}
	if (catalog_scan(&p, json, len) < 0)
		goto out;
	buf = malloc(len + 1);
	if (buf == NULL) {
		catalog_fail(&p, "", "out of memory");
		goto out;
	}
	memcpy(buf, json, len);
	buf[len] = '\0';
	err[0] = '\0';
	tree = yajl_tree_parse(buf, err, sizeof(err));
	if (tree == NULL) {
		catalog_fail(&p, "", "%.*s", (int)strcspn(err, "\n"), err[0] ? err : "parse error");
		goto out;
	}
	if (!YAJL_IS_OBJECT(tree)) {
		catalog_fail(&p, "", "the top level must be an object, got %s",
			catalog_type_name(tree));
		goto out;
	}
	if (catalog_check_keys(&p, tree, "", keys, "regions") < 0)
		goto out;
	regions = catalog_get(tree, "regions");
	if (regions == NULL) {
		catalog_fail(&p, "regions", "required");
		goto out;
	}
	if (!YAJL_IS_ARRAY(regions)) {
		catalog_fail(&p, "regions", "must be an array, got %s", catalog_type_name(regions));
		goto out;
	}
	if (regions->u.array.len == 0) {
		catalog_fail(&p, "regions", "must hold at least one region");
		goto out;
	}
	cat = calloc(1, sizeof(*cat));
	if (cat == NULL || (cat->regions = calloc(regions->u.array.len,
			sizeof(*cat->regions))) == NULL) {
		catalog_fail(&p, "regions", "out of memory");
		goto out;
	}
	cat->nregions = regions->u.array.len;
	cat->refs = 1;
	for (size_t r = 0; r < cat->nregions; r++)
		if (catalog_parse_region(&p, regions->u.array.values[r], r, &cat->regions[r]) < 0)
			goto out;
	if (catalog_index(&p, cat) < 0 || catalog_check_unique(&p, cat) < 0)
		goto out;
	*out = cat;
	cat = NULL;
	rc = 0;
out:
	catalog_free(cat);
	yajl_tree_free(tree);
	free(buf);
	return rc;
}

/* A relative ca_file, cert_file or key_file means relative to the catalog's folder, like the
 * relative paths in the configuration file. */
static int catalog_resolve_paths(struct catalog *cat, const char *path, char **cause)
{
	const char *slash = strrchr(path, '/');
	int dirlen;

	if (slash == NULL)
		return 0;
	dirlen = (int)(slash - path); /* 0 for "/regions.json": "/" + ca_file */
	for (size_t r = 0; r < cat->nregions; r++) {
		for (size_t i = 0; i < cat->regions[r].ninstances; i++) {
			struct catalog_notify *n = &cat->regions[r].instances[i].notify;
			char **files[] = { &n->ca_file, &n->cert_file, &n->key_file };

			for (size_t k = 0; k < sizeof(files) / sizeof(files[0]); k++) {
				char *abs;
				if (*files[k] == NULL || (*files[k])[0] == '/')
					continue;
				if (asprintf(&abs, "%.*s/%s", dirlen, path, *files[k]) < 0) {
					if (cause != NULL && asprintf(cause, "%s: out of memory", path) < 0)
						*cause = NULL;
					return -1;
				}
				free(*files[k]);
				*files[k] = abs;
			}
		}
	}
	return 0;
}

int catalog_load(const char *path, struct catalog **out, char **cause)
{
	struct catalog *cat = NULL;
	struct stat st;
	char *buf = NULL;
	size_t size, got = 0;
	int fd, rc = -1;

	*out = NULL;
	if (cause != NULL)
		*cause = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (cause != NULL && asprintf(cause, "%s: cannot open: %s", path, strerror(errno)) < 0)
			*cause = NULL;
		return -1;
	}
	if (fstat(fd, &st) < 0) {
		if (cause != NULL && asprintf(cause, "%s: %s", path, strerror(errno)) < 0)
			*cause = NULL;
		goto out;
	}
	if (!S_ISREG(st.st_mode) || st.st_size > CATALOG_FILE_MAX) {
		if (cause != NULL && asprintf(cause, "%s: %s", path, !S_ISREG(st.st_mode) ?
				"not a regular file" : "bigger than the 16 MiB limit") < 0)
			*cause = NULL;
		goto out;
	}
	size = (size_t)st.st_size;
	buf = malloc(size + 1);
	if (buf == NULL) {
		if (cause != NULL && asprintf(cause, "%s: out of memory", path) < 0)
			*cause = NULL;
		goto out;
	}
	while (got < size) {
		ssize_t n = read(fd, buf + got, size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			if (cause != NULL && asprintf(cause, "%s: read: %s", path, strerror(errno)) < 0)
				*cause = NULL;
			goto out;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	if (catalog_parse(buf, got, path, &cat, cause) < 0 ||
			catalog_resolve_paths(cat, path, cause) < 0)
		goto out;
	*out = cat;
	cat = NULL;
	rc = 0;
out:
	catalog_free(cat);
	free(buf);
	close(fd);
	return rc;
}

struct catalog *catalog_ref(struct catalog *cat)
{
	if (cat != NULL)
		__atomic_fetch_add(&cat->refs, 1, __ATOMIC_RELAXED);
	return cat;
}

void catalog_unref(struct catalog *cat)
{
	if (cat != NULL && __atomic_sub_fetch(&cat->refs, 1, __ATOMIC_ACQ_REL) == 0)
		catalog_free(cat);
}

static int catalog_name_cmp(const void *key, const void *elem)
{
	return strcmp(key, ((const struct catalog_name *)elem)->name);
}

static const struct catalog_name *catalog_name_find(const struct catalog *cat, const char *name)
{
	if (cat == NULL || name == NULL || cat->nnames == 0)
		return NULL;
	return bsearch(name, cat->names, cat->nnames, sizeof(*cat->names), catalog_name_cmp);
}

const struct catalog_region *catalog_region(const struct catalog *cat, const char *id)
{
	const struct catalog_name *n = catalog_name_find(cat, id);

	return n != NULL && !n->alias ? n->region : NULL;
}

const struct catalog_region *catalog_region_named(const struct catalog *cat, const char *name)
{
	const struct catalog_name *n = catalog_name_find(cat, name);

	return n != NULL ? n->region : NULL;
}

const struct catalog_instance *catalog_instance(const struct catalog_region *r, const char *id)
{
	if (r == NULL || id == NULL)
		return NULL;
	for (size_t i = 0; i < r->ninstances; i++)
		if (strcmp(r->instances[i].id, id) == 0)
			return &r->instances[i];
	return NULL;
}

const struct catalog_instance *catalog_find_instance(const struct catalog *cat, const char *id)
{
	if (cat == NULL)
		return NULL;
	for (size_t r = 0; r < cat->nregions; r++) {
		const struct catalog_instance *inst = catalog_instance(&cat->regions[r], id);

		if (inst != NULL)
			return inst;
	}
	return NULL;
}

const struct catalog_instance *catalog_default_instance(const struct catalog_region *r)
{
	if (r == NULL || r->ninstances == 0)
		return NULL;
	for (size_t i = 0; i < r->ninstances; i++)
		if (r->instances[i].is_default)
			return &r->instances[i];
	return &r->instances[0];
}

const struct catalog_endpoint *catalog_endpoint(const struct catalog_instance *i,
	const char *protocol)
{
	if (i == NULL || protocol == NULL)
		return NULL;
	for (size_t e = 0; e < i->nendpoints; e++)
		if (strcmp(i->endpoints[e].protocol, protocol) == 0)
			return &i->endpoints[e];
	return NULL;
}

static int catalog_render(const char *host, const struct catalog_instance *inst,
	const struct catalog_vars *vars, char *buf, size_t len)
{
	size_t o = 0;

	if (host == NULL || buf == NULL || len == 0)
		return -1;
	for (const char *s = host; *s != '\0';) {
		const char *val = s;
		size_t n = 1, skip, max = SIZE_MAX;

		if (*s == '$') {
			switch (catalog_template_var(s, &skip)) {
			case CATALOG_VAR_PRODUCT_KEY:
				val = vars != NULL ? vars->product_key : NULL;
				max = CATALOG_PRODUCT_KEY_MAX;
				break;
			case CATALOG_VAR_DEVICE_NAME:
				val = vars != NULL ? vars->device_name : NULL;
				max = CATALOG_DEVICE_NAME_MAX;
				break;
			case CATALOG_VAR_REGION_ID:
				val = inst != NULL && inst->region != NULL ? inst->region->id : NULL;
				break;
			case CATALOG_VAR_INSTANCE_ID:
				val = inst != NULL ? inst->id : NULL;
				break;
			default:
				return -1;
			}
			if (val == NULL || val[0] == '\0')
				return -1;
			n = strlen(val);
			if (n > max)
				return -1; /* longer than validation assumed */
			s += skip;
		} else {
			s++;
		}
		if (n >= len - o || o + n > INT_MAX)
			return -1;
		memcpy(buf + o, val, n);
		o += n;
	}
	buf[o] = '\0';
	return (int)o;
}

int catalog_render_host(const struct catalog_endpoint *ep, const struct catalog_instance *inst,
	const struct catalog_vars *vars, char *buf, size_t len)
{
	return catalog_render(ep != NULL ? ep->host : NULL, inst, vars, buf, len);
}

int catalog_render_region_host(const struct catalog_endpoint *ep,
	const struct catalog_instance *inst, char *buf, size_t len)
{
	if (ep == NULL)
		return -1;
	/* No vars: a ${productKey} or ${deviceName} in the host fails to render. */
	return catalog_render(ep->region_host != NULL ? ep->region_host : ep->host, inst, NULL,
		buf, len);
}

static yajl_gen_status catalog_gen_str(yajl_gen g, const char *s)
{
	return yajl_gen_string(g, (const unsigned char *)s, strlen(s));
}

/* yajl_gen_double prints %.17g (31.230399999999999); print the shortest
 * text that reads back as the same double instead. */
static yajl_gen_status catalog_gen_double(yajl_gen g, double d)
{
	char buf[40];

	for (int prec = 1; prec <= 17; prec++) {
		snprintf(buf, sizeof(buf), "%.*g", prec, d);
		if (strtod(buf, NULL) == d)
			break;
	}
	return yajl_gen_number(g, buf, strlen(buf));
}

static int catalog_gen_kv(yajl_gen g, const char *key, const char *value)
{
	if (value == NULL)
		return 0;
	if (catalog_gen_str(g, key) != yajl_gen_status_ok ||
			catalog_gen_str(g, value) != yajl_gen_status_ok)
		return -1;
	return 0;
}

/* "aliases" only when the region has some, as in the file. */
static int catalog_gen_aliases(yajl_gen g, const struct catalog_region *reg)
{
	if (reg->naliases == 0)
		return 0;
	if (catalog_gen_str(g, "aliases") != yajl_gen_status_ok ||
			yajl_gen_array_open(g) != yajl_gen_status_ok)
		return -1;
	for (size_t a = 0; a < reg->naliases; a++)
		if (catalog_gen_str(g, reg->aliases[a]) != yajl_gen_status_ok)
			return -1;
	return yajl_gen_array_close(g) == yajl_gen_status_ok ? 0 : -1;
}

static int catalog_gen_instance(yajl_gen g, const struct catalog_instance *inst)
{
	const struct catalog_notify *n = &inst->notify;

	if (yajl_gen_map_open(g) != yajl_gen_status_ok || catalog_gen_kv(g, "id", inst->id) < 0 ||
			catalog_gen_str(g, "default") != yajl_gen_status_ok ||
			yajl_gen_bool(g, inst->is_default) != yajl_gen_status_ok ||
			catalog_gen_str(g, "endpoints") != yajl_gen_status_ok ||
			yajl_gen_map_open(g) != yajl_gen_status_ok)
		return -1;
	for (size_t e = 0; e < inst->nendpoints; e++) {
		const struct catalog_endpoint *ep = &inst->endpoints[e];

		if (catalog_gen_str(g, ep->protocol) != yajl_gen_status_ok ||
				yajl_gen_map_open(g) != yajl_gen_status_ok ||
				catalog_gen_kv(g, "host", ep->host) < 0 ||
				catalog_gen_kv(g, "regionHost", ep->region_host) < 0 ||
				catalog_gen_str(g, "port") != yajl_gen_status_ok ||
				yajl_gen_integer(g, ep->port) != yajl_gen_status_ok ||
				catalog_gen_kv(g, "ip", ep->ip) < 0 ||
				yajl_gen_map_close(g) != yajl_gen_status_ok)
			return -1;
	}
	if (yajl_gen_map_close(g) != yajl_gen_status_ok)
		return -1;
	if (n->broker != NULL) {
		if (catalog_gen_str(g, "notify") != yajl_gen_status_ok ||
				yajl_gen_map_open(g) != yajl_gen_status_ok ||
				catalog_gen_kv(g, "broker", n->broker) < 0 ||
				catalog_gen_kv(g, "username", n->username) < 0 ||
				catalog_gen_kv(g, "password_env", n->password_env) < 0 ||
				catalog_gen_kv(g, "ca_file", n->ca_file) < 0 ||
				catalog_gen_kv(g, "cert_file", n->cert_file) < 0 ||
				catalog_gen_kv(g, "key_file", n->key_file) < 0 ||
				yajl_gen_map_close(g) != yajl_gen_status_ok)
			return -1;
	}
	return yajl_gen_map_close(g) == yajl_gen_status_ok ? 0 : -1;
}

int catalog_to_json(const struct catalog *cat, char **out, size_t *len)
{
	const unsigned char *text;
	size_t textlen;
	yajl_gen g;
	int rc = -1;

	*out = NULL;
	*len = 0;
	if (cat == NULL)
		return -1;
	g = yajl_gen_alloc(NULL);
	if (g == NULL)
		return -1;
	if (yajl_gen_map_open(g) != yajl_gen_status_ok ||
			catalog_gen_str(g, "regions") != yajl_gen_status_ok ||
			yajl_gen_array_open(g) != yajl_gen_status_ok)
		goto out;
	for (size_t r = 0; r < cat->nregions; r++) {
		const struct catalog_region *reg = &cat->regions[r];

		if (yajl_gen_map_open(g) != yajl_gen_status_ok ||
				catalog_gen_kv(g, "id", reg->id) < 0 ||
				catalog_gen_kv(g, "name", reg->name) < 0 ||
				catalog_gen_aliases(g, reg) < 0 ||
				catalog_gen_str(g, "latitude") != yajl_gen_status_ok ||
				catalog_gen_double(g, reg->latitude) != yajl_gen_status_ok ||
				catalog_gen_str(g, "longitude") != yajl_gen_status_ok ||
				catalog_gen_double(g, reg->longitude) != yajl_gen_status_ok ||
				catalog_gen_str(g, "instances") != yajl_gen_status_ok ||
				yajl_gen_array_open(g) != yajl_gen_status_ok)
			goto out;
		for (size_t i = 0; i < reg->ninstances; i++)
			if (catalog_gen_instance(g, &reg->instances[i]) < 0)
				goto out;
		if (yajl_gen_array_close(g) != yajl_gen_status_ok ||
				yajl_gen_map_close(g) != yajl_gen_status_ok)
			goto out;
	}
	if (yajl_gen_array_close(g) != yajl_gen_status_ok ||
			yajl_gen_map_close(g) != yajl_gen_status_ok ||
			yajl_gen_get_buf(g, &text, &textlen) != yajl_gen_status_ok)
		goto out;
	*out = malloc(textlen + 1);
	if (*out == NULL)
		goto out;
	memcpy(*out, text, textlen);
	(*out)[textlen] = '\0';
	*len = textlen;
	rc = 0;
out:
	yajl_gen_free(g);
	return rc;
}

size_t catalog_sdk3_warnings(const struct catalog *cat, void (*fn)(const char *message, void *arg), void *arg)
{
	char msg[512];
	size_t n = 0;

	for (size_t r = 0; r < cat->nregions; r++) {
		const struct catalog_region *reg = &cat->regions[r];
		for (size_t i = 0; i < reg->ninstances; i++) {
			const struct catalog_instance *inst = &reg->instances[i];
			for (size_t e = 0; e < inst->nendpoints; e++) {
				const struct catalog_endpoint *ep = &inst->endpoints[e];
				if (strcmp(ep->protocol, "mqtt") != 0)
					continue;
				if (ep->host_max > CATALOG_SDK3_HOST_MAX) {
					/* What the names may take and keep it within the bound. */
					size_t fixed = ep->host_max - ((ep->uses & CATALOG_USES_PRODUCT_KEY) ? CATALOG_PRODUCT_KEY_MAX : 0) -
						((ep->uses & CATALOG_USES_DEVICE_NAME) ? CATALOG_DEVICE_NAME_MAX : 0);
					if (ep->uses && fixed < CATALOG_SDK3_HOST_MAX)
						snprintf(msg, sizeof(msg),
							"region %s, instance %s: the mqtt host \"%s\" is up to %zu characters; the "
							"vendor SDK 3.x takes at most %d, so its devices work only where %s "
							"at most %zu characters (docs/sdk.md)", reg->id, inst->id,
							ep->host, ep->host_max, CATALOG_SDK3_HOST_MAX,
							ep->uses == CATALOG_USES_PRODUCT_KEY ? "the productKey takes" :
							ep->uses == CATALOG_USES_DEVICE_NAME ? "the deviceName takes" :
							"the productKey and deviceName together take",
							(size_t)CATALOG_SDK3_HOST_MAX - fixed);
					else
						snprintf(msg, sizeof(msg),
							"region %s, instance %s: the mqtt host \"%s\" is %zu characters; more than %d "
							"breaks devices on the vendor SDK 3.x (docs/sdk.md)", reg->id, inst->id,
							ep->host, ep->host_max, CATALOG_SDK3_HOST_MAX);
					fn(msg, arg);
					n++;
				}
				if (ep->region_host && ep->region_host_max > CATALOG_SDK3_HOST_MAX) {
					snprintf(msg, sizeof(msg),
						"region %s, instance %s: the mqtt regionHost \"%s\" is %zu characters; more than "
						"%d breaks devices on the vendor SDK 3.x (docs/sdk.md)", reg->id, inst->id,
						ep->region_host, ep->region_host_max, CATALOG_SDK3_HOST_MAX);
					fn(msg, arg);
					n++;
				}
			}
		}
	}
	return n;
}

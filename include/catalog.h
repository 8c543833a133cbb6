/* catalog: the region catalog (regions.json), validated and immutable once
 * loaded. Readers hold a reference; SIGHUP builds a new catalog and swaps it. */
#ifndef BOOTSTRAPD_CATALOG_H
#define BOOTSTRAPD_CATALOG_H

#include <stddef.h>
#include <stdbool.h>

#define CATALOG_REGION_ID_MAX 32
#define CATALOG_INSTANCE_ID_MAX 64
#define CATALOG_ALIASES_MAX 64    /* aliases per region */
#define CATALOG_HOST_MAX 100      /* after substituting the longest values */
#define CATALOG_ANSWER_MAX 192    /* the default (mqtt only) answer body */
#define CATALOG_PRODUCT_KEY_MAX 32
#define CATALOG_DEVICE_NAME_MAX 32
#define CATALOG_FILE_MAX (16 * 1024 * 1024) /* catalog_load refuses bigger files */

#define CATALOG_USES_PRODUCT_KEY 0x1u
#define CATALOG_USES_DEVICE_NAME 0x2u

struct catalog_endpoint {
	char *protocol; /* "mqtt", "http", ... */
	char *host;     /* template, may hold ${productKey} etc. */
	int port;
	char *ip;       /* IPv4 literal or NULL */
	bool needs_device; /* host uses ${productKey} or ${deviceName} */
	unsigned uses;     /* which: CATALOG_USES_* */
	char *region_host; /* "regionHost": the host for the regionId form, or NULL;
	                    * a template of ${regionId} and ${instanceId} only */
	size_t host_max, region_host_max; /* their lengths with the longest values substituted */
};

struct catalog_notify {
	char *broker;       /* mqtt://host:port or mqtts://host:port, or NULL */
	char *username;
	char *password_env; /* name of the environment variable, never the value */
	char *ca_file;
	char *cert_file; /* client certificate for mqtts brokers, with key_file */
	char *key_file;      /* catalog_load makes a relative path relative to the file's folder */
	/* broker, split up; NULL/0/false when there is no broker: */
	char *broker_host;  /* host name or address, IPv6 without brackets */
	int broker_port;    /* the URL's port, else 1883 (mqtt) or 8883 (mqtts) */
	bool broker_tls;    /* mqtts:// */
};

struct catalog_instance {
	char *id;
	bool is_default;
	struct catalog_endpoint *endpoints; /* mqtt first if present */
	size_t nendpoints;
	struct catalog_notify notify;
	struct catalog_region *region; /* back pointer */
};

struct catalog_region {
	char *id;
	char *name;
	double latitude, longitude;
	struct catalog_instance *instances;
	size_t ninstances;
	char **aliases; /* other names in the regionId form ("4"), file order */
	size_t naliases;
};

/* One region id or alias in the lookup index. */
struct catalog_name {
	const char *name; /* borrowed from the region */
	struct catalog_region *region;
	bool alias;
};

struct catalog {
	int refs; /* only touched through __atomic builtins (catalog_ref/unref) */
	struct catalog_region *regions;
	size_t nregions;
	struct catalog_name *names; /* every region id and alias, sorted by strcmp */
	size_t nnames;
};

/* The vendor SDK 3.x copies the MQTT host of an answer into 64 bytes without
 * a bound (docs/sdk.md): a host that can render longer may break such a
 * device. Calls FN once for each MQTT endpoint host or regionHost of CAT
 * that can (its message names the field and the length); returns how many. */
#define CATALOG_SDK3_HOST_MAX 63
size_t catalog_sdk3_warnings(const struct catalog *cat, void (*fn)(const char *message, void *arg), void *arg);

/* Values substituted into endpoint host templates. Any may be NULL. */
struct catalog_vars {
	const char *product_key;
	const char *device_name;
};

/* Parses and validates the catalog at PATH. On error returns -1 with *cause
 * (caller frees) naming the region/instance/field and the reason. */
int catalog_load(const char *path, struct catalog **out, char **cause)
	__attribute__((warn_unused_result));
/* Same, from a buffer; NAME is used in messages. */
int catalog_parse(const char *json, size_t len, const char *name, struct catalog **out,
	char **cause) __attribute__((warn_unused_result));

/* Renders CAT as compact JSON in the shape of the file (GET /v1/regions):
 * every instance carries "default", notify carries no secret (there is none).
 * *OUT is malloc'd and NUL-terminated (caller frees), *LEN excludes the NUL. */
int catalog_to_json(const struct catalog *cat, char **out, size_t *len)
	__attribute__((warn_unused_result));

/* Reference counting is atomic: catalogs are shared between threads. A new
 * catalog holds one reference; the last catalog_unref frees it. Both accept NULL. */
struct catalog *catalog_ref(struct catalog *cat);
void catalog_unref(struct catalog *cat);

/* Lookups return borrowed pointers valid while the caller holds a reference.
 * catalog_region finds a region by its id only; catalog_region_named by its id
 * or one of its aliases (the regionId form). Both are binary searches. */
const struct catalog_region *catalog_region(const struct catalog *cat, const char *id);
const struct catalog_region *catalog_region_named(const struct catalog *cat, const char *name);
const struct catalog_instance *catalog_instance(const struct catalog_region *r, const char *id);
/* The default instance, or the first one when none is marked default. */
const struct catalog_instance *catalog_default_instance(const struct catalog_region *r);
const struct catalog_endpoint *catalog_endpoint(const struct catalog_instance *i, const char *protocol);
/* Instance ids are unique across the catalog: finds one without its region. */
const struct catalog_instance *catalog_find_instance(const struct catalog *cat, const char *id);

/* Renders EP's host for VARS into BUF (NUL-terminated); ${regionId} and
 * ${instanceId} come from INST and INST->region. Returns the length, or -1 if
 * it does not fit, a needed variable is missing or empty, or a product key or
 * device name is longer than CATALOG_PRODUCT_KEY_MAX / CATALOG_DEVICE_NAME_MAX. */
int catalog_render_host(const struct catalog_endpoint *ep, const struct catalog_instance *inst,
	const struct catalog_vars *vars, char *buf, size_t len) __attribute__((warn_unused_result));
/* The same for the regionId form, where no device is known: renders EP's
 * regionHost when it has one, else its host. Returns the length, or -1 when
 * that host needs ${productKey} or ${deviceName} (the form answers 460) or
 * does not fit. ${regionId} is the region's id, also when it was named by an alias. */
int catalog_render_region_host(const struct catalog_endpoint *ep,
	const struct catalog_instance *inst, char *buf, size_t len)
	__attribute__((warn_unused_result));

#endif

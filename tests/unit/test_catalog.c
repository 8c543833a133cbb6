/* Unit tests for src/catalog.c: parsing, every validation rule, lookups,
 * host rendering, JSON output, loading files and the shipped sample. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "answer.h"
#include "catalog.h"

/* Test JSON is written with ' for " to stay readable; this swaps them back.
 * The result is malloc'd. */
static char *dq(const char *s)
{
	char *out = strdup(s);

	assert_non_null(out);
	for (char *p = out; *p != '\0'; p++)
		if (*p == '\'')
			*p = '"';
	return out;
}

/* N copies of C, in a static buffer (one at a time). */
static const char *rep(char c, size_t n)
{
	static char buf[512];

	assert_true(n < sizeof(buf));
	memset(buf, c, n);
	buf[n] = '\0';
	return buf;
}

static struct catalog *check_ok(const char *json_sq, int line)
{
	struct catalog *cat = NULL;
	char *cause = NULL, *json = dq(json_sq);

	if (catalog_parse(json, strlen(json), "regions.json", &cat, &cause) != 0) {
		print_error("line %d: expected success, got: %s\n", line, cause ? cause : "(null)");
		free(cause);
		free(json);
		fail();
	}
	assert_null(cause);
	assert_non_null(cat);
	free(json);
	return cat;
}
#define parse_ok(json) check_ok((json), __LINE__)
#define accepts(json) catalog_unref(check_ok((json), __LINE__))

static void check_error(const char *json_sq, const char *needle, int line)
{
	struct catalog *cat = NULL;
	char *cause = NULL, *json = dq(json_sq);
	int rc = catalog_parse(json, strlen(json), "regions.json", &cat, &cause);

	if (rc != -1 || cause == NULL || strstr(cause, needle) == NULL) {
		print_error("line %d: expected an error containing [%s], got rc %d: %s\n", line,
			needle, rc, cause ? cause : "(null)");
		catalog_unref(cat);
		free(cause);
		free(json);
		fail();
	}
	assert_null(cat);
	free(cause);
	free(json);
}
#define rejects(json, needle) check_error((json), (needle), __LINE__)

/* One region "r1" holding the given instances. */
#define REGION1(instances) \
	"{'regions':[{'id':'r1','latitude':1,'longitude':2,'instances':[" instances "]}]}"
/* One instance "i1" with one mqtt endpoint; the host and the rest of the endpoint. */
#define MQTT1(host, rest) \
	REGION1("{'id':'i1','endpoints':{'mqtt':{'host':'" host "','port':1883" rest "}}}")
#define NOTIFY1(notify) \
	REGION1("{'id':'i1','endpoints':{'mqtt':{'host':'h','port':1}},'notify':" notify "}")

static const char good[] =
	"{'regions':["
	" {'id':'cn-shanghai','name':'China East 2 (Shanghai)','latitude':31.2304,'longitude':121.4737,"
	"  'instances':["
	"   {'id':'iot-cn-sh-public','default':false,"
	"    'endpoints':{'http':{'host':'iot-as-http.${regionId}.example.com','port':443},"
	"                 'coap':{'host':'coap.example.com','port':5683},"
	"                 'mqtt':{'host':'${productKey}.iot-as-mqtt.cn-shanghai.example.com','port':1883,'ip':'10.1.2.3'}},"
	"    'notify':{'broker':'mqtt://127.0.0.1:1883','username':'bootstrapd','password_env':'NOTIFY_PW_SH'}},"
	"   {'id':'iot-cn-sh-2','default':true,"
	"    'endpoints':{'mqtt':{'host':'${instanceId}.${regionId}.example.com','port':8883}},"
	"    'notify':{'broker':'mqtts://[::1]','ca_file':'/etc/ca.pem'}}]},"
	" {'id':'eu-central-1','latitude':-50.5,'longitude':-8,"
	"  'instances':["
	"   {'id':'iot-eu-1','endpoints':{'http':{'host':'eu.example.com','port':80}}},"
	"   {'id':'iot-eu-2','endpoints':{'mqtt':{'host':'${deviceName}.eu.example.com','port':1883}}}]}"
	"]}";

static void test_good_catalog(void **state)
{
	struct catalog *cat = parse_ok(good);
	const struct catalog_region *sh, *eu;
	const struct catalog_instance *pub, *two;
	const struct catalog_endpoint *ep;

	(void)state;
	assert_int_equal(cat->nregions, 2);
	sh = catalog_region(cat, "cn-shanghai");
	eu = catalog_region(cat, "eu-central-1");
	assert_non_null(sh);
	assert_non_null(eu);
	assert_null(catalog_region(cat, "cn-beijing"));
	assert_null(catalog_region(cat, NULL));
	assert_string_equal(sh->name, "China East 2 (Shanghai)");
	assert_string_equal(eu->name, "eu-central-1"); /* defaults to the id */
	assert_true(sh->latitude == 31.2304 && sh->longitude == 121.4737);
	assert_true(eu->latitude == -50.5 && eu->longitude == -8);

	pub = catalog_instance(sh, "iot-cn-sh-public");
	two = catalog_instance(sh, "iot-cn-sh-2");
	assert_non_null(pub);
	assert_non_null(two);
	assert_null(catalog_instance(sh, "iot-eu-1"));
	assert_ptr_equal(pub->region, sh);
	assert_ptr_equal(catalog_find_instance(cat, "iot-eu-2"), &eu->instances[1]);
	assert_null(catalog_find_instance(cat, "nope"));

	/* The marked default, wherever it is; else the first. */
	assert_ptr_equal(catalog_default_instance(sh), two);
	assert_ptr_equal(catalog_default_instance(eu), &eu->instances[0]);
	assert_null(catalog_default_instance(NULL));

	/* mqtt first, then the rest in file order. */
	assert_int_equal(pub->nendpoints, 3);
	assert_string_equal(pub->endpoints[0].protocol, "mqtt");
	assert_string_equal(pub->endpoints[1].protocol, "http");
	assert_string_equal(pub->endpoints[2].protocol, "coap");
	ep = catalog_endpoint(pub, "mqtt");
	assert_ptr_equal(ep, &pub->endpoints[0]);
	assert_int_equal(ep->port, 1883);
	assert_string_equal(ep->ip, "10.1.2.3");
	assert_true(ep->needs_device);
	ep = catalog_endpoint(pub, "http");
	assert_null(ep->ip);
	assert_false(ep->needs_device);
	assert_null(catalog_endpoint(pub, "amqp"));
	assert_false(two->endpoints[0].needs_device);
	assert_true(eu->instances[1].endpoints[0].needs_device);
	assert_null(catalog_endpoint(&eu->instances[0], "mqtt"));

	assert_string_equal(pub->notify.broker, "mqtt://127.0.0.1:1883");
	assert_string_equal(pub->notify.broker_host, "127.0.0.1");
	assert_int_equal(pub->notify.broker_port, 1883);
	assert_false(pub->notify.broker_tls);
	assert_string_equal(pub->notify.username, "bootstrapd");
	assert_string_equal(pub->notify.password_env, "NOTIFY_PW_SH");
	assert_null(pub->notify.ca_file);
	/* No port: the scheme's default, and the stored URL names it. */
	assert_string_equal(two->notify.broker, "mqtts://[::1]:8883");
	assert_string_equal(two->notify.broker_host, "::1");
	assert_int_equal(two->notify.broker_port, 8883);
	assert_true(two->notify.broker_tls);
	assert_string_equal(two->notify.ca_file, "/etc/ca.pem");
	assert_null(eu->instances[0].notify.broker);
	assert_null(eu->instances[0].notify.broker_host);
	catalog_unref(cat);
}

static void test_render_host(void **state)
{
	struct catalog *cat = parse_ok(good);
	const struct catalog_region *sh = catalog_region(cat, "cn-shanghai");
	const struct catalog_region *eu = catalog_region(cat, "eu-central-1");
	const struct catalog_instance *pub = catalog_instance(sh, "iot-cn-sh-public");
	const struct catalog_instance *two = catalog_instance(sh, "iot-cn-sh-2");
	const struct catalog_instance *eu2 = catalog_instance(eu, "iot-eu-2");
	struct catalog_vars vars = { "a1B2c3D4e5F", "dev-0001" };
	struct catalog_vars none = { NULL, NULL };
	const char *want = "a1B2c3D4e5F.iot-as-mqtt.cn-shanghai.example.com";
	char buf[CATALOG_HOST_MAX + 1];

	(void)state;
	assert_int_equal(catalog_render_host(&pub->endpoints[0], pub, &vars, buf, sizeof(buf)),
		strlen(want));
	assert_string_equal(buf, want);
	assert_int_equal(catalog_render_host(catalog_endpoint(pub, "http"), pub, &vars, buf,
		sizeof(buf)), strlen("iot-as-http.cn-shanghai.example.com"));
	assert_string_equal(buf, "iot-as-http.cn-shanghai.example.com");
	assert_true(catalog_render_host(&two->endpoints[0], two, NULL, buf, sizeof(buf)) > 0);
	assert_string_equal(buf, "iot-cn-sh-2.cn-shanghai.example.com");
	assert_true(catalog_render_host(&eu2->endpoints[0], eu2, &vars, buf, sizeof(buf)) > 0);
	assert_string_equal(buf, "dev-0001.eu.example.com");

	/* A needed variable missing or empty. */
	assert_int_equal(catalog_render_host(&pub->endpoints[0], pub, &none, buf, sizeof(buf)), -1);
	assert_int_equal(catalog_render_host(&pub->endpoints[0], pub, NULL, buf, sizeof(buf)), -1);
	vars.product_key = "";
	assert_int_equal(catalog_render_host(&pub->endpoints[0], pub, &vars, buf, sizeof(buf)), -1);
	vars.product_key = "a1B2c3D4e5F";
	assert_int_equal(catalog_render_host(&eu2->endpoints[0], eu2, &none, buf, sizeof(buf)), -1);
	assert_int_equal(catalog_render_host(&two->endpoints[0], NULL, NULL, buf, sizeof(buf)), -1);
	/* Longer than validation assumed. */
	vars.product_key = rep('k', CATALOG_PRODUCT_KEY_MAX + 1);
	assert_int_equal(catalog_render_host(&pub->endpoints[0], pub, &vars, buf, sizeof(buf)), -1);
	vars.product_key = rep('k', CATALOG_PRODUCT_KEY_MAX);
	assert_int_equal(catalog_render_host(&pub->endpoints[0], pub, &vars, buf, sizeof(buf)),
		CATALOG_PRODUCT_KEY_MAX + strlen(".iot-as-mqtt.cn-shanghai.example.com"));
	vars.product_key = "a1B2c3D4e5F";
	/* Exactly fits (with its NUL), one byte short. */
	assert_int_equal(catalog_render_host(&pub->endpoints[0], pub, &vars, buf, strlen(want) + 1),
		strlen(want));
	assert_string_equal(buf, want);
	assert_int_equal(catalog_render_host(&pub->endpoints[0], pub, &vars, buf, strlen(want)), -1);
	assert_int_equal(catalog_render_host(&pub->endpoints[0], pub, &vars, buf, 0), -1);
	assert_int_equal(catalog_render_host(NULL, pub, &vars, buf, sizeof(buf)), -1);
	catalog_unref(cat);
}

/* Two regions with aliases; r2's mqtt endpoint has a regionHost. */
static const char aliased[] =
	"{'regions':["
	" {'id':'r1','aliases':['0','sh'],'latitude':1,'longitude':2,'instances':["
	"   {'id':'i1','endpoints':{'mqtt':{'host':'${productKey}.r1.example.com','port':1883},"
	"                           'http':{'host':'http.${regionId}.example.com','port':443}}}]},"
	" {'id':'r2','aliases':['4'],'latitude':1,'longitude':2,'instances':["
	"   {'id':'i2','endpoints':{'mqtt':{'host':'${deviceName}.r2.example.com',"
	"     'regionHost':'mqtt.${instanceId}.${regionId}.example.com','port':8883,'ip':'10.0.0.2'}}},"
	"   {'id':'i3','default':true,'endpoints':{'mqtt':{'host':'${productKey}.r2.example.com',"
	"     'regionHost':'r2.example.com','port':1883}}}]},"
	" {'id':'r3','latitude':1,'longitude':2,'instances':["
	"   {'id':'i4','endpoints':{'mqtt':{'host':'${instanceId}.r3.example.com','port':1883}}}]}"
	"]}";

static void test_aliases(void **state)
{
	struct catalog *cat = parse_ok(aliased);
	const struct catalog_region *r1 = &cat->regions[0], *r2 = &cat->regions[1];

	(void)state;
	assert_int_equal(r1->naliases, 2);
	assert_string_equal(r1->aliases[0], "0");
	assert_string_equal(r1->aliases[1], "sh");
	assert_int_equal(r2->naliases, 1);
	assert_int_equal(cat->regions[2].naliases, 0);
	assert_null(cat->regions[2].aliases);
	assert_int_equal(cat->nnames, 6);

	assert_ptr_equal(catalog_region_named(cat, "r1"), r1);
	assert_ptr_equal(catalog_region_named(cat, "0"), r1);
	assert_ptr_equal(catalog_region_named(cat, "sh"), r1);
	assert_ptr_equal(catalog_region_named(cat, "r2"), r2);
	assert_ptr_equal(catalog_region_named(cat, "4"), r2);
	assert_ptr_equal(catalog_region_named(cat, "r3"), &cat->regions[2]);
	assert_null(catalog_region_named(cat, "5"));
	assert_null(catalog_region_named(cat, "r"));
	assert_null(catalog_region_named(cat, "r10"));
	assert_null(catalog_region_named(cat, ""));
	assert_null(catalog_region_named(cat, NULL));
	assert_null(catalog_region_named(NULL, "r1"));
	/* catalog_region is for ids (admin API, distributions): no aliases. */
	assert_ptr_equal(catalog_region(cat, "r2"), r2);
	assert_null(catalog_region(cat, "4"));
	assert_null(catalog_region(cat, "sh"));
	catalog_unref(cat);

	/* An empty list is no alias. */
	cat = parse_ok("{'regions':[{'id':'r1','aliases':[],'latitude':1,'longitude':2,"
		"'instances':[{'id':'i','endpoints':{'mqtt':{'host':'h','port':1}}}]}]}");
	assert_int_equal(cat->regions[0].naliases, 0);
	assert_ptr_equal(catalog_region_named(cat, "r1"), &cat->regions[0]);
	catalog_unref(cat);
}

/* Region r1 with aliases A (a JSON array body). */
#define ALIASES1(a) "{'regions':[{'id':'r1','aliases':" a ",'latitude':1,'longitude':2," \
	"'instances':[{'id':'i','endpoints':{'mqtt':{'host':'h','port':1}}}]}]}"

static void test_bad_alias(void **state)
{
	char json[2048], list[1024];
	size_t o = 0;

	(void)state;
	accepts(ALIASES1("['0','20','cn-sh-2']"));
	rejects(ALIASES1("['A']"), "regions.json: regions[0] (\"r1\").aliases[0]: must be 1..32 "
		"characters of [a-z0-9-], got \"A\"");
	rejects(ALIASES1("['4','']"), "regions[0] (\"r1\").aliases[1]: must be 1..32 characters");
	rejects(ALIASES1("['a_b']"), "aliases[0]: must be 1..32 characters of [a-z0-9-], got \"a_b\"");
	rejects(ALIASES1("['4 ']"), "aliases[0]: must be 1..32");
	rejects(ALIASES1("['a/b']"), "aliases[0]: must be 1..32");
	rejects(ALIASES1("[4]"), "regions[0] (\"r1\").aliases[0]: must be a string, got a number");
	rejects(ALIASES1("'4'"), "regions[0] (\"r1\").aliases: must be an array of strings, got a string");
	rejects(ALIASES1("{}"), "aliases: must be an array of strings, got an object");
	snprintf(list, sizeof(list), "['%s']", rep('a', CATALOG_REGION_ID_MAX));
	snprintf(json, sizeof(json), ALIASES1("%s"), list);
	accepts(json);
	snprintf(list, sizeof(list), "['%s']", rep('a', CATALOG_REGION_ID_MAX + 1));
	snprintf(json, sizeof(json), ALIASES1("%s"), list);
	rejects(json, "aliases[0]: must be 1..32");
	/* At most CATALOG_ALIASES_MAX. */
	for (int i = 0; i < CATALOG_ALIASES_MAX; i++)
		o += (size_t)snprintf(list + o, sizeof(list) - o, "%s'%d'", i ? "," : "[", i);
	snprintf(list + o, sizeof(list) - o, "]");
	snprintf(json, sizeof(json), ALIASES1("%s"), list);
	accepts(json);
	snprintf(list + o, sizeof(list) - o, ",'x']");
	snprintf(json, sizeof(json), ALIASES1("%s"), list);
	rejects(json, "regions[0] (\"r1\").aliases: 65 aliases, more than 64");
}

#define R(id, aliases, inst) "{'id':'" id "','aliases':" aliases ",'latitude':1,'longitude':2," \
	"'instances':[{'id':'" inst "','endpoints':{'mqtt':{'host':'h','port':1}}}]}"

static void test_duplicate_alias(void **state)
{
	(void)state;
	/* An alias that is another region's id, before or after it. */
	rejects("{'regions':[" R("r1", "[]", "a") "," R("r2", "['r1']", "b") "]}",
		"regions.json: regions[1] (\"r2\").aliases[0]: alias \"r1\" is the id of regions[0] "
		"already (region ids and aliases are unique across the catalog)");
	rejects("{'regions':[" R("r1", "['r2']", "a") "," R("r2", "[]", "b") "]}",
		"regions.json: regions[1] (\"r2\").id: region id \"r2\" is aliases[0] of regions[0] "
		"(\"r1\") already (region ids and aliases are unique across the catalog)");
	/* Its own id. */
	rejects("{'regions':[" R("r1", "['4','r1']", "a") "]}",
		"regions[0] (\"r1\").aliases[1]: alias \"r1\" is this region's id already");
	/* An alias of another region, or twice in one. */
	rejects("{'regions':[" R("r1", "['0','4']", "a") "," R("r2", "['3']", "b") ","
			R("r3", "['5','4']", "c") "]}",
		"regions.json: regions[2] (\"r3\").aliases[1]: alias \"4\" is aliases[1] of regions[0] "
		"(\"r1\") already (region ids and aliases are unique across the catalog)");
	rejects("{'regions':[" R("r1", "['4','5','4']", "a") "]}",
		"regions[0] (\"r1\").aliases[2]: alias \"4\" is aliases[0] of this region already");
	/* The first clash in file order is the one reported. */
	rejects("{'regions':[" R("r1", "['9']", "a") "," R("r2", "['8']", "b") ","
			R("r3", "['8','9']", "c") "]}",
		"regions[2] (\"r3\").aliases[0]: alias \"8\" is aliases[0] of regions[1]");
	/* Two region ids still read as before. */
	rejects("{'regions':[" R("r1", "['1']", "a") "," R("r1", "['2']", "b") "]}",
		"regions.json: regions[1] (\"r1\").id: duplicate region id (regions[0] has it already)");
	/* Instance ids are another name space. */
	accepts("{'regions':[" R("r1", "['a']", "a") "," R("r2", "['b']", "r1") "]}");
}
#undef R

static void test_region_host(void **state)
{
	struct catalog *cat = parse_ok(aliased);
	const struct catalog_region *r1 = &cat->regions[0], *r2 = &cat->regions[1];
	const struct catalog_instance *i1 = &r1->instances[0], *i2 = &r2->instances[0];
	const struct catalog_instance *i3 = &r2->instances[1], *i4 = &cat->regions[2].instances[0];
	struct catalog_vars vars = { "pk", "dn" };
	char buf[CATALOG_HOST_MAX + 1];

	(void)state;
	assert_null(i1->endpoints[0].region_host);
	assert_string_equal(i2->endpoints[0].region_host, "mqtt.${instanceId}.${regionId}.example.com");
	assert_true(i2->endpoints[0].needs_device); /* of host, not regionHost */

	/* regionHost, substituted; the device form still uses host. */
	assert_int_equal(catalog_render_region_host(&i2->endpoints[0], i2, buf, sizeof(buf)),
		strlen("mqtt.i2.r2.example.com"));
	assert_string_equal(buf, "mqtt.i2.r2.example.com");
	assert_true(catalog_render_host(&i2->endpoints[0], i2, &vars, buf, sizeof(buf)) > 0);
	assert_string_equal(buf, "dn.r2.example.com");
	assert_true(catalog_render_region_host(&i3->endpoints[0], i3, buf, sizeof(buf)) > 0);
	assert_string_equal(buf, "r2.example.com");
	/* Without regionHost: host when it needs no device, else -1 (answered 460). */
	assert_true(catalog_render_region_host(&i4->endpoints[0], i4, buf, sizeof(buf)) > 0);
	assert_string_equal(buf, "i4.r3.example.com");
	assert_true(catalog_render_region_host(catalog_endpoint(i1, "http"), i1, buf, sizeof(buf)) > 0);
	assert_string_equal(buf, "http.r1.example.com");
	assert_int_equal(catalog_render_region_host(&i1->endpoints[0], i1, buf, sizeof(buf)), -1);
	/* Too small a buffer, no endpoint, no instance for ${regionId}. */
	assert_int_equal(catalog_render_region_host(&i2->endpoints[0], i2, buf,
		strlen("mqtt.i2.r2.example.com")), -1);
	assert_int_equal(catalog_render_region_host(NULL, i2, buf, sizeof(buf)), -1);
	assert_int_equal(catalog_render_region_host(&i2->endpoints[0], NULL, buf, sizeof(buf)), -1);
	catalog_unref(cat);

	/* Only ${regionId} and ${instanceId}: the regionId form knows no device. */
	accepts(MQTT1("${productKey}.h", ",'regionHost':'${instanceId}.${regionId}.h'"));
	rejects(MQTT1("h", ",'regionHost':'${productKey}.h'"),
		"regions.json: regions[0] (\"r1\").instances[0] (\"i1\").endpoints.mqtt.regionHost: "
		"\"${productKey}.h\" uses ${productKey}, but the regionId form knows no device "
		"(only ${regionId} and ${instanceId} may be used here)");
	rejects(MQTT1("h", ",'regionHost':'a.${regionId}.${deviceName}'"),
		"endpoints.mqtt.regionHost: \"a.${regionId}.${deviceName}\" uses ${deviceName}");
	rejects(REGION1("{'id':'i1','endpoints':{'http':{'host':'h','port':1,"
			"'regionHost':'${productKey}'}}}"),
		"endpoints.http.regionHost: \"${productKey}\" uses ${productKey}");
	/* The host rules apply. */
	rejects(MQTT1("h", ",'regionHost':'${foo}.h'"),
		"endpoints.mqtt.regionHost: unknown variable \"${foo}\"");
	rejects(MQTT1("h", ",'regionHost':'a_b'"), "endpoints.mqtt.regionHost: character \"_\"");
	rejects(MQTT1("h", ",'regionHost':''"), "endpoints.mqtt.regionHost: must not be empty");
	rejects(MQTT1("h", ",'regionHost':'a..b'"), "endpoints.mqtt.regionHost: \"a..b\" has an empty label");
	rejects(MQTT1("h", ",'regionHost':7"), "endpoints.mqtt.regionHost: must be a string, got a number");
	rejects(MQTT1("h", ",'regionhost':'h'"), "endpoints.mqtt: unknown key \"regionhost\" (known: "
		"host, regionHost, port, ip)");
}

static void test_region_host_length(void **state)
{
	char json[2048], rest[1024];

	(void)state;
	/* 100 after substitution: ${instanceId}${regionId} are "i1" and "r1". */
	snprintf(rest, sizeof(rest), ",'regionHost':'${instanceId}${regionId}%s'", rep('a', 96));
	snprintf(json, sizeof(json), MQTT1("h", "%s"), rest);
	accepts(json);
	snprintf(rest, sizeof(rest), ",'regionHost':'${instanceId}${regionId}%s'", rep('a', 97));
	snprintf(json, sizeof(json), MQTT1("h", "%s"), rest);
	rejects(json, "endpoints.mqtt.regionHost: ");
	rejects(json, " is 101 characters with the longest values substituted");
	/* The 192-byte answer: 82 + 90 + 4 + 16 fits, 91 does not, whichever host is longer. */
	snprintf(rest, sizeof(rest), ",'regionHost':'%s','ip':'10.0.0.1'", rep('a', 90));
	snprintf(json, sizeof(json), MQTT1("h", "%s"), rest);
	accepts(json);
	snprintf(rest, sizeof(rest), ",'regionHost':'%s','ip':'10.0.0.1'", rep('a', 91));
	snprintf(json, sizeof(json), MQTT1("h", "%s"), rest);
	rejects(json, "endpoints.mqtt: the default answer would be 193 bytes with the longest "
		"values substituted, more than 192 (82 + regionHost 91 + port 4 + ip 16)");
	snprintf(rest, sizeof(rest), ",'regionHost':'h','ip':'10.0.0.1'");
	snprintf(json, sizeof(json), MQTT1("%s", "%s"), rep('a', 91), rest);
	rejects(json, "(82 + host 91 + port 4 + ip 16)");
}

static void count_warning(const char *message, void *arg)
{
	char *last = arg;

	snprintf(last, 512, "%s", message);
}

static void test_sdk3_host_warnings(void **state)
{
	char last[512] = "";
	struct catalog *cat;

	(void)state;
	/* 21 + 32 = 53: fits; no warning. */
	cat = parse_ok("{'regions':[{'id':'r1','latitude':0,'longitude':0,'instances':[{'id':'i1',"
		       "'endpoints':{'mqtt':{'host':'${productKey}.mqtt.example.com','port':1883}}}]}]}");
	assert_int_equal(catalog_sdk3_warnings(cat, count_warning, last), 0);
	catalog_unref(cat);
	/* 32 + 39: only product keys of up to 24 characters fit. */
	cat = parse_ok("{'regions':[{'id':'r1','latitude':0,'longitude':0,'instances':[{'id':'i1',"
		       "'endpoints':{'mqtt':{'host':'${productKey}.iot-as-mqtt.cn-zhangjiakou.example.com','port':1883},"
		       "'http':{'host':'${productKey}.${deviceName}.http.example.com','port':443}}}]}]}");
	assert_int_equal(catalog_sdk3_warnings(cat, count_warning, last), 1);
	assert_non_null(strstr(last, "up to 71 characters"));
	assert_non_null(strstr(last, "the productKey takes at most 24 characters"));
	catalog_unref(cat);
	/* A fixed host over 63, and a regionHost over 63. */
	cat = parse_ok("{'regions':[{'id':'r1','latitude':0,'longitude':0,'instances':[{'id':'i1',"
		       "'endpoints':{'mqtt':{'host':'a-very-long-host-name-for-mqtt-brokers-in-a-far-away-region.example.com',"
		       "'regionHost':'another-very-long-host-name-for-mqtt-brokers-in-a-far-region.example.com','port':1883}}}]}]}");
	assert_int_equal(catalog_sdk3_warnings(cat, count_warning, last), 2);
	assert_non_null(strstr(last, "regionHost"));
	catalog_unref(cat);
}

static void test_to_json(void **state)
{
	struct catalog *cat = parse_ok(good), *again = NULL;
	char *json = NULL, *json2 = NULL, *cause = NULL;
	size_t len = 0, len2 = 0;

	(void)state;
	assert_int_equal(catalog_to_json(cat, &json, &len), 0);
	assert_int_equal(strlen(json), len);
	assert_null(strchr(json, '\n'));
	assert_null(strstr(json, "\": "));
	assert_non_null(strstr(json, "\"latitude\":31.2304,\"longitude\":121.4737"));
	assert_non_null(strstr(json, "\"latitude\":-50.5,\"longitude\":-8"));
	assert_non_null(strstr(json, "{\"id\":\"iot-cn-sh-public\",\"default\":false,\"endpoints\":"
		"{\"mqtt\":{\"host\":\"${productKey}.iot-as-mqtt.cn-shanghai.example.com\","
		"\"port\":1883,\"ip\":\"10.1.2.3\"},\"http\":"));
	assert_non_null(strstr(json, "\"notify\":{\"broker\":\"mqtt://127.0.0.1:1883\","
		"\"username\":\"bootstrapd\",\"password_env\":\"NOTIFY_PW_SH\"}"));
	assert_non_null(strstr(json, "\"name\":\"eu-central-1\""));
	assert_null(strstr(json, "password\""));
	/* It reads back as the same catalog. */
	assert_int_equal(catalog_parse(json, len, "out", &again, &cause), 0);
	assert_int_equal(catalog_to_json(again, &json2, &len2), 0);
	assert_int_equal(len, len2);
	assert_string_equal(json, json2);
	free(json);
	free(json2);
	assert_int_equal(catalog_to_json(NULL, &json, &len), -1);
	assert_null(json);
	catalog_unref(again);
	catalog_unref(cat);

	/* Aliases after name, regionHost after host, and back again. */
	cat = parse_ok(aliased);
	assert_int_equal(catalog_to_json(cat, &json, &len), 0);
	assert_non_null(strstr(json, "{\"id\":\"r1\",\"name\":\"r1\",\"aliases\":[\"0\",\"sh\"],"
		"\"latitude\":1,"));
	assert_non_null(strstr(json, "\"mqtt\":{\"host\":\"${deviceName}.r2.example.com\","
		"\"regionHost\":\"mqtt.${instanceId}.${regionId}.example.com\",\"port\":8883,"));
	assert_non_null(strstr(json, "{\"id\":\"r3\",\"name\":\"r3\",\"latitude\""));
	assert_non_null(strstr(json, "\"mqtt\":{\"host\":\"${productKey}.r1.example.com\",\"port\""));
	assert_int_equal(catalog_parse(json, len, "out", &again, &cause), 0);
	assert_ptr_equal(catalog_region_named(again, "4"), &again->regions[1]);
	assert_int_equal(catalog_to_json(again, &json2, &len2), 0);
	assert_string_equal(json, json2);
	free(json);
	free(json2);
	catalog_unref(again);
	catalog_unref(cat);
}

static void test_refcount(void **state)
{
	struct catalog *cat = parse_ok(good);

	(void)state;
	assert_int_equal(cat->refs, 1);
	assert_ptr_equal(catalog_ref(cat), cat);
	assert_int_equal(cat->refs, 2);
	catalog_unref(cat);
	assert_int_equal(cat->refs, 1);
	catalog_unref(cat); /* frees: valgrind/ASan see a leak or a double free otherwise */
	catalog_unref(NULL);
	assert_null(catalog_ref(NULL));
}

static void test_message_format(void **state)
{
	struct catalog *cat = NULL;
	char *cause = NULL;
	char *json = dq("{'regions':["
		"{'id':'cn-shanghai','latitude':1,'longitude':2,'instances':[{'id':'a','endpoints':{'mqtt':{'host':'h','port':1}}}]},"
		"{'id':'eu-central-1','latitude':1,'longitude':2,'instances':["
		"{'id':'iot-eu-0','endpoints':{'mqtt':{'host':'h','port':1}}},"
		"{'id':'iot-eu-1','endpoints':{'mqtt':{'host':'h','port':0}}}]}]}");

	(void)state;
	assert_int_equal(catalog_parse(json, strlen(json), "regions.json", &cat, &cause), -1);
	assert_null(cat);
	assert_string_equal(cause, "regions.json: regions[1] (\"eu-central-1\").instances[1] "
		"(\"iot-eu-1\").endpoints.mqtt.port: must be 1..65535, got 0");
	free(cause);
	free(json);
	/* NULL cause is allowed. */
	json = dq("{'regions':[]}");
	assert_int_equal(catalog_parse(json, strlen(json), NULL, &cat, NULL), -1);
	free(json);
}

static void test_top_level(void **state)
{
	(void)state;
	rejects("{'regions':[]}", "regions.json: regions: must hold at least one region");
	rejects("{}", "regions: required");
	rejects("[]", "the top level must be an object, got an array");
	rejects("{'regions':{}}", "regions: must be an array, got an object");
	rejects("{'regions':[1]}", "regions[0]: must be an object, got a number");
	rejects("{'regions':[], 'comment':'x'}", "unknown key \"comment\"");
	rejects("{'regions':[], 'regions':[]}", "duplicate key");
}

static void test_syntax(void **state)
{
	(void)state;
	rejects("", "regions.json:1:1: ");
	rejects("{'regions':\n [\n  {'id': x}]}", "regions.json:3:");
	rejects("{'regions':[]} // comment", "regions.json:1:");
	rejects("/* c */ {'regions':[]}", "regions.json:1:");
	rejects("{'regions':[]} {}", "regions.json:1:");
	rejects("{'regions':[{'id':'a\\u0000b'}]}", "\\u0000");
	rejects("{'regions':[{'id':'a','name':[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]}]}",
		"nested too deeply");
	/* A UTF-8 BOM is skipped. */
	accepts("\xef\xbb\xbf" MQTT1("h", ""));
}

static void test_unknown_keys(void **state)
{
	(void)state;
	rejects("{'regions':[{'id':'r1','lat':1,'latitude':1,'longitude':2,'instances':[]}]}",
		"regions[0] (\"r1\"): unknown key \"lat\"");
	rejects(REGION1("{'id':'i1','endpoint':{}}"), "instances[0] (\"i1\"): unknown key");
	rejects(MQTT1("h", ",'tls':true"), "endpoints.mqtt: unknown key \"tls\"");
	rejects(NOTIFY1("{'broker':'mqtt://h:1','user':'x'}"), "notify: unknown key \"user\"");
	rejects(NOTIFY1("{'broker':'mqtt://h:1','password':'secret'}"),
		"notify.password: passwords do not belong");
	rejects("{'regions':[{'id':'r1','id':'r2','latitude':1,'longitude':2,'instances':[]}]}",
		"duplicate key \"id\"");
	rejects(MQTT1("h", ",'port':1884"), "endpoints.mqtt: duplicate key \"port\"");
}

static void test_region_id(void **state)
{
	char json[1024];

	(void)state;
	rejects("{'regions':[{'latitude':1,'longitude':2,'instances':[]}]}", "regions[0].id: required");
	rejects("{'regions':[{'id':'EU-1','latitude':1,'longitude':2,'instances':[]}]}",
		"regions[0].id: must be 1..32 characters of [a-z0-9-], got \"EU-1\"");
	rejects("{'regions':[{'id':'eu_1','latitude':1,'longitude':2,'instances':[]}]}",
		"regions[0].id: must be 1..32");
	rejects("{'regions':[{'id':'','latitude':1,'longitude':2,'instances':[]}]}",
		"regions[0].id: must be 1..32");
	rejects("{'regions':[{'id':7,'latitude':1,'longitude':2,'instances':[]}]}",
		"regions[0].id: must be a string, got a number");
	snprintf(json, sizeof(json), "{'regions':[{'id':'%s','latitude':1,'longitude':2,"
		"'instances':[{'id':'i','endpoints':{'mqtt':{'host':'h','port':1}}}]}]}",
		rep('a', CATALOG_REGION_ID_MAX));
	accepts(json);
	snprintf(json, sizeof(json), "{'regions':[{'id':'%s','latitude':1,'longitude':2,"
		"'instances':[{'id':'i','endpoints':{'mqtt':{'host':'h','port':1}}}]}]}",
		rep('a', CATALOG_REGION_ID_MAX + 1));
	rejects(json, "regions[0].id: must be 1..32");
}

static void test_duplicate_region_id(void **state)
{
	(void)state;
	rejects("{'regions':["
		"{'id':'r1','latitude':1,'longitude':2,'instances':[{'id':'a','endpoints':{'mqtt':{'host':'h','port':1}}}]},"
		"{'id':'r2','latitude':1,'longitude':2,'instances':[{'id':'b','endpoints':{'mqtt':{'host':'h','port':1}}}]},"
		"{'id':'r1','latitude':1,'longitude':2,'instances':[{'id':'c','endpoints':{'mqtt':{'host':'h','port':1}}}]}]}",
		"regions.json: regions[2] (\"r1\").id: duplicate region id (regions[0] has it already)");
}

static void test_duplicate_instance_id(void **state)
{
	(void)state;
	/* Across regions. */
	rejects("{'regions':["
		"{'id':'r1','latitude':1,'longitude':2,'instances':[{'id':'x','endpoints':{'mqtt':{'host':'h','port':1}}},"
		"                                                   {'id':'shared','endpoints':{'mqtt':{'host':'h','port':1}}}]},"
		"{'id':'r2','latitude':1,'longitude':2,'instances':[{'id':'shared','endpoints':{'mqtt':{'host':'h','port':1}}}]}]}",
		"regions[1] (\"r2\").instances[0] (\"shared\").id: duplicate instance id "
		"(regions[0] (\"r1\").instances[1] has it already");
	/* Within a region. */
	rejects(REGION1("{'id':'a','endpoints':{'mqtt':{'host':'h','port':1}}},"
			"{'id':'a','endpoints':{'mqtt':{'host':'h','port':1}}}"),
		"instances[1] (\"a\").id: duplicate instance id");
	/* Case matters: ids differ. */
	accepts(REGION1("{'id':'a','endpoints':{'mqtt':{'host':'h','port':1}}},"
		"{'id':'A','endpoints':{'mqtt':{'host':'h','port':1}}}"));
}

static void test_coordinates(void **state)
{
	(void)state;
#define COORD(lat, lon) "{'regions':[{'id':'r','latitude':" lat ",'longitude':" lon \
	",'instances':[{'id':'i','endpoints':{'mqtt':{'host':'h','port':1}}}]}]}"
	accepts(COORD("90", "180"));
	accepts(COORD("-90", "-180"));
	accepts(COORD("0.5e1", "-1.25E2"));
	rejects(COORD("90.0001", "0"), "regions[0] (\"r\").latitude: must be in [-90, 90], got 90.0001");
	rejects(COORD("-91", "0"), "latitude: must be in [-90, 90], got -91");
	rejects(COORD("0", "180.5"), "longitude: must be in [-180, 180], got 180.5");
	rejects(COORD("0", "-181"), "longitude: must be in [-180, 180]");
	rejects(COORD("1e999", "0"), "latitude: must be in [-90, 90]");
	rejects(COORD("'1'", "0"), "latitude: must be a number, got a string");
	rejects(COORD("null", "0"), "latitude: must be a number, got null");
	rejects("{'regions':[{'id':'r','longitude':1,'instances':[]}]}", "latitude: required");
	rejects("{'regions':[{'id':'r','latitude':1,'instances':[]}]}", "longitude: required");
#undef COORD
}

static void test_name(void **state)
{
	(void)state;
#define NAMED(name) "{'regions':[{'id':'r','name':" name ",'latitude':1,'longitude':2," \
	"'instances':[{'id':'i','endpoints':{'mqtt':{'host':'h','port':1}}}]}]}"
	accepts(NAMED("'Shanghai (\xe4\xb8\x8a\xe6\xb5\xb7)'"));
	rejects(NAMED("''"), "name: must be 1..128 bytes, got 0");
	rejects(NAMED("3"), "name: must be a string");
	rejects(NAMED("'a\\nb'"), "name: must not contain control characters, got \"a\\x0ab\"");
#undef NAMED
}

static void test_instances(void **state)
{
	char json[1024];

	(void)state;
	rejects(REGION1(""), "regions[0] (\"r1\").instances: must hold at least one instance");
	rejects("{'regions':[{'id':'r','latitude':1,'longitude':2}]}", "instances: required");
	rejects("{'regions':[{'id':'r','latitude':1,'longitude':2,'instances':{}}]}",
		"instances: must be an array");
	rejects(REGION1("'i1'"), "instances[0]: must be an object, got a string");
	rejects(REGION1("{'endpoints':{}}"), "instances[0].id: required");
	rejects(REGION1("{'id':'a b','endpoints':{}}"),
		"instances[0].id: must be 1..64 characters of [A-Za-z0-9_.-], got \"a b\"");
	rejects(REGION1("{'id':'','endpoints':{}}"), "instances[0].id: must be 1..64");
	accepts(REGION1("{'id':'Iot_1.a-b','endpoints':{'mqtt':{'host':'h','port':1}}}"));
	snprintf(json, sizeof(json), REGION1("{'id':'%s','endpoints':{'mqtt':{'host':'h','port':1}}}"),
		rep('i', CATALOG_INSTANCE_ID_MAX));
	accepts(json);
	snprintf(json, sizeof(json), REGION1("{'id':'%s','endpoints':{'mqtt':{'host':'h','port':1}}}"),
		rep('i', CATALOG_INSTANCE_ID_MAX + 1));
	rejects(json, "instances[0].id: must be 1..64");
}

static void test_two_defaults(void **state)
{
	(void)state;
	rejects(REGION1("{'id':'a','default':true,'endpoints':{'mqtt':{'host':'h','port':1}}},"
			"{'id':'b','default':false,'endpoints':{'mqtt':{'host':'h','port':1}}},"
			"{'id':'c','default':true,'endpoints':{'mqtt':{'host':'h','port':1}}}"),
		"instances[2] (\"c\").default: a second default instance in this region "
		"(instances[0] (\"a\") is the default already)");
	rejects(REGION1("{'id':'a','default':1,'endpoints':{'mqtt':{'host':'h','port':1}}}"),
		"default: must be true or false, got a number");
	/* One default per region, not per catalog. */
	accepts("{'regions':["
		"{'id':'r1','latitude':1,'longitude':2,'instances':[{'id':'a','default':true,'endpoints':{'mqtt':{'host':'h','port':1}}}]},"
		"{'id':'r2','latitude':1,'longitude':2,'instances':[{'id':'b','default':true,'endpoints':{'mqtt':{'host':'h','port':1}}}]}]}");
}

static void test_endpoints(void **state)
{
	(void)state;
	rejects(REGION1("{'id':'i1'}"), "instances[0] (\"i1\").endpoints: required");
	rejects(REGION1("{'id':'i1','endpoints':{}}"), "endpoints: must name at least one protocol");
	rejects(REGION1("{'id':'i1','endpoints':[]}"), "endpoints: must be an object, got an array");
	rejects(REGION1("{'id':'i1','endpoints':{'MQTT':{'host':'h','port':1}}}"),
		"endpoints: protocol name \"MQTT\" must be 1..16 characters of [a-z0-9]");
	rejects(REGION1("{'id':'i1','endpoints':{'mqtt-ws':{'host':'h','port':1}}}"),
		"protocol name \"mqtt-ws\"");
	rejects(REGION1("{'id':'i1','endpoints':{'abcdefghijklmnopq':{'host':'h','port':1}}}"),
		"protocol name");
	accepts(REGION1("{'id':'i1','endpoints':{'abcdefghijklmnop':{'host':'h','port':1}}}"));
	rejects(REGION1("{'id':'i1','endpoints':{'mqtt':{'host':'h','port':1},'mqtt':{'host':'h','port':1}}}"),
		"endpoints: duplicate protocol \"mqtt\"");
	rejects(REGION1("{'id':'i1','endpoints':{'mqtt':'h:1'}}"),
		"endpoints.mqtt: must be an object, got a string");
	rejects(MQTT1("h", "") "x", "regions.json:1:");
	rejects(REGION1("{'id':'i1','endpoints':{'mqtt':{'port':1}}}"), "endpoints.mqtt.host: required");
	rejects(REGION1("{'id':'i1','endpoints':{'mqtt':{'host':1,'port':1}}}"),
		"endpoints.mqtt.host: must be a string, got a number");
}

static void test_port(void **state)
{
	(void)state;
#define PORT(p) REGION1("{'id':'i1','endpoints':{'http':{'host':'h','port':" p "}}}")
	accepts(PORT("1"));
	accepts(PORT("65535"));
	rejects(PORT("0"), "instances[0] (\"i1\").endpoints.http.port: must be 1..65535, got 0");
	rejects(PORT("65536"), "endpoints.http.port: must be 1..65535, got 65536");
	rejects(PORT("-1"), "must be 1..65535, got -1");
	rejects(PORT("99999999999999999999999"), "endpoints.http.port: must be an integer 1..65535");
	rejects(PORT("1883.5"), "endpoints.http.port: must be an integer 1..65535, got 1883.5");
	rejects(PORT("'1883'"), "endpoints.http.port: must be a number 1..65535, got a string");
	rejects(REGION1("{'id':'i1','endpoints':{'http':{'host':'h'}}}"), "endpoints.http.port: required");
#undef PORT
}

static void test_host_template(void **state)
{
	(void)state;
	accepts(MQTT1("${productKey}.${deviceName}.${regionId}.${instanceId}.A-z.0", ""));
	accepts(MQTT1("10.0.0.1", ""));
	rejects(MQTT1("${foo}.example.com", ""),
		"endpoints.mqtt.host: unknown variable \"${foo}\" in \"${foo}.example.com\"");
	rejects(MQTT1("${productkey}.example.com", ""), "unknown variable \"${productkey}\"");
	rejects(MQTT1("a$b.example.com", ""), "endpoints.mqtt.host: \"$\" at offset 1 of");
	rejects(MQTT1("example.com$", ""), "\"$\" at offset 11");
	rejects(MQTT1("${productKey", ""), "\"$\" at offset 0");
	rejects(MQTT1("$productKey.example.com", ""), "\"$\" at offset 0");
	rejects(MQTT1("iot_as_mqtt.example.com", ""),
		"endpoints.mqtt.host: character \"_\" at offset 3 of \"iot_as_mqtt.example.com\" is not allowed");
	rejects(MQTT1("iot as mqtt", ""), "character \" \" at offset 3");
	rejects(MQTT1("h:1883", ""), "character \":\"");
	rejects(MQTT1("mqtt://h", ""), "character \":\"");
	rejects(MQTT1("", ""), "endpoints.mqtt.host: must not be empty");
	rejects(MQTT1(".example.com", ""), "has an empty label");
	rejects(MQTT1("example..com", ""), "has an empty label");
	rejects(MQTT1("example.com.", ""), "has an empty label");
}

static void test_host_length(void **state)
{
	char json[1024];

	(void)state;
	/* ${productKey} counts as 32: 32 + 68 = 100 fits, 32 + 69 and 32 + 70 do not. */
	snprintf(json, sizeof(json), MQTT1("${productKey}%s", ""), rep('a', 68));
	accepts(json);
	snprintf(json, sizeof(json), MQTT1("${productKey}%s", ""), rep('a', 69));
	rejects(json, "endpoints.mqtt.host: ");
	rejects(json, " is 101 characters with the longest values substituted");
	snprintf(json, sizeof(json), MQTT1("${productKey}%s", ""), rep('a', 70));
	rejects(json, "is 102 characters");
	/* ${deviceName} counts as 32 as well. */
	snprintf(json, sizeof(json), MQTT1("${deviceName}%s", ""), rep('a', 69));
	rejects(json, "is 101 characters");
	/* Plain hosts and other protocols too. */
	snprintf(json, sizeof(json), MQTT1("%s", ""), rep('a', 100));
	accepts(json);
	snprintf(json, sizeof(json), REGION1("{'id':'i1','endpoints':{'http':{'host':'%s','port':1}}}"),
		rep('a', 101));
	rejects(json, "endpoints.http.host: ");
	/* ${instanceId} and ${regionId} count as their own ids ("i1" and "r1"). */
	snprintf(json, sizeof(json), MQTT1("${instanceId}${regionId}%s", ""), rep('a', 96));
	accepts(json);
	snprintf(json, sizeof(json), MQTT1("${instanceId}${regionId}%s", ""), rep('a', 97));
	rejects(json, "is 101 characters");
}

static void test_answer_size(void **state)
{
	char json[1024];

	(void)state;
	/* 82 + 90 (host) + 4 (1883) + 8 + 8 ("10.0.0.1") = 192: fits. */
	snprintf(json, sizeof(json), MQTT1("%s", ",'ip':'10.0.0.1'"), rep('a', 90));
	accepts(json);
	/* One more byte of ip: 193. */
	snprintf(json, sizeof(json), MQTT1("%s", ",'ip':'10.0.0.10'"), rep('a', 90));
	rejects(json, "endpoints.mqtt: the default answer would be 193 bytes with the longest "
		"values substituted, more than 192 (82 + host 90 + port 4 + ip 17)");
	/* ${productKey} counts as 32 here too: 82 + 32 + 58 + 4 + 16 = 192. */
	snprintf(json, sizeof(json), MQTT1("${productKey}%s", ",'ip':'10.0.0.1'"), rep('a', 58));
	accepts(json);
	snprintf(json, sizeof(json), MQTT1("${productKey}%s", ",'ip':'10.0.0.1'"), rep('a', 59));
	rejects(json, "would be 193 bytes");
	/* The port's digits count: 82 + 90 + 5 + 16 = 193. */
	snprintf(json, sizeof(json), REGION1("{'id':'i1','endpoints':{'mqtt':{'host':'%s',"
		"'port':18830,'ip':'10.0.0.1'}}}"), rep('a', 90));
	rejects(json, "would be 193 bytes");
	/* Only the mqtt endpoint is in the default answer. */
	snprintf(json, sizeof(json), REGION1("{'id':'i1','endpoints':{'mqtt':{'host':'h','port':1},"
		"'http':{'host':'%s','port':443,'ip':'255.255.255.255'}}}"), rep('a', 100));
	accepts(json);
	/* Without ip, 100 characters always fit: 82 + 100 + 5 = 187. */
	snprintf(json, sizeof(json), REGION1("{'id':'i1','endpoints':{'mqtt':{'host':'%s',"
		"'port':65535}}}"), rep('a', 100));
	accepts(json);
}

static void test_ip(void **state)
{
	(void)state;
	accepts(MQTT1("h", ",'ip':'192.168.0.1'"));
	rejects(MQTT1("h", ",'ip':'10.0.0.256'"),
		"endpoints.mqtt.ip: must be an IPv4 address (a.b.c.d), got \"10.0.0.256\"");
	rejects(MQTT1("h", ",'ip':'::1'"), "endpoints.mqtt.ip: must be an IPv4 address");
	rejects(MQTT1("h", ",'ip':'1.2.3'"), "endpoints.mqtt.ip: must be an IPv4 address");
	rejects(MQTT1("h", ",'ip':'example.com'"), "endpoints.mqtt.ip: must be an IPv4 address");
	rejects(MQTT1("h", ",'ip':''"), "endpoints.mqtt.ip: must be an IPv4 address");
	rejects(MQTT1("h", ",'ip':' 1.2.3.4'"), "endpoints.mqtt.ip: must be an IPv4 address");
	rejects(MQTT1("h", ",'ip':16909060"), "endpoints.mqtt.ip: must be a string, got a number");
}

static void test_notify(void **state)
{
	struct catalog *cat;
	const struct catalog_notify *n;

	(void)state;
	cat = parse_ok(NOTIFY1("{'broker':'mqtt://broker.example.com'}"));
	n = &cat->regions[0].instances[0].notify;
	assert_string_equal(n->broker, "mqtt://broker.example.com:1883");
	assert_string_equal(n->broker_host, "broker.example.com");
	assert_int_equal(n->broker_port, 1883);
	assert_false(n->broker_tls);
	assert_null(n->username);
	assert_null(n->password_env);
	catalog_unref(cat);
	cat = parse_ok(NOTIFY1("{'broker':'mqtts://10.0.0.1:18883','ca_file':'ca.pem'}"));
	n = &cat->regions[0].instances[0].notify;
	assert_string_equal(n->broker, "mqtts://10.0.0.1:18883");
	assert_int_equal(n->broker_port, 18883);
	assert_true(n->broker_tls);
	assert_string_equal(n->ca_file, "ca.pem"); /* only catalog_load resolves it */
	catalog_unref(cat);
	accepts(NOTIFY1("{'broker':'mqtt://[2001:db8::1]:1883','password_env':'_X1'}"));
	cat = parse_ok(NOTIFY1("{'broker':'mqtts://h:8883','cert_file':'c.pem','key_file':'k.pem'}"));
	n = &cat->regions[0].instances[0].notify;
	assert_string_equal(n->cert_file, "c.pem");
	assert_string_equal(n->key_file, "k.pem");
	catalog_unref(cat);
	rejects(NOTIFY1("{'broker':'mqtts://h:8883','cert_file':'c.pem'}"),
		"notify.key_file: cert_file and key_file go together");
	rejects(NOTIFY1("{'broker':'mqtts://h:8883','key_file':'k.pem'}"),
		"notify.cert_file: cert_file and key_file go together");
	rejects(NOTIFY1("{'broker':'mqtt://h:1883','cert_file':'c.pem','key_file':'k.pem'}"),
		"notify.cert_file: needs an mqtts:// broker");

	rejects(NOTIFY1("{}"), "instances[0] (\"i1\").notify.broker: required");
	rejects(NOTIFY1("'mqtt://h:1'"), "notify: must be an object, got a string");
	rejects(NOTIFY1("{'broker':1883}"), "notify.broker: must be a string");
	rejects(NOTIFY1("{'broker':'tcp://h:1883'}"),
		"notify.broker: must be mqtt://host:port or mqtts://host:port, got \"tcp://h:1883\"");
	rejects(NOTIFY1("{'broker':'http://h:1883'}"), "notify.broker: must be mqtt://");
	rejects(NOTIFY1("{'broker':'MQTT://h:1883'}"), "notify.broker: must be mqtt://");
	rejects(NOTIFY1("{'broker':'mqtt://'}"), "notify.broker: must name a host");
	rejects(NOTIFY1("{'broker':'mqtt://:1883'}"), "notify.broker: must name a host");
	rejects(NOTIFY1("{'broker':'mqtt://h:0'}"), "notify.broker: port must be 1..65535");
	rejects(NOTIFY1("{'broker':'mqtt://h:65536'}"), "notify.broker: port must be 1..65535");
	rejects(NOTIFY1("{'broker':'mqtt://h:'}"), "notify.broker: port must be 1..65535");
	rejects(NOTIFY1("{'broker':'mqtt://h:18x'}"), "notify.broker: unexpected \"x\"");
	rejects(NOTIFY1("{'broker':'mqtt://h:1883/topic'}"), "notify.broker: unexpected \"/topic\"");
	rejects(NOTIFY1("{'broker':'mqtt://h_1:1883'}"), "notify.broker: bad host name");
	rejects(NOTIFY1("{'broker':'mqtt://user:pw@h:1883'}"),
		"notify.broker: must not carry credentials");
	rejects(NOTIFY1("{'broker':'mqtt://[zz]:1883'}"), "notify.broker: bad [IPv6 address]");
	rejects(NOTIFY1("{'broker':'mqtt://[::1:1883'}"), "notify.broker: bad [IPv6 address]");
	rejects(NOTIFY1("{'broker':'mqtt://h:1','password_env':'notify_pw'}"),
		"notify.password_env: must name an environment variable ([A-Z_][A-Z0-9_]*, at most 128), "
		"got \"notify_pw\"");
	rejects(NOTIFY1("{'broker':'mqtt://h:1','password_env':'1PW'}"), "notify.password_env: must name");
	rejects(NOTIFY1("{'broker':'mqtt://h:1','password_env':''}"), "notify.password_env: must name");
	rejects(NOTIFY1("{'broker':'mqtt://h:1','username':''}"), "notify.username: must be 1..256 bytes");
	rejects(NOTIFY1("{'broker':'mqtt://h:1','username':5}"), "notify.username: must be a string");
	rejects(NOTIFY1("{'broker':'mqtt://h:1','ca_file':'ca.pem'}"),
		"notify.ca_file: needs an mqtts:// broker");
	rejects(NOTIFY1("{'broker':'mqtts://h:1','ca_file':''}"), "notify.ca_file: must be 1..4096 bytes");
}

static char *tmp_dir(void)
{
	char tmpl[] = "/tmp/test_catalog.XXXXXX";
	char *dir = mkdtemp(tmpl);

	assert_non_null(dir);
	return strdup(dir);
}

static char *write_file(const char *dir, const char *name, const char *text)
{
	char *path = NULL;
	FILE *f;

	assert_true(asprintf(&path, "%s/%s", dir, name) > 0);
	f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
	return path;
}

static void test_load(void **state)
{
	struct catalog *cat = NULL;
	char *dir = tmp_dir(), *path, *bad, *missing = NULL, *cause = NULL, *json, *want = NULL;

	(void)state;
	json = dq(NOTIFY1("{'broker':'mqtts://h:1','ca_file':'certs/ca.pem'}"));
	path = write_file(dir, "regions.json", json);
	free(json);
	assert_int_equal(catalog_load(path, &cat, &cause), 0);
	assert_null(cause);
	assert_true(asprintf(&want, "%s/certs/ca.pem", dir) > 0);
	assert_string_equal(cat->regions[0].instances[0].notify.ca_file, want);
	catalog_unref(cat);

	/* The file name starts every message. */
	json = dq("{'regions':[]}");
	bad = write_file(dir, "bad.json", json);
	free(json);
	assert_int_equal(catalog_load(bad, &cat, &cause), -1);
	assert_null(cat);
	assert_non_null(strstr(cause, bad));
	assert_non_null(strstr(cause, ": regions: must hold at least one region"));
	free(cause);

	assert_true(asprintf(&missing, "%s/missing.json", dir) > 0);
	assert_int_equal(catalog_load(missing, &cat, &cause), -1);
	assert_non_null(strstr(cause, "missing.json: cannot open: "));
	free(cause);
	assert_int_equal(catalog_load(dir, &cat, &cause), -1);
	assert_non_null(strstr(cause, "not a regular file"));
	free(cause);

	unlink(path);
	unlink(bad);
	rmdir(dir);
	free(want);
	free(missing);
	free(bad);
	free(path);
	free(dir);
}

static void test_shipped_regions(void **state)
{
	const char *root = getenv("BOOTSTRAPD_SOURCE_ROOT");
	char pk[CATALOG_PRODUCT_KEY_MAX + 1], dn[CATALOG_DEVICE_NAME_MAX + 1];
	struct catalog_vars vars = { pk, dn };
	const struct catalog_region *sh;
	const struct catalog_instance *inst;
	struct catalog *cat = NULL;
	char *path = NULL, *cause = NULL, host[CATALOG_HOST_MAX + 1];

	(void)state;
	if (root == NULL || root[0] == '\0')
		skip();
	memset(pk, 'k', sizeof(pk) - 1);
	pk[sizeof(pk) - 1] = '\0';
	memset(dn, 'd', sizeof(dn) - 1);
	dn[sizeof(dn) - 1] = '\0';
	assert_true(asprintf(&path, "%s/data/regions.json", root) > 0);
	if (catalog_load(path, &cat, &cause) != 0) {
		print_error("%s\n", cause);
		free(cause);
		free(path);
		fail();
	}
	sh = catalog_region(cat, "cn-shanghai");
	assert_non_null(sh);
	assert_string_equal(sh->name, "Shanghai (Alibaba Cloud)");
	inst = catalog_default_instance(sh);
	assert_string_equal(inst->id, "iot-cn-shanghai");
	assert_true(inst->is_default);
	assert_non_null(catalog_region(cat, "aws-us-east-1"));
	assert_non_null(catalog_region(cat, "azure-westeurope"));
	assert_int_equal(cat->nregions, 124);
	for (size_t r = 0; r < cat->nregions; r++) {
		inst = catalog_default_instance(&cat->regions[r]);
		assert_string_equal(inst->endpoints[0].protocol, "mqtt");
		assert_true(catalog_render_host(&inst->endpoints[0], inst, &vars, host,
			sizeof(host)) > 0);
		assert_non_null(inst->notify.password_env);
	}
	vars.product_key = "a1B2c3D4e5F";
	inst = catalog_default_instance(sh);
	assert_true(catalog_render_host(&inst->endpoints[0], inst, &vars, host, sizeof(host)) > 0);
	assert_string_equal(host, "a1B2c3D4e5F.iot-as-mqtt.cn-shanghai.example.com");
	catalog_unref(cat);
	free(path);
}

/* The vendor SDK 4.x region numbers (SPEC §3) and the regionId form's answer. */
static void test_shipped_aliases(void **state)
{
	static const char *const sdk[] = {
		"cn-shanghai", "ap-southeast-1", "ap-northeast-1", "us-east-1", "eu-central-1",
		"us-west-1", "cn-hangzhou", "cn-shenzhen", "cn-beijing", "cn-qingdao",
		"cn-zhangjiakou", "cn-huhehaote", "cn-heyuan", "cn-chengdu", "cn-hongkong",
		"ap-southeast-2", "ap-southeast-3", "ap-southeast-5", "ap-south-1", "eu-west-1",
		"me-east-1",
	};
	const char *root = getenv("BOOTSTRAPD_SOURCE_ROOT");
	struct catalog *cat = NULL;
	char *path = NULL, *cause = NULL, host[CATALOG_HOST_MAX + 1], body[CATALOG_ANSWER_MAX + 1];
	size_t found = 0;

	(void)state;
	if (root == NULL || root[0] == '\0')
		skip();
	assert_true(asprintf(&path, "%s/data/regions.json", root) > 0);
	if (catalog_load(path, &cat, &cause) != 0) {
		print_error("%s\n", cause);
		free(cause);
		free(path);
		fail();
	}
	for (size_t n = 0; n < sizeof(sdk) / sizeof(sdk[0]); n++) {
		const struct catalog_region *r;
		char alias[4];

		snprintf(alias, sizeof(alias), "%zu", n);
		r = catalog_region_named(cat, alias);
		/* Closed regions, left out of data/cloud-regions.csv (data/README.md). */
		if (strcmp(sdk[n], "ap-southeast-2") == 0 || strcmp(sdk[n], "ap-south-1") == 0) {
			assert_null(r);
			assert_null(catalog_region(cat, sdk[n]));
			continue;
		}
		if (r == NULL || strcmp(r->id, sdk[n]) != 0) {
			print_error("alias %s: want %s, got %s\n", alias, sdk[n], r ? r->id : "nothing");
			fail();
		}
		assert_ptr_equal(catalog_region(cat, sdk[n]), r);
		found++;
	}
	assert_int_equal(found, 19);
	assert_null(catalog_region_named(cat, "21"));
	assert_null(catalog_region_named(cat, "04"));

	/* Every region answers the regionId form, within the 192-byte body. */
	for (size_t r = 0; r < cat->nregions; r++) {
		const struct catalog_instance *inst = catalog_default_instance(&cat->regions[r]);
		const struct catalog_endpoint *ep = catalog_endpoint(inst, "mqtt");
		struct answer_resource res;
		int n;

		assert_non_null(ep);
		assert_non_null(ep->region_host);
		n = catalog_render_region_host(ep, inst, host, sizeof(host));
		assert_true(n > 0);
		assert_null(strchr(host, '$'));
		assert_non_null(strstr(host, cat->regions[r].id));
		res = (struct answer_resource){ ep->protocol, host, ep->port, ep->ip };
		assert_in_range(answer_success(body, sizeof(body), &res, 1), 1, CATALOG_ANSWER_MAX);
	}
	assert_true(catalog_render_region_host(catalog_endpoint(catalog_default_instance(
		catalog_region_named(cat, "4")), "mqtt"), catalog_default_instance(
		catalog_region_named(cat, "4")), host, sizeof(host)) > 0);
	assert_string_equal(host, "iot-as-mqtt.eu-central-1.example.com");
	catalog_unref(cat);
	free(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good_catalog),
		cmocka_unit_test(test_render_host),
		cmocka_unit_test(test_aliases),
		cmocka_unit_test(test_bad_alias),
		cmocka_unit_test(test_duplicate_alias),
		cmocka_unit_test(test_region_host),
		cmocka_unit_test(test_region_host_length),
		cmocka_unit_test(test_sdk3_host_warnings),
		cmocka_unit_test(test_to_json),
		cmocka_unit_test(test_refcount),
		cmocka_unit_test(test_message_format),
		cmocka_unit_test(test_top_level),
		cmocka_unit_test(test_syntax),
		cmocka_unit_test(test_unknown_keys),
		cmocka_unit_test(test_region_id),
		cmocka_unit_test(test_duplicate_region_id),
		cmocka_unit_test(test_duplicate_instance_id),
		cmocka_unit_test(test_coordinates),
		cmocka_unit_test(test_name),
		cmocka_unit_test(test_instances),
		cmocka_unit_test(test_two_defaults),
		cmocka_unit_test(test_endpoints),
		cmocka_unit_test(test_port),
		cmocka_unit_test(test_host_template),
		cmocka_unit_test(test_host_length),
		cmocka_unit_test(test_answer_size),
		cmocka_unit_test(test_ip),
		cmocka_unit_test(test_notify),
		cmocka_unit_test(test_load),
		cmocka_unit_test(test_shipped_regions),
		cmocka_unit_test(test_shipped_aliases),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* bootstrapd: wiring only. Parse the command line, load the configuration and
 * catalog, then run the server in its role until a signal stops it. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog.h"
#include "config.h"
#include "geo.h"
#include "tls.h"
#include "log.h"
#include "metrics.h"
#include "schema.h"
#include "server.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: bootstrapd --config FILE [--role api|worker|all] [--check-config] [--version] [--help]\n"
		"       bootstrapd --key KIND [ARG...]\n"
		"\n"
		"  -c, --config FILE   configuration file (JSON)\n"
		"  -r, --role ROLE     api, worker or all (default: all)\n"
		"  -t, --check-config  validate FILE and the files it names, then exit\n"
		"  -k, --key KIND      print the Redis key of KIND for ARGs (docs/key-schema.md), then exit\n"
		"  -V, --version       print the version and exit\n"
		"  -h, --help          print this help and exit\n");
}

static int check_tls(const struct config_tls *tls, const char *what)
{
	SSL_CTX *ctx = NULL;
	char *cause = NULL;

	if (!tls->enabled)
		return 0;
	if (tls_ctx_new(tls, &ctx, &cause) < 0) {
		fprintf(stderr, "bootstrapd: %s.tls: %s\n", what, cause ? cause : "unusable");
		free(cause);
		return -1;
	}
	SSL_CTX_free(ctx);
	return 0;
}

static void main_warn_stderr(const char *message, void *arg)
{
	(void)arg;
	fprintf(stderr, "bootstrapd: warning: %s\n", message);
}

static void main_warn_log(const char *message, void *arg)
{
	(void)arg;
	log_warn("catalog", "%s", message);
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "role", required_argument, NULL, 'r' },
		{ "check-config", no_argument, NULL, 't' },
		{ "key", required_argument, NULL, 'k' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *config_path = NULL, *key_kind = NULL;
	enum server_role role = SERVER_ROLE_ALL;
	bool check = false;
	struct config *cfg = NULL;
	struct catalog *cat = NULL;
	struct geo_db *geo = NULL;
	struct server *srv = NULL;
	char *cause = NULL;
	int opt, rc = 1;

	while ((opt = getopt_long(argc, argv, "+c:r:tk:Vh", options, NULL)) != -1) {
		switch (opt) {
		case 'c':
			config_path = optarg;
			break;
		case 'r':
			if (strcmp(optarg, "all") == 0)
				role = SERVER_ROLE_ALL;
			else if (strcmp(optarg, "api") == 0)
				role = SERVER_ROLE_API;
			else if (strcmp(optarg, "worker") == 0)
				role = SERVER_ROLE_WORKER;
			else {
				fprintf(stderr, "bootstrapd: --role: expected api, worker or all, got \"%s\"\n", optarg);
				return 2;
			}
			break;
		case 't':
			check = true;
			break;
		case 'k':
			key_kind = optarg;
			break;
		case 'V':
			printf("bootstrapd %s\n", BOOTSTRAPD_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (key_kind != NULL) {
		char key[SCHEMA_KEY_MAX];
		if (schema_key_named(key, sizeof(key), key_kind, (const char *const *)argv + optind,
			    (size_t)(argc - optind)) < 0) {
			fprintf(stderr, "bootstrapd: --key %s: unknown kind or wrong arguments (docs/key-schema.md)\n",
				key_kind);
			return 2;
		}
		printf("%s\n", key);
		return 0;
	}
	if (optind < argc) {
		fprintf(stderr, "bootstrapd: unexpected argument \"%s\"\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	if (config_path == NULL) {
		fprintf(stderr, "bootstrapd: --config FILE is required\n");
		usage(stderr);
		return 2;
	}

	if (config_load(config_path, NULL, &cfg, &cause) < 0) {
		fprintf(stderr, "bootstrapd: %s\n", cause ? cause : "cannot load the configuration");
		goto out;
	}
	log_configure(cfg->log_level, cfg->log_format, cfg->log_access);
	log_capture_libevent();
	metrics_started();
	if (catalog_load(cfg->regions, &cat, &cause) < 0) {
		fprintf(stderr, "bootstrapd: %s\n", cause ? cause : "cannot load the region catalog");
		goto out;
	}
	if (cfg->geoip_enabled &&
	    geo_db_open(cfg->geoip_databases, cfg->ngeoip_databases, cfg->country_centroids, &geo, &cause) < 0) {
		fprintf(stderr, "bootstrapd: %s\n", cause ? cause : "cannot open the GeoIP database");
		goto out;
	}
	if (check) {
		if (check_tls(&cfg->public_.tls, "public") < 0 || check_tls(&cfg->admin.tls, "admin") < 0 ||
		    check_tls(&cfg->worker.tls, "worker") < 0)
			goto out;
		(void)catalog_sdk3_warnings(cat, main_warn_stderr, NULL);
		printf("%s: configuration is valid (%zu regions)\n", cfg->path, cat->nregions);
		rc = 0;
		goto out;
	}
	(void)catalog_sdk3_warnings(cat, main_warn_log, NULL);
	if (server_new(cfg, role, cat, geo, &srv, &cause) < 0) {
		fprintf(stderr, "bootstrapd: %s\n", cause ? cause : "cannot start");
		goto out;
	}
	rc = server_run(srv) < 0 ? 1 : 0;
out:
	server_free(srv);
	catalog_unref(cat);
	geo_db_unref(geo);
	config_free(cfg);
	free(cause);
	return rc;
}

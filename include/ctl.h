/* ctl: the pure part of bootstrapctl, the operator's command line for the
 * admin API (docs/bootstrapctl.md): the command table, the command line read
 * into a struct ctl_args, the request each command makes, and the text it
 * prints (help, batch lines, the progress bar, statistics, regions, pretty
 * JSON). No I/O of its own: text goes to the stream or buffer the caller
 * gives. The transport (libcurl) is cli/bootstrapctl.c. */
#ifndef BOOTSTRAPD_CTL_H
#define BOOTSTRAPD_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <yajl/yajl_tree.h>

/* Exit statuses (docs/bootstrapctl.md, "Exit status"). */
#define CTL_EXIT_OK 0
#define CTL_EXIT_REFUSED 1     /* the API answered 4xx/5xx, or something unexpected */
#define CTL_EXIT_USAGE 2       /* bad command line, or a FILE that cannot be read */
#define CTL_EXIT_UNREACHABLE 3 /* no answer: connection, DNS, timeout, TLS */

#define CTL_DEFAULT_URL "http://127.0.0.1:8081" /* the default admin.listen */
#define CTL_DEFAULT_TIMEOUT_S 30L
#define CTL_POS_MAX 2 /* positional arguments a command takes at most */

enum ctl_verb {
	CTL_HELP,
	CTL_REGIONS,
	CTL_PRODUCT_PUT,
	CTL_PRODUCT_GET,
	CTL_DEVICES_REGISTER,
	CTL_DEVICE_GET,
	CTL_RESOLVE,
	CTL_BATCH_TEMPLATE,
	CTL_BATCH_CREATE,
	CTL_BATCH_STATUS,
	CTL_BATCH_RESULTS,
	CTL_BATCH_LIST,
	CTL_BATCH_RETRY,
	CTL_AUTH_CODE,
	CTL_STATS,
	CTL_NVERBS,
};

struct ctl_args;
struct ctl_option;
struct ctl_request;

/* One entry of the command table (static). */
struct ctl_command {
	const char *name;     /* "batch create": one or two words */
	enum ctl_verb verb;
	const char *synopsis; /* what follows the name in the usage line */
	const char *summary;  /* one line for the command list */
	const char *details;  /* the rest of its --help */
	size_t min_pos, max_pos;
	const char *const *pos_names;             /* names of the positionals, for "missing PK" */
	const struct ctl_option *const *options;  /* NULL-terminated; the global ones come on top */
	/* Checks what the table cannot say (one of two options, a required
	 * one): 0, or -1 with ERR. May be NULL. */
	int (*check)(const struct ctl_args *a, char *err, size_t errsize);
	/* The call it makes first (ctl_request_build). */
	int (*build)(const struct ctl_args *a, struct ctl_request *r);
};

extern const struct ctl_command ctl_commands[];
extern const size_t ctl_ncommands;

/* What the command line says. Every string is borrowed from argv or the
 * environment given to ctl_args_parse. */
struct ctl_args {
	const struct ctl_command *command; /* NULL: bootstrapctl itself (help, --version) */
	const char *topic;                 /* help of a group of commands ("batch"), else NULL */
	bool help, version;
	const char *url, *token, *cacert;
	bool insecure, json;
	long timeout_s;
	const char *pos[CTL_POS_MAX];
	size_t npos;
	const char *home_region, *home_instance, *account, *bootstrap_auth, *dynamic_registration;
	bool locked, pre_auth;
	long count, limit;
	const char *ip, *strategy, *target_region, *target_instance, *regions, *target_account, *auth_code,
		*cursor;
	bool wait, watch;
};

/* The environment's say (NULL where unset): flags win over it. */
struct ctl_env {
	const char *url;    /* BOOTSTRAPCTL_URL */
	const char *token;  /* BOOTSTRAPCTL_TOKEN */
	const char *cacert; /* BOOTSTRAPCTL_CACERT */
};

/* Reads ARGV (ARGC words, argv[0] the program) into *OUT, ENV under the
 * flags. Returns 0, or -1 with ERR saying what is wrong (OUT->command is
 * then the command named, if any, for its usage line). --help and
 * --version are not errors: OUT->help and OUT->version say so. */
int ctl_args_parse(int argc, char *const *argv, const struct ctl_env *env, struct ctl_args *out, char *err,
	size_t errsize) __attribute__((warn_unused_result));

/* The help A asks for (bootstrapctl's, a group's or a command's) to OUT. */
void ctl_help(FILE *out, const struct ctl_args *a);
/* The usage line of A's command (or of bootstrapctl) to OUT, after an error. */
void ctl_usage(FILE *out, const struct ctl_args *a);

/* One admin API call. */
struct ctl_request {
	const char *method;       /* static */
	char *path;               /* "/v1/...", query included, escaped; owned */
	const char *content_type; /* static; NULL without a body */
	char *body;               /* owned: JSON made here; NULL when none or FILE */
	size_t body_len;
	const char *file;         /* the body is this file's bytes ("-": stdin), or NULL */
};

/* The call A's command makes first. 0, or -1 when out of memory. */
int ctl_request_build(const struct ctl_args *a, struct ctl_request *out) __attribute__((warn_unused_result));
/* GET /v1/batches/ID, as a watch repeats it. 0, or -1 when out of memory. */
int ctl_request_batch(const char *id, struct ctl_request *out) __attribute__((warn_unused_result));
void ctl_request_deinit(struct ctl_request *r);

/* Percent-encodes S for a path segment or a query value: everything but
 * A-Z a-z 0-9 - . _ ~ @ : (the service takes paths undecoded, and device
 * names hold @ and :). Returns a string the caller frees, or NULL. */
char *ctl_escape(const char *s);

/* A batch as GET /v1/batches/{id} answers it; strings borrowed from the tree. */
struct ctl_batch {
	const char *id, *status, *error; /* error NULL unless failed */
	long long total, processed, succeeded, failed;
};

/* Reads V (the answer's tree) into *B: 0, or -1 when it is not a batch. */
int ctl_batch_read(yajl_val v, struct ctl_batch *b) __attribute__((warn_unused_result));
/* True once B will not change by itself (completed or failed). */
bool ctl_batch_done(const struct ctl_batch *b);
/* "batch 17: running, 450/1000 processed, 448 succeeded, 2 failed" (and
 * "; error: ..." when failed) into OUT, always NUL-terminated. */
void ctl_batch_line(const struct ctl_batch *b, char *out, size_t size);
/* "[#####.....]  50%": WIDTH cells (at most 200) for DONE of TOTAL, into
 * OUT (at least WIDTH + 8 bytes). TOTAL 0 is shown full. */
void ctl_progress_bar(long long done, long long total, unsigned width, char *out, size_t size);
/* The progress bar's line on a terminal: the bar, the counts, the status. */
void ctl_batch_bar_line(const struct ctl_batch *b, char *out, size_t size);

/* GET /v1/batches/{id} as text for a person (the batch line, then its
 * strategy, targets, times and notify counts), to OUT. V: the tree. */
void ctl_batch_print(FILE *out, yajl_val v);
/* GET /v1/stats as text for a person, to OUT. */
void ctl_stats_print(FILE *out, yajl_val v);
/* GET /v1/regions as a table (id, name, instances; the default marked), to OUT. */
void ctl_regions_print(FILE *out, yajl_val v);

/* TEXT (LEN bytes of JSON) indented, two spaces a level, to OUT; numbers and
 * strings as they came. 0, or -1 when it is not JSON (nothing written). */
int ctl_json_pretty(FILE *out, const char *text, size_t len) __attribute__((warn_unused_result));

/* The admin API's error body ({"error":{"code","message","details"}}) as
 * "message (code)", details after it, into OUT. Returns 0, or -1 when BODY
 * is not that shape (OUT then empty). */
int ctl_api_error(const char *body, size_t len, char *out, size_t size) __attribute__((warn_unused_result));

#endif

#include "fuzz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

char *fuzz_strndup(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);

	if (s == NULL)
		abort();
	if (size)
		memcpy(s, data, size);
	s[size] = '\0';
	return s;
}

const struct catalog *fuzz_catalog(void)
{
	static struct catalog *cat;
	char json[8192], *cause = NULL;
	size_t off;

	if (cat != NULL)
		return cat;
	off = (size_t)snprintf(json, sizeof(json), "%s",
		"{\"regions\":["
		"{\"id\":\"cn-shanghai\",\"latitude\":31,\"longitude\":121,\"aliases\":[\"0\"],\"instances\":["
		" {\"id\":\"iot-cn-sh-public\",\"endpoints\":{\"mqtt\":{\"host\":\"${productKey}.sh.example.com\",\"port\":1883}}},"
		" {\"id\":\"iot-cn-sh-2\",\"default\":true,\"endpoints\":{\"mqtt\":{\"host\":\"sh2.example.com\",\"port\":1883}}}]},"
		"{\"id\":\"eu-central-1\",\"latitude\":50,\"longitude\":8,\"instances\":["
		" {\"id\":\"iot-eu-1\",\"endpoints\":{\"mqtt\":{\"host\":\"eu1.example.com\",\"port\":1883}}},"
		" {\"id\":\"iot-eu-2\",\"endpoints\":{\"mqtt\":{\"host\":\"eu2.example.com\",\"port\":1883}}}]},"
		"{\"id\":\"us-east-1\",\"latitude\":40,\"longitude\":-70,\"instances\":["
		" {\"id\":\"iot-us-1\",\"endpoints\":{\"mqtt\":{\"host\":\"us.example.com\",\"port\":1883}}}]}");
	/* Past SCHEMA_TARGETS_MAX candidates. */
	for (int i = 1; i <= 17; i++)
		off += (size_t)snprintf(json + off, sizeof(json) - off,
			",{\"id\":\"r%02d\",\"latitude\":0,\"longitude\":0,\"instances\":["
			"{\"id\":\"i-r%02d\",\"endpoints\":{\"mqtt\":{\"host\":\"h\",\"port\":1}}}]}", i, i);
	off += (size_t)snprintf(json + off, sizeof(json) - off, "]}");
	if (off >= sizeof(json) || catalog_parse(json, off, "fuzz", &cat, &cause) != 0) {
		fprintf(stderr, "fuzz catalog: %s\n", cause ? cause : "too long");
		abort();
	}
	return cat;
}

const char *fuzz_file(const uint8_t *data, size_t size)
{
	static char path[64];
	static int fd = -1;

	if (fd < 0) {
		fd = memfd_create("fuzz-input", MFD_CLOEXEC);
		if (fd < 0) {
			perror("memfd_create");
			abort();
		}
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	}
	if (ftruncate(fd, 0) < 0 || (size && pwrite(fd, data, size, 0) != (ssize_t)size)) {
		perror("fuzz input file");
		abort();
	}
	return path;
}

void fuzz_fail(const char *file, int line, const char *what)
{
	fprintf(stderr, "%s:%d: invariant broken: %s\n", file, line, what);
	abort();
}

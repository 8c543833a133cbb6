/* Shared by the libFuzzer targets in tests/fuzz (docs/fuzzing.md). */
#ifndef BOOTSTRAPD_FUZZ_H
#define BOOTSTRAPD_FUZZ_H

#include <stddef.h>
#include <stdint.h>

#include "catalog.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A malloc'd copy of DATA with a NUL after it: ASan sees any read past SIZE. */
char *fuzz_strndup(const uint8_t *data, size_t size);

/* The catalog the batch and product targets look targets up in (built once,
 * never freed): cn-shanghai (alias "0"; two instances, the second default),
 * eu-central-1 (two, none marked), us-east-1 (one), r01..r17. */
const struct catalog *fuzz_catalog(void);

/* A path that reads back DATA: an in-memory file (memfd), rewritten for
 * each input, so that loaders that take a path write nothing to disk. */
const char *fuzz_file(const uint8_t *data, size_t size);

/* Aborts (a finding) with a message when COND is false. */
#define fuzz_assert(cond) ((cond) ? (void)0 : fuzz_fail(__FILE__, __LINE__, #cond))
void fuzz_fail(const char *file, int line, const char *what) __attribute__((noreturn));

#endif

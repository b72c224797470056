/* A main() for the fuzz targets without libFuzzer: runs LLVMFuzzerTestOneInput on every file
 * named on the command line (directories: every regular file in them, sorted). The default
 * and sanitizer builds use it to replay the seed corpora and the kept crash inputs
 * (fuzz/corpus/<target>/, fuzz/regressions/<target>/) as ordinary tests. */
#define _GNU_SOURCE
#include "fuzz_common.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int run_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); return 1; }
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap);
    for (;;) {
        if (!buf) { fclose(f); fprintf(stderr, "%s: out of memory\n", path); return 1; }
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) break;
        uint8_t *bigger = malloc(cap * 2);
        if (bigger) memcpy(bigger, buf, n);
        free(buf);
        buf = bigger;
        cap *= 2;
    }
    fclose(f);
    LLVMFuzzerTestOneInput(buf, n);
    free(buf);
    return 0;
}

static int by_name(const struct dirent **a, const struct dirent **b) { return strcmp((*a)->d_name, (*b)->d_name); }

int main(int argc, char **argv) {
    int failed = 0, files = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) { perror(argv[i]); failed++; continue; }
        if (!S_ISDIR(st.st_mode)) { failed += run_file(argv[i]); files++; continue; }
        struct dirent **names = NULL;
        const int n = scandir(argv[i], &names, NULL, by_name);
        for (int k = 0; k < n; k++) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", argv[i], names[k]->d_name);
            if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) { failed += run_file(path); files++; }
            free(names[k]);
        }
        free(names);
    }
    printf("%d input(s) replayed, %d unreadable\n", files, failed);
    return failed ? 1 : 0;
}

/*
 * test.h -- a tiny unit-test harness for core/ (no Python).
 *
 * Each test-<feature>.c defines TEST_IMPL(name) functions and a
 * TEST_LIST. Assertions print file, line and both values and are never
 * compiled out (they do not use assert()). A test may RETURN_SKIP(reason).
 * Exit status: 0 all passed, 1 a failure, 77 all skipped (CTest's
 * SKIP_RETURN_CODE).
 */
#ifndef PYPROF_TEST_H
#define PYPROF_TEST_H

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TEST_OK 0
#define TEST_FAIL 1
#define TEST_SKIP 77

#define TEST_IMPL(name) static int test_##name(void)

#define FAILF(...)                                                        \
  do {                                                                    \
    fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                       \
    fprintf(stderr, __VA_ARGS__);                                         \
    fputc('\n', stderr);                                                  \
    return TEST_FAIL;                                                     \
  } while (0)

#define ASSERT(cond)                                                      \
  do {                                                                    \
    if (!(cond)) FAILF("assertion failed: %s", #cond);                    \
  } while (0)

#define ASSERT_EQ_U(a, b)                                                 \
  do {                                                                    \
    uint64_t a_ = (uint64_t)(a), b_ = (uint64_t)(b);                      \
    if (a_ != b_)                                                         \
      FAILF("%s == %s: %" PRIu64 " != %" PRIu64, #a, #b, a_, b_);         \
  } while (0)

#define ASSERT_EQ_I(a, b)                                                 \
  do {                                                                    \
    int64_t a_ = (int64_t)(a), b_ = (int64_t)(b);                         \
    if (a_ != b_)                                                         \
      FAILF("%s == %s: %" PRId64 " != %" PRId64, #a, #b, a_, b_);         \
  } while (0)

#define ASSERT_NEAR(a, b, tol)                                            \
  do {                                                                    \
    double a_ = (double)(a), b_ = (double)(b);                            \
    if (!(fabs(a_ - b_) <= (tol)))                                        \
      FAILF("%s ~= %s: %.9g vs %.9g (tol %g)", #a, #b, a_, b_, (double)(tol)); \
  } while (0)

#define ASSERT_STR_EQ(a, b)                                               \
  do {                                                                    \
    const char *a_ = (a), *b_ = (b);                                      \
    if (!a_ || !b_ || strcmp(a_, b_) != 0)                                \
      FAILF("%s == %s: \"%s\" != \"%s\"", #a, #b, a_ ? a_ : "(null)",     \
            b_ ? b_ : "(null)");                                          \
  } while (0)

#define RETURN_SKIP(reason)                                               \
  do {                                                                    \
    fprintf(stderr, "skipped: %s\n", reason);                             \
    return TEST_SKIP;                                                     \
  } while (0)

typedef struct {
  const char *name;
  int (*fn)(void);
} test_entry;

#define TEST_ENTRY(name) {#name, test_##name},

/* Runs the tests of argv[1] if given (by name), else all of them. */
static inline int test_main(int argc, char **argv, const test_entry *tests,
                            size_t n) {
  int failed = 0, skipped = 0, ran = 0;
  for (size_t i = 0; i < n; i++) {
    if (argc > 1 && strcmp(argv[1], tests[i].name) != 0) continue;
    int r = tests[i].fn();
    ran++;
    printf("%s %s\n", r == TEST_OK ? "ok  " : r == TEST_SKIP ? "skip" : "FAIL",
           tests[i].name);
    if (r == TEST_SKIP) skipped++;
    else if (r != TEST_OK) failed++;
  }
  if (ran == 0) {
    fprintf(stderr, "no test named %s\n", argc > 1 ? argv[1] : "(any)");
    return 1;
  }
  printf("%d passed, %d failed, %d skipped\n", ran - failed - skipped, failed,
         skipped);
  if (failed) return 1;
  return skipped == ran ? TEST_SKIP : 0;
}

#define TEST_MAIN(...)                                                     \
  int main(int argc, char **argv) {                                        \
    static const test_entry tests_[] = {__VA_ARGS__};                      \
    return test_main(argc, argv, tests_, sizeof tests_ / sizeof tests_[0]);\
  }

#endif

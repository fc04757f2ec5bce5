/*
 * config.h -- configuration from the environment (PYPROF_*).
 *
 * Every variable is listed in the README's table and in `known` in
 * config.c. An unknown PYPROF_* name or a bad value makes
 * pyprof_config_load() fail with a one-line message for the user; the
 * caller then leaves the program unprofiled.
 */
#ifndef PYPROF_CONFIG_H
#define PYPROF_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "clock.h"

#define PYPROF_PATH_MAX 4096

enum { PYPROF_HOOK_AUTO, PYPROF_HOOK_LEGACY, PYPROF_HOOK_MONITORING,
       PYPROF_HOOK_EVAL };

typedef struct pyprof_config {
  char out[PYPROF_PATH_MAX]; /* output template, absolute after load */
  int quiet;                 /* no "wrote ..." line */
  pyprof_timer timer;
  int bias_auto;             /* PYPROF_BIAS=auto */
  double bias;               /* seconds per event (when not auto) */
  double bias_far;           /* ... and more per far event (clock.h) */
  int snap_signal;           /* snapshot signal, 0 = off */
  int toggle_signal;         /* pause/resume signal, 0 = off */
  int start_paused;          /* PYPROF_START=paused */
  int children;              /* profile child processes */
  long root_pid;             /* PYPROF_ROOT_PID, 0 if unset */
  int hook;                  /* PYPROF_HOOK: PYPROF_HOOK_* */
  int paths;                 /* record call paths (PYPROF_PATHS) */
  int crash;                 /* crash reports (PYPROF_CRASH) */
  int fsync;                 /* fsync files before renaming (PYPROF_FSYNC) */
} pyprof_config;

/* Parses a signal: a name with or without "SIG" (USR1, SIGUSR2, HUP),
 * RTMIN+n / RTMAX-n, a number, or "off" (0). Refuses signals that cannot
 * be caught or that report faults (KILL, STOP, SEGV, BUS, ILL, FPE, TRAP,
 * ABRT). Returns 0 or -1. */
int pyprof_parse_signal(const char *s, int *sig);

/* Typed parsers: return 0, or -1 when `s` is not valid. */
int pyprof_parse_bool(const char *s, int *out);
int pyprof_parse_seconds(const char *s, double *out);

/* Checks an output template: %p pid, %n dump number, %t unix time,
 * %% a percent sign; nothing else may follow a %. Returns 0 or -1. */
int pyprof_template_check(const char *tmpl);

/* Whether `tmpl` contains a %p (not a %%p). */
int pyprof_template_has_pid(const char *tmpl);

/* Expands `tmpl` into `buf` (size `len`). Returns 0, or -1 if it does not
 * fit. Async-signal-safe (no stdio, no allocation). */
int pyprof_template_expand(const char *tmpl, long pid, unsigned long n,
                           long unix_time, char *buf, size_t len);

/* Loads the configuration from the environment through `get` (getenv
 * or a test double) and the list of variable names set, `names` (NULL
 * terminated "NAME=value" strings as in environ; may be NULL). `cwd` makes
 * a relative template absolute. On error writes one message (without the
 * "pyprof: " prefix and without newline) into `err` and returns -1. */
int pyprof_config_load(pyprof_config *c, const char *(*get)(const char *),
                       char *const *names, const char *cwd, char *err,
                       size_t errlen);

#endif

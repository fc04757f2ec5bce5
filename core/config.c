/*
 * config.c -- PYPROF_* environment variables.
 */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Every variable the library or the pyprof command reads. */
static const char *const known[] = {
    "PYPROF_OUT", "PYPROF_QUIET", "PYPROF_TIMER", "PYPROF_BIAS",
    "PYPROF_SIGNAL", "PYPROF_TOGGLE_SIGNAL", "PYPROF_START",
    "PYPROF_CHILDREN", "PYPROF_HOOK", "PYPROF_PATHS",
    "PYPROF_CRASH", "PYPROF_FSYNC",
    "PYPROF_ROOT_PID", /* set by the library for child processes */
    "PYPROF_EXECED",   /* set by the library before os.exec* */
    "PYPROF_LIB",      /* read by scripts/pyprof only */
    NULL};

static const struct {
  const char *name;
  int sig;
} signames[] = {
    {"HUP", SIGHUP},   {"INT", SIGINT},     {"QUIT", SIGQUIT},
    {"USR1", SIGUSR1}, {"USR2", SIGUSR2},   {"PIPE", SIGPIPE},
    {"ALRM", SIGALRM}, {"TERM", SIGTERM},   {"CHLD", SIGCHLD},
    {"CONT", SIGCONT}, {"TSTP", SIGTSTP},   {"TTIN", SIGTTIN},
    {"TTOU", SIGTTOU}, {"URG", SIGURG},     {"XCPU", SIGXCPU},
    {"XFSZ", SIGXFSZ}, {"VTALRM", SIGVTALRM}, {"PROF", SIGPROF},
    {"WINCH", SIGWINCH}, {"IO", SIGIO},     {"PWR", SIGPWR},
    {"SYS", SIGSYS},
};

/* Parses a whole decimal number; -1 if `s` is not one. */
static long whole(const char *s) {
  char *end;
  if (!*s || *s < '0' || *s > '9') return -1;
  errno = 0;
  long v = strtol(s, &end, 10);
  return *end || errno ? -1 : v;
}

int pyprof_parse_signal(const char *s, int *sig) {
  if (strcmp(s, "off") == 0) return *sig = 0, 0;
  const char *n = strncmp(s, "SIG", 3) == 0 ? s + 3 : s;
  long v = whole(n);
  if (v < 0) {
    if (strncmp(n, "RTMIN", 5) == 0 || strncmp(n, "RTMAX", 5) == 0) {
      long off = n[5] ? whole(n + 6) : 0;
      if (off < 0 || (n[5] && n[5] != (n[3] == 'I' ? '+' : '-'))) return -1;
      v = n[3] == 'I' ? SIGRTMIN + off : SIGRTMAX - off;
      if (v < SIGRTMIN || v > SIGRTMAX) return -1;
    } else {
      for (size_t i = 0; i < sizeof signames / sizeof *signames; i++)
        if (strcmp(n, signames[i].name) == 0) v = signames[i].sig;
    }
  }
  if (v <= 0 || v >= NSIG || v == SIGKILL || v == SIGSTOP || v == SIGSEGV ||
      v == SIGBUS || v == SIGILL || v == SIGFPE || v == SIGTRAP ||
      v == SIGABRT)
    return -1;
  *sig = (int)v;
  return 0;
}

int pyprof_parse_bool(const char *s, int *out) {
  static const char *const yes[] = {"1", "yes", "true", "on", NULL};
  static const char *const no[] = {"0", "no", "false", "off", NULL};
  for (int i = 0; yes[i]; i++)
    if (strcmp(s, yes[i]) == 0) return *out = 1, 0;
  for (int i = 0; no[i]; i++)
    if (strcmp(s, no[i]) == 0) return *out = 0, 0;
  return -1;
}

int pyprof_parse_seconds(const char *s, double *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (end == s || *end != '\0' || errno || !isfinite(v) || v < 0 || v > 1)
    return -1;
  *out = v;
  return 0;
}

/* "<seconds>" or "<seconds>,<seconds per far event>" (what `pyprof
 * calibrate` prints on 3.12+). */
static int parse_bias(const char *s, double *bias, double *far) {
  const char *comma = strchr(s, ',');
  *far = 0;
  if (!comma) return pyprof_parse_seconds(s, bias);
  char first[64];
  size_t n = (size_t)(comma - s);
  if (n >= sizeof first) return -1;
  memcpy(first, s, n);
  first[n] = '\0';
  return pyprof_parse_seconds(first, bias) < 0 ||
                 pyprof_parse_seconds(comma + 1, far) < 0
             ? -1
             : 0;
}

int pyprof_template_check(const char *tmpl) {
  if (!*tmpl) return -1;
  for (const char *p = tmpl; *p; p++) {
    if (*p != '%') continue;
    p++;
    if (*p != 'p' && *p != 'n' && *p != 't' && *p != '%') return -1;
  }
  return 0;
}

int pyprof_template_has_pid(const char *tmpl) {
  for (const char *p = tmpl; *p; p++)
    if (*p == '%' && *++p == 'p') return 1;
    else if (!*p) break;
  return 0;
}

/* Copies `s` into `buf` at *pos with every % doubled, so that a directory
 * name is never read as a template. Returns 0 or -1 if it does not fit. */
static int put_escaped(const char *s, char *buf, size_t len, size_t *pos) {
  for (; *s; s++) {
    if (*pos + 2 >= len) return -1;
    if (*s == '%') buf[(*pos)++] = '%';
    buf[(*pos)++] = *s;
  }
  buf[*pos] = '\0';
  return 0;
}

/* Appends the decimal digits of `v` at *pos. Async-signal-safe. */
static int put_num(unsigned long v, char *buf, size_t len, size_t *pos) {
  char tmp[24];
  int n = 0;
  do tmp[n++] = (char)('0' + v % 10); while ((v /= 10) && n < 24);
  while (n) {
    if (*pos + 1 >= len) return -1;
    buf[(*pos)++] = tmp[--n];
  }
  return 0;
}

/* Async-signal-safe. */
int pyprof_template_expand(const char *tmpl, long pid, unsigned long n,
                           long unix_time, char *buf, size_t len) {
  size_t pos = 0;
  for (const char *p = tmpl; *p; p++) {
    int rc = 0;
    if (*p == '%' && p[1]) {
      p++;
      if (*p == 'p') rc = put_num((unsigned long)pid, buf, len, &pos);
      else if (*p == 'n') rc = put_num(n, buf, len, &pos);
      else if (*p == 't') rc = put_num((unsigned long)unix_time, buf, len, &pos);
      else if (pos + 1 < len) buf[pos++] = *p;
      else rc = -1;
    } else if (pos + 1 < len) {
      buf[pos++] = *p;
    } else {
      rc = -1;
    }
    if (rc < 0) return -1;
  }
  if (pos >= len) return -1;
  buf[pos] = '\0';
  return 0;
}

static int is_known(const char *name, size_t n) {
  for (int i = 0; known[i]; i++)
    if (strlen(known[i]) == n && strncmp(known[i], name, n) == 0) return 1;
  return 0;
}

int pyprof_config_load(pyprof_config *c, const char *(*get)(const char *),
                       char *const *names, const char *cwd, char *err,
                       size_t errlen) {
  const char *v;
  memset(c, 0, sizeof *c);
  c->timer = PYPROF_TIMER_WALL;
  c->snap_signal = SIGUSR2;
  c->children = 1;
  c->paths = 1;
  c->crash = 1;
  for (; names && *names; names++) {
    const char *eq = strchr(*names, '=');
    size_t n = eq ? (size_t)(eq - *names) : strlen(*names);
    if (n >= 7 && strncmp(*names, "PYPROF_", 7) == 0 && !is_known(*names, n)) {
      snprintf(err, errlen,
               "unknown variable %.*s (see the README for PYPROF_* settings)",
               (int)n, *names);
      return -1;
    }
  }
  if ((v = get("PYPROF_QUIET")) && pyprof_parse_bool(v, &c->quiet) < 0) {
    snprintf(err, errlen, "invalid PYPROF_QUIET='%s' (expected 0 or 1)", v);
    return -1;
  }
  if ((v = get("PYPROF_TIMER")) && pyprof_timer_parse(v, &c->timer) < 0) {
    snprintf(err, errlen,
             "invalid PYPROF_TIMER='%s' (expected wall|cpu|process|monotonic)",
             v);
    return -1;
  }
  if ((v = get("PYPROF_BIAS"))) {
    if (strcmp(v, "auto") == 0) c->bias_auto = 1;
    else if (parse_bias(v, &c->bias, &c->bias_far) < 0) {
      snprintf(err, errlen,
               "invalid PYPROF_BIAS='%s' (expected seconds per event, e.g. "
               "2.5e-8, optionally ,seconds more per far event, e.g. "
               "2.5e-8,1.1e-8; or auto)", v);
      return -1;
    }
  }
  if ((v = get("PYPROF_SIGNAL")) && pyprof_parse_signal(v, &c->snap_signal) < 0) {
    snprintf(err, errlen,
             "invalid PYPROF_SIGNAL='%s' (a signal such as USR2, USR1, "
             "RTMIN+3, a number, or off)", v);
    return -1;
  }
  if ((v = get("PYPROF_TOGGLE_SIGNAL")) &&
      pyprof_parse_signal(v, &c->toggle_signal) < 0) {
    snprintf(err, errlen,
             "invalid PYPROF_TOGGLE_SIGNAL='%s' (a signal such as USR1, "
             "RTMIN+3, a number, or off)", v);
    return -1;
  }
  if (c->toggle_signal && c->toggle_signal == c->snap_signal) {
    snprintf(err, errlen,
             "PYPROF_TOGGLE_SIGNAL and PYPROF_SIGNAL are the same signal");
    return -1;
  }
  if ((v = get("PYPROF_START"))) {
    if (strcmp(v, "paused") == 0) c->start_paused = 1;
    else if (strcmp(v, "running") != 0) {
      snprintf(err, errlen, "invalid PYPROF_START='%s' (expected running or "
               "paused)", v);
      return -1;
    }
  }
  if (c->start_paused && !c->toggle_signal) {
    snprintf(err, errlen, "PYPROF_START=paused needs PYPROF_TOGGLE_SIGNAL to "
             "resume");
    return -1;
  }
  if ((v = get("PYPROF_CHILDREN")) && pyprof_parse_bool(v, &c->children) < 0) {
    snprintf(err, errlen, "invalid PYPROF_CHILDREN='%s' (expected 0 or 1)", v);
    return -1;
  }
  if ((v = get("PYPROF_ROOT_PID")) && (c->root_pid = whole(v)) <= 0) {
    snprintf(err, errlen, "invalid PYPROF_ROOT_PID='%s' (set by libpyprof "
             "for child processes: a pid)", v);
    return -1;
  }
  if ((v = get("PYPROF_PATHS")) && pyprof_parse_bool(v, &c->paths) < 0) {
    snprintf(err, errlen, "invalid PYPROF_PATHS='%s' (expected 0 or 1)", v);
    return -1;
  }
  if ((v = get("PYPROF_FSYNC")) && pyprof_parse_bool(v, &c->fsync) < 0) {
    snprintf(err, errlen, "invalid PYPROF_FSYNC='%s' (expected 0 or 1)", v);
    return -1;
  }
  if ((v = get("PYPROF_CRASH")) && pyprof_parse_bool(v, &c->crash) < 0) {
    snprintf(err, errlen, "invalid PYPROF_CRASH='%s' (expected 0 or 1)", v);
    return -1;
  }
  if ((v = get("PYPROF_HOOK"))) {
    static const char *const hooks[] = {"auto", "legacy", "monitoring", "eval"};
    c->hook = -1;
    for (int i = 0; i < 4; i++)
      if (strcmp(v, hooks[i]) == 0) c->hook = i;
    if (c->hook < 0) {
      snprintf(err, errlen, "invalid PYPROF_HOOK='%s' (expected auto, legacy, "
               "monitoring or eval)", v);
      return -1;
    }
  }
  v = get("PYPROF_OUT");
  if (!v) v = "pyprof.%p.prof";
  if (pyprof_template_check(v) < 0) {
    snprintf(err, errlen,
             "invalid PYPROF_OUT='%s' (a path; %%p pid, %%n dump number, %%t "
             "unix time, %%%% percent)", v);
    return -1;
  }
  size_t pos = 0;
  int rc = v[0] == '/' ? 0 : put_escaped(cwd, c->out, sizeof c->out, &pos);
  if (rc == 0 && v[0] != '/') rc = put_escaped("/", c->out, sizeof c->out, &pos);
  int w = rc < 0 ? -1 : snprintf(c->out + pos, sizeof c->out - pos, "%s", v);
  if (w < 0 || pos + (size_t)w >= sizeof c->out) {
    snprintf(err, errlen, "invalid PYPROF_OUT: path too long");
    return -1;
  }
  return 0;
}

/*
 * marshal.c -- a writer for the subset of CPython's marshal format that a
 * pstats file needs (see marshal.h).
 *
 * Format facts used here (readable by marshal.loads of Python 3.4 and
 * later; reference flags only where the caller asks for them):
 *   '{' key value ... '0'        dict, closed by TYPE_NULL
 *   ')' u8 n  items              tuple with n < 256 (format version 4)
 *   '(' i32 n items              any tuple
 *   'z' u8 n bytes               str of n < 256 ASCII bytes (version 4)
 *   'u' i32 n bytes              other str, n bytes of UTF-8 ("surrogatepass")
 *   type | 0x80                  the reader remembers the object, in order
 *   'r' i32 k                    the k-th remembered object again
 *   'i' i32                      int that fits in 32 bits
 *   'l' i32 n, |n| x u16 digits  other ints: 15-bit digits, least
 *                                significant first, sign of n = sign
 *   'g' f64                      float, IEEE 754 binary64
 *   'N'                          None
 * All multi-byte integers are little-endian.
 */
#include "marshal.h"
#include "hugemap.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* Type codes, as CPython's Python/marshal.c names them. */
enum {
  M_NULL = '0',
  M_NONE = 'N',
  M_INT = 'i',
  M_LONG = 'l',
  M_BINARY_FLOAT = 'g',
  M_UNICODE = 'u',
  M_SHORT_ASCII = 'z',
  M_TUPLE = '(',
  M_LIST = '[',
  M_REF = 'r',
  M_FLAG_REF = 0x80,
  M_SMALL_TUPLE = ')',
  M_DICT = '{',
};

#define M_LONG_SHIFT 15     /* bits per digit of a marshalled long */
#define M_LONG_MASK 0x7fff

/* Prepares an empty buffer (no allocation until the first write). */
void pyprof_buf_init(pyprof_buf *b) {
  b->data = NULL;
  b->len = 0;
  b->cap = 0;
  b->oom = 0;
  b->mapped = 0;
}

/* Releases the buffer's memory and leaves it empty and usable. */
void pyprof_buf_free(pyprof_buf *b) {
  if (b->mapped) munmap(b->data, b->cap);
  else free(b->data);
  pyprof_buf_init(b);
}

/* Large buffers are mapped directly (hugemap.h): a dump of 100k functions
 * writes ~15 MB into a fresh buffer. */
#define BUF_MAP_MIN ((size_t)4 << 20)

/* Grows the buffer to at least `cap` bytes, keeping its contents. */
static int buf_grow(pyprof_buf *b, size_t cap) {
  if (cap >= BUF_MAP_MIN) {
    size_t n = pyprof_huge_round(cap);
    if (b->mapped) { /* in place if the address space after it is free */
      void *q = mremap(b->data, b->cap, n, 0);
      if (q != MAP_FAILED) {
        b->cap = n;
        return 0;
      }
    }
    unsigned char *p = pyprof_huge_map(cap, &n);
    if (p) {
      if (b->len) memcpy(p, b->data, b->len);
      if (b->mapped) munmap(b->data, b->cap);
      else free(b->data);
      b->data = p;
      b->cap = n;
      b->mapped = 1;
      return 0;
    }
    if (b->mapped) return -1;
  }
  unsigned char *p = realloc(b->data, cap);
  if (!p) return -1;
  b->data = p;
  b->cap = cap;
  return 0;
}

/* Makes room for `n` more bytes. Returns 0, or -1 (and sets the sticky
 * flag) when that fails or the buffer is already failed. */
static int buf_reserve(pyprof_buf *b, size_t n) {
  if (b->oom) return -1;
  if (n <= b->cap - b->len) return 0;
  if (n > SIZE_MAX / 4 - b->len) goto fail;
  size_t cap = b->cap ? b->cap : 256;
  while (cap - b->len < n) cap *= 2;
  if (buf_grow(b, cap) < 0) goto fail;
  return 0;
fail:
  b->oom = 1;
  return -1;
}

void pyprof_buf_reserve(pyprof_buf *b, size_t n) { buf_reserve(b, n); }

/* Where the next `n` bytes go, or NULL once the buffer has failed. The
 * caller writes exactly `n` bytes there and calls buf_commit(). One check
 * per object rather than one per byte. */
static inline unsigned char *buf_room(pyprof_buf *b, size_t n) {
  if (__builtin_expect(!b->oom && n <= b->cap - b->len, 1))
    return b->data + b->len;
  return buf_reserve(b, n) == 0 ? b->data + b->len : NULL;
}

static inline void buf_commit(pyprof_buf *b, size_t n) { b->len += n; }

static inline void put_u32(unsigned char *p, uint32_t v) {
  p[0] = (unsigned char)v;
  p[1] = (unsigned char)(v >> 8);
  p[2] = (unsigned char)(v >> 16);
  p[3] = (unsigned char)(v >> 24);
}

/* Appends `n` raw bytes. */
static void buf_put(pyprof_buf *b, const void *p, size_t n) {
  unsigned char *d = buf_room(b, n);
  if (!d) return;
  if (n) memcpy(d, p, n);
  buf_commit(b, n);
}

/* Appends one byte. */
static void buf_byte(pyprof_buf *b, unsigned char c) {
  unsigned char *d = buf_room(b, 1);
  if (!d) return;
  *d = c;
  buf_commit(b, 1);
}

/* Appends a type code and a 32-bit count (marshal's signed 32-bit field;
 * a count that does not fit cannot be marshalled at all, which fails the
 * buffer). */
static void buf_code_len32(pyprof_buf *b, unsigned char code, size_t n) {
  if (n > INT32_MAX) {
    b->oom = 1;
    return;
  }
  unsigned char *d = buf_room(b, 5);
  if (!d) return;
  d[0] = code;
  put_u32(d + 1, (uint32_t)n);
  buf_commit(b, 5);
}

/* Appends a type code and a u8 count. */
static void buf_code_u8(pyprof_buf *b, unsigned char code, unsigned char n) {
  unsigned char *d = buf_room(b, 2);
  if (!d) return;
  d[0] = code;
  d[1] = n;
  buf_commit(b, 2);
}

/* Starts a dict: write key, value pairs, then pyprof_m_dict_end(). */
void pyprof_m_dict_begin(pyprof_buf *b) { buf_byte(b, M_DICT); }

/* Ends a dict. */
void pyprof_m_dict_end(pyprof_buf *b) { buf_byte(b, M_NULL); }

/* A tuple header, flagged for back-references or not. */
static void tuple_head(pyprof_buf *b, uint32_t n, unsigned char flag) {
  if (n < 256) buf_code_u8(b, M_SMALL_TUPLE | flag, (unsigned char)n);
  else buf_code_len32(b, M_TUPLE | flag, n);
}

/* Starts a tuple of `n` items; the caller writes exactly `n` objects. */
void pyprof_m_tuple(pyprof_buf *b, uint32_t n) { tuple_head(b, n, 0); }

/* A tuple header flagged for back-references: the reader remembers the
 * tuple, and pyprof_m_ref() can name it again. */
void pyprof_m_tuple_ref(pyprof_buf *b, uint32_t n) {
  tuple_head(b, n, M_FLAG_REF);
}

/* The object flagged `idx`-th (0-based) within the same marshal object. */
void pyprof_m_ref(pyprof_buf *b, uint32_t idx) {
  buf_code_len32(b, M_REF, idx);
}

/* A list header: then `n` items. */
void pyprof_m_list(pyprof_buf *b, uint32_t n) {
  buf_code_len32(b, M_LIST, n);
}

/* ---- strings ------------------------------------------------------------ */

/* Length of the well-formed UTF-8 sequence at s[0..n), or 0 if there is
 * none. Well-formed means what Python's UTF-8 decoder with the
 * "surrogatepass" handler accepts (marshal.loads decodes that way): no
 * overlong forms, nothing above U+10FFFF, but encoded surrogates
 * (ED A0..BF xx) are allowed. */
static size_t utf8_seq_len(const unsigned char *s, size_t n) {
  unsigned char c = s[0];
  size_t len;
  unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the 2nd byte */
  if (c < 0x80) return 1;
  if (c < 0xC2) return 0;
  if (c < 0xE0) len = 2;
  else if (c < 0xF0) {
    len = 3;
    if (c == 0xE0) lo = 0xA0;
  } else if (c < 0xF5) {
    len = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else return 0;
  if (n < len || s[1] < lo || s[1] > hi) return 0;
  for (size_t i = 2; i < len; i++)
    if ((s[i] & 0xC0) != 0x80) return 0;
  return len;
}

/* Number of bytes `s` takes once each byte that is not part of a
 * well-formed sequence is replaced by a 3-byte escape (see str_escaped). */
static size_t utf8_fixed_len(const unsigned char *s, size_t n) {
  size_t out = 0;
  for (size_t i = 0; i < n;) {
    size_t k = utf8_seq_len(s + i, n - i);
    out += k ? k : 3;
    i += k ? k : 1;
  }
  return out;
}

/* Copies `s` to the buffer, replacing each stray byte B (>= 0x80) by the
 * UTF-8 ("surrogatepass") encoding of U+DC00+B. That is how Python's
 * "surrogateescape" represents undecodable bytes, so a file name that is
 * not UTF-8 loads as the same str os.fsdecode() would give, and one bad
 * name never makes the whole file unreadable. */
static void str_escaped(pyprof_buf *b, const unsigned char *s, size_t n) {
  for (size_t i = 0; i < n;) {
    size_t k = utf8_seq_len(s + i, n - i);
    if (k) {
      buf_put(b, s + i, k);
      i += k;
      continue;
    }
    unsigned cp = 0xDC00u + s[i++];
    unsigned char esc[3] = {(unsigned char)(0xE0 | (cp >> 12)),
                            (unsigned char)(0x80 | ((cp >> 6) & 0x3F)),
                            (unsigned char)(0x80 | (cp & 0x3F))};
    buf_put(b, esc, sizeof esc);
  }
}

/* Length of the ASCII prefix of s[0..n). */
static size_t ascii_prefix(const unsigned char *s, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    memcpy(&w, s + i, sizeof w);
    if (w & 0x8080808080808080ull) break;
  }
  while (i < n && s[i] < 0x80) i++;
  return i;
}

/* A str, flagged for back-references when `flag` is M_FLAG_REF. */
static void str_put(pyprof_buf *b, const char *s, size_t n,
                    unsigned char flag) {
  const unsigned char *u = (const unsigned char *)s;
  size_t ascii = ascii_prefix(u, n);
  if (ascii == n && n < 256) { /* the common case: one short ASCII str */
    unsigned char *d = buf_room(b, 2 + n);
    if (!d) return;
    d[0] = M_SHORT_ASCII | flag;
    d[1] = (unsigned char)n;
    if (n) memcpy(d + 2, u, n);
    buf_commit(b, 2 + n);
    return;
  }
  size_t out = ascii + utf8_fixed_len(u + ascii, n - ascii);
  buf_code_len32(b, M_UNICODE | flag, out);
  if (out == n) buf_put(b, u, n);
  else str_escaped(b, u, n);
}

/* Writes a str from `n` bytes of UTF-8 (embedded NULs are allowed).
 * Invalid UTF-8 is escaped as described at str_escaped(). */
void pyprof_m_str(pyprof_buf *b, const char *s, size_t n) {
  str_put(b, s, n, 0);
}

/* The same, flagged for back-references (see pyprof_m_tuple_ref). */
void pyprof_m_str_ref(pyprof_buf *b, const char *s, size_t n) {
  str_put(b, s, n, M_FLAG_REF);
}

/* ---- numbers ------------------------------------------------------------ */

/* Writes an int: 'i' when it fits in 32 bits (as CPython does), else a
 * marshalled long of 15-bit digits. */
void pyprof_m_int(pyprof_buf *b, int64_t v) {
  if (v >= INT32_MIN && v <= INT32_MAX) {
    unsigned char *d = buf_room(b, 5);
    if (!d) return;
    d[0] = M_INT;
    put_u32(d + 1, (uint32_t)(int32_t)v);
    buf_commit(b, 5);
    return;
  }
  uint64_t mag = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
  unsigned char digits[2 * 5]; /* 64 bits need at most 5 digits */
  int32_t nd = 0;
  while (mag) {
    unsigned d = (unsigned)(mag & M_LONG_MASK);
    digits[2 * nd] = (unsigned char)d;
    digits[2 * nd + 1] = (unsigned char)(d >> 8);
    nd++;
    mag >>= M_LONG_SHIFT;
  }
  unsigned char *d = buf_room(b, 5 + 2 * (size_t)nd);
  if (!d) return;
  d[0] = M_LONG;
  put_u32(d + 1, (uint32_t)(v < 0 ? -nd : nd));
  memcpy(d + 5, digits, 2 * (size_t)nd);
  buf_commit(b, 5 + 2 * (size_t)nd);
}

/* Writes a float as 8 bytes of IEEE 754 binary64, little-endian. */
void pyprof_m_float(pyprof_buf *b, double v) {
  uint64_t bits;
  _Static_assert(sizeof bits == sizeof v, "double must be 64 bits");
  memcpy(&bits, &v, sizeof bits);
  unsigned char *d = buf_room(b, 9);
  if (!d) return;
  d[0] = M_BINARY_FLOAT;
  put_u32(d + 1, (uint32_t)bits);
  put_u32(d + 5, (uint32_t)(bits >> 32));
  buf_commit(b, 9);
}

/* Writes None. */
void pyprof_m_none(pyprof_buf *b) { buf_byte(b, M_NONE); }

/*
 * test-marshal.c -- the marshal writer produces the bytes CPython does.
 *
 * Unless a test says otherwise, each expected byte string was obtained
 * while writing the test with
 *   /usr/bin/python3.11 -c "import marshal; print(marshal.dumps(X, 2).hex())"
 * Format version 2 never emits reference flags or short-ASCII strings;
 * where the writer uses those (version 4 forms), the test says how the
 * expected bytes were checked.
 */
#include "marshal.h"
#include "test.h"

/* Compares the buffer with the expected bytes, printing both on mismatch. */
static int expect_bytes(const pyprof_buf *b, const char *what,
                        const unsigned char *want, size_t n) {
  if (!b->oom && b->len == n && memcmp(b->data, want, n) == 0) return 0;
  fprintf(stderr, "%s: got %s", what, b->oom ? "(oom) " : "");
  for (size_t i = 0; i < b->len; i++) fprintf(stderr, "%02x", b->data[i]);
  fprintf(stderr, "\n%*s  want ", (int)strlen(what), "");
  for (size_t i = 0; i < n; i++) fprintf(stderr, "%02x", want[i]);
  fputc('\n', stderr);
  return -1;
}

#define EXPECT_BYTES(b, what, ...)                                        \
  do {                                                                    \
    static const unsigned char want_[] = {__VA_ARGS__};                   \
    if (expect_bytes((b), (what), want_, sizeof want_) != 0)              \
      FAILF("byte mismatch for %s", (what));                              \
  } while (0)

/* Encodes one int into a fresh buffer and checks it. */
#define CHECK_INT(v, ...)                                                 \
  do {                                                                    \
    pyprof_buf b_;                                                        \
    pyprof_buf_init(&b_);                                                 \
    pyprof_m_int(&b_, (v));                                               \
    int r_ = expect_bytes(&b_, #v, (const unsigned char[]){__VA_ARGS__},  \
                          sizeof((const unsigned char[]){__VA_ARGS__}));  \
    pyprof_buf_free(&b_);                                                 \
    if (r_ != 0) FAILF("byte mismatch for int %s", #v);                   \
  } while (0)

TEST_IMPL(ints) {
  CHECK_INT(0, 0x69, 0x00, 0x00, 0x00, 0x00);
  CHECK_INT(-1, 0x69, 0xff, 0xff, 0xff, 0xff);
  CHECK_INT(INT64_C(2147483647), 0x69, 0xff, 0xff, 0xff, 0x7f);  /* 2**31-1 */
  CHECK_INT(-INT64_C(2147483648), 0x69, 0x00, 0x00, 0x00, 0x80); /* -2**31 */
  /* 2**31: 'l', 3 digits 0, 0, 2 */
  CHECK_INT(INT64_C(2147483648), 0x6c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x02, 0x00);
  /* -2**31-1: 'l', -3 digits 1, 0, 2 */
  CHECK_INT(-INT64_C(2147483649), 0x6c, 0xfd, 0xff, 0xff, 0xff, 0x01, 0x00,
            0x00, 0x00, 0x02, 0x00);
  /* 2**62 and -(2**62): 5 digits, top digit 4 */
  CHECK_INT(INT64_C(4611686018427387904), 0x6c, 0x05, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00);
  CHECK_INT(-INT64_C(4611686018427387904), 0x6c, 0xfb, 0xff, 0xff, 0xff,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00);
  /* 2**63-1 and -(2**63): the extremes of int64 */
  CHECK_INT(INT64_MAX, 0x6c, 0x05, 0x00, 0x00, 0x00, 0xff, 0x7f, 0xff, 0x7f,
            0xff, 0x7f, 0xff, 0x7f, 0x07, 0x00);
  CHECK_INT(INT64_MIN, 0x6c, 0xfb, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x08, 0x00);
  return TEST_OK;
}

TEST_IMPL(floats_and_none) {
  pyprof_buf b;
  pyprof_buf_init(&b);
  pyprof_m_float(&b, 0.5);
  EXPECT_BYTES(&b, "0.5", 0x67, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xe0,
               0x3f);
  b.len = 0;
  pyprof_m_float(&b, -1e-300);
  EXPECT_BYTES(&b, "-1e-300", 0x67, 0x59, 0xf3, 0xf8, 0xc2, 0x1f, 0x6e, 0xa5,
               0x81);
  b.len = 0;
  pyprof_m_none(&b);
  EXPECT_BYTES(&b, "None", 0x4e);
  pyprof_buf_free(&b);
  return TEST_OK;
}

/* A str of fewer than 256 ASCII bytes takes the version-4 short form
 * 'z' + u8 length: marshal.dumps('ab', 4) is da026162, the same with the
 * interned and reference flags ('Z' | 0x80); ours, 7a026162, was checked
 * with marshal.loads() == 'ab' in Python 3.8 and 3.11 (and 'a\0b' too).
 * Other strs are 'u' + i32 length, as marshal.dumps(x, 2) writes them. */
TEST_IMPL(strings) {
  pyprof_buf b;
  pyprof_buf_init(&b);
  pyprof_m_str(&b, "ab", 2);
  EXPECT_BYTES(&b, "'ab'", 0x7a, 0x02, 0x61, 0x62);
  b.len = 0;
  pyprof_m_str(&b, "", 0);
  EXPECT_BYTES(&b, "''", 0x7a, 0x00);
  b.len = 0;
  /* 'h\u00e9llo \u20ac \U0001f600': 2-, 3- and 4-byte UTF-8 sequences */
  const char *s = "h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80";
  pyprof_m_str(&b, s, strlen(s));
  EXPECT_BYTES(&b, "non-ASCII", 0x75, 0x0f, 0x00, 0x00, 0x00, 0x68, 0xc3,
               0xa9, 0x6c, 0x6c, 0x6f, 0x20, 0xe2, 0x82, 0xac, 0x20, 0xf0,
               0x9f, 0x98, 0x80);
  b.len = 0;
  /* Embedded NUL is data, not a terminator. */
  pyprof_m_str(&b, "a\0b", 3);
  EXPECT_BYTES(&b, "'a\\0b'", 0x7a, 0x03, 0x61, 0x00, 0x62);
  b.len = 0;
  /* 256 ASCII bytes: too long for the short form. */
  char longs[256];
  memset(longs, 'x', sizeof longs);
  pyprof_m_str(&b, longs, sizeof longs);
  ASSERT_EQ_U(b.len, 5 + sizeof longs);
  ASSERT_EQ_U(b.data[0], 'u');
  ASSERT_EQ_U(b.data[1] | b.data[2] << 8, 256);
  ASSERT_EQ_U(b.data[5], 'x');
  b.len = 0;
  /* 255 ASCII bytes, with a non-ASCII byte past the first 8 checked at once. */
  pyprof_m_str(&b, longs, 255);
  ASSERT_EQ_U(b.len, 2 + 255);
  ASSERT_EQ_U(b.data[0], 'z');
  b.len = 0;
  pyprof_m_str(&b, "abcdefghij\xc3\xa9", 12);
  EXPECT_BYTES(&b, "ASCII then non-ASCII", 0x75, 0x0c, 0x00, 0x00, 0x00,
               0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a,
               0xc3, 0xa9);
  pyprof_buf_free(&b);
  return TEST_OK;
}

/* ('a/b', 'a/b') with the str written once and named again:
 * marshal.loads(bytes.fromhex('2902fa03612f627200000000')) == ('a/b',
 * 'a/b') in Python 3.8 and 3.11; non-ASCII strs take 'u' | 0x80. */
TEST_IMPL(string_refs) {
  pyprof_buf b;
  pyprof_buf_init(&b);
  pyprof_m_tuple(&b, 2);
  pyprof_m_str_ref(&b, "a/b", 3);
  pyprof_m_ref(&b, 0);
  EXPECT_BYTES(&b, "('a/b', 'a/b')", 0x29, 0x02, 0xfa, 0x03, 0x61, 0x2f, 0x62,
               0x72, 0x00, 0x00, 0x00, 0x00);
  b.len = 0;
  pyprof_m_str_ref(&b, "\xc3\xa9", 2);
  EXPECT_BYTES(&b, "'\\u00e9' remembered", 0xf5, 0x02, 0x00, 0x00, 0x00, 0xc3,
               0xa9);
  pyprof_buf_free(&b);
  return TEST_OK;
}

/* Bytes that are not UTF-8 come out as Python's "surrogateescape" would
 * decode them (each stray byte B becomes U+DC00+B), while well-formed
 * sequences, encoded surrogates included, pass through unchanged. Expected
 * bytes from Python 3.8, 3.11 and 3.13 alike:
 *   marshal.dumps('a\udcffb\ud800c', 2)
 *   marshal.dumps(b'a\xffb\xc0\xafc\xe2\x82'.decode('utf-8',
 *                 'surrogateescape'), 2) */
TEST_IMPL(invalid_utf8_is_escaped) {
  pyprof_buf b;
  pyprof_buf_init(&b);
  /* 0xff is stray; ED A0 80 is '\ud800', which marshal accepts. */
  pyprof_m_str(&b, "a\xff" "b\xed\xa0\x80" "c", 7);
  EXPECT_BYTES(&b, "mixed", 0x75, 0x09, 0x00, 0x00, 0x00, 0x61, 0xed, 0xb3,
               0xbf, 0x62, 0xed, 0xa0, 0x80, 0x63);
  b.len = 0;
  /* A stray byte, an overlong '/', a truncated 3-byte sequence. */
  pyprof_m_str(&b, "a\xff" "b\xc0\xaf" "c\xe2\x82", 8);
  EXPECT_BYTES(&b, "escaped", 0x75, 0x12, 0x00, 0x00, 0x00, 0x61, 0xed,
               0xb3, 0xbf, 0x62, 0xed, 0xb3, 0x80, 0xed, 0xb2, 0xaf, 0x63,
               0xed, 0xb3, 0xa2, 0xed, 0xb2, 0x82);
  pyprof_buf_free(&b);
  return TEST_OK;
}

/* {'k': 'v'} and {} */
TEST_IMPL(dicts) {
  pyprof_buf b;
  pyprof_buf_init(&b);
  pyprof_m_dict_begin(&b);
  pyprof_m_str(&b, "k", 1);
  pyprof_m_str(&b, "v", 1);
  pyprof_m_dict_end(&b);
  EXPECT_BYTES(&b, "{'k': 'v'}", 0x7b, 0x7a, 0x01, 0x6b, 0x7a, 0x01, 0x76,
               0x30);
  b.len = 0;
  pyprof_m_dict_begin(&b);
  pyprof_m_dict_end(&b);
  EXPECT_BYTES(&b, "{}", 0x7b, 0x30);
  pyprof_buf_free(&b);
  return TEST_OK;
}

/* A tuple of fewer than 256 items uses the version-4 small form ')' + u8
 * count, which marshal.dumps(x, 2) does not emit; the layout is from the
 * format and was checked with marshal.loads(bytes.fromhex(
 * '290269010000006902000000')) == (1, 2) in Python 3.8 and 3.11. */
TEST_IMPL(small_tuple) {
  pyprof_buf b;
  pyprof_buf_init(&b);
  pyprof_m_tuple(&b, 2);
  pyprof_m_int(&b, 1);
  pyprof_m_int(&b, 2);
  EXPECT_BYTES(&b, "(1, 2)", 0x29, 0x02, 0x69, 0x01, 0x00, 0x00, 0x00, 0x69,
               0x02, 0x00, 0x00, 0x00);
  b.len = 0;
  pyprof_m_tuple(&b, 255);
  EXPECT_BYTES(&b, "255-tuple header", 0x29, 0xff);
  pyprof_buf_free(&b);
  return TEST_OK;
}

/* tuple(range(300)): marshal.dumps(t, 2) starts with
 * 282c0100006900000000690100000069 and is 1505 bytes long (5 per item). */
TEST_IMPL(big_tuple) {
  static const unsigned char head[] = {0x28, 0x2c, 0x01, 0x00, 0x00, 0x69,
                                       0x00, 0x00, 0x00, 0x00, 0x69, 0x01,
                                       0x00, 0x00, 0x00, 0x69};
  pyprof_buf b;
  pyprof_buf_init(&b);
  pyprof_m_tuple(&b, 300);
  for (int i = 0; i < 300; i++) pyprof_m_int(&b, i);
  ASSERT(!b.oom);
  ASSERT_EQ_U(b.len, 1505);
  ASSERT(memcmp(b.data, head, sizeof head) == 0);
  for (int i = 0; i < 300; i++) {
    const unsigned char *p = b.data + 5 + 5 * i;
    ASSERT_EQ_U(p[0], 'i');
    ASSERT_EQ_I(p[1] | p[2] << 8, i);
    ASSERT_EQ_U(p[3] | p[4], 0);
  }
  b.len = 0;
  pyprof_m_tuple(&b, 256);
  EXPECT_BYTES(&b, "256-tuple header", 0x28, 0x00, 0x01, 0x00, 0x00);
  pyprof_buf_free(&b);
  return TEST_OK;
}

/* The buffer grows across many reallocations and keeps every byte. */
TEST_IMPL(growth) {
  pyprof_buf b;
  pyprof_buf_init(&b);
  for (int i = 0; i < 100000; i++) pyprof_m_int(&b, i);
  ASSERT(!b.oom);
  ASSERT_EQ_U(b.len, 500000);
  ASSERT(b.cap >= b.len);
  ASSERT_EQ_U(b.data[5 * 99999], 'i');
  ASSERT_EQ_I(b.data[5 * 99999 + 1] | b.data[5 * 99999 + 2] << 8 |
                  b.data[5 * 99999 + 3] << 16,
              99999);
  pyprof_buf_free(&b);
  ASSERT(b.data == NULL && b.len == 0 && b.cap == 0 && !b.oom);
  return TEST_OK;
}

/* A buffer past 4 MiB is mapped (2 MiB-aligned, for huge pages) and keeps
 * every byte while it grows, whether in place or by moving. */
TEST_IMPL(big_buffer) {
  pyprof_buf b;
  pyprof_buf_init(&b);
  pyprof_buf_reserve(&b, 1000);
  for (int i = 0; i < 100000; i++) pyprof_m_int(&b, i);
  ASSERT(!b.mapped);
  for (int i = 100000; i < 3000000; i++) pyprof_m_int(&b, i); /* 15 MB */
  ASSERT(!b.oom);
  ASSERT(b.mapped);
  ASSERT_EQ_U((uintptr_t)b.data % (2u << 20), 0);
  ASSERT_EQ_U(b.len, 15000000);
  for (int i = 0; i < 3000000; i += 9973) {
    const unsigned char *p = b.data + 5 * (size_t)i;
    ASSERT_EQ_U(p[0], 'i');
    ASSERT_EQ_I(p[1] | p[2] << 8 | p[3] << 16, i);
  }
  pyprof_buf_free(&b);
  ASSERT(b.data == NULL && b.cap == 0 && !b.mapped);
  pyprof_buf_reserve(&b, 9u << 20); /* mapped at once */
  ASSERT(b.mapped && b.cap >= (9u << 20));
  pyprof_m_none(&b);
  ASSERT_EQ_U(b.data[0], 'N');
  pyprof_buf_free(&b);
  return TEST_OK;
}

/* Once failed, a buffer stays failed and writes nothing more. */
TEST_IMPL(oom_is_sticky) {
  pyprof_buf b;
  pyprof_buf_init(&b);
  pyprof_m_none(&b);
  b.oom = 1;
  pyprof_m_int(&b, 1);
  pyprof_m_str(&b, "abc", 3);
  pyprof_m_tuple(&b, 300);
  pyprof_m_dict_begin(&b);
  pyprof_m_float(&b, 1.0);
  ASSERT_EQ_U(b.len, 1);
  ASSERT(b.oom);
  pyprof_buf_free(&b);
  ASSERT(!b.oom);
  return TEST_OK;
}

TEST_MAIN(TEST_ENTRY(ints) TEST_ENTRY(floats_and_none) TEST_ENTRY(strings)
              TEST_ENTRY(string_refs)
              TEST_ENTRY(invalid_utf8_is_escaped) TEST_ENTRY(dicts)
                  TEST_ENTRY(small_tuple) TEST_ENTRY(big_tuple)
                      TEST_ENTRY(growth) TEST_ENTRY(big_buffer)
                          TEST_ENTRY(oom_is_sticky))

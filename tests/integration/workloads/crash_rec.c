/* Native stack overflow for crash_overflow.py; built -O0 -shared -fPIC. */
int recurse(int n) {
  volatile char buf[256];
  buf[0] = (char)n;
  return recurse(n + 1) + buf[0];
}

/* A C program that embeds CPython, for the `embed` integration scenario.
 *
 * It never emits a cpython.run_* audit event (no run_file/run_command), so
 * libpyprof has to start profiling through its fallback for embedded
 * interpreters.  run.py expects ('<string>', 1, 'f') with exactly 100 calls.
 * Built at test time against the interpreter under test:
 *   cc embed.c $(python3.X-config --cflags) $(python3.X-config --ldflags --embed)
 */
#include <Python.h>

static const char script[] =
    "def f(x):\n"
    "    return x + 1\n"
    "\n"
    "total = 0\n"
    "for i in range(100):\n"
    "    total += f(i)\n"
    "print('embed total', total)\n";

int main(void)
{
    Py_Initialize();
    if (PyRun_SimpleString(script) != 0)
        return 2;
    if (Py_FinalizeEx() != 0)
        return 3;
    return 0;
}

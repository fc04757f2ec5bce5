/* Threads created in C that call into Python, for the `threads` scenario.
 *
 * run_in_c_thread(callable, n) starts a pthread that takes the GIL with
 * PyGILState_Ensure (creating a brand-new thread state, with no audit event),
 * calls callable() n times, releases the GIL and ends; the caller waits for
 * it.  Loaded with ctypes.CDLL, which releases the GIL around the call.
 * Compiled against the headers of the interpreter under test and not linked
 * with libpython: the Py* symbols resolve from the process at load time.
 */
#include <Python.h>
#include <pthread.h>

struct cthread_job {
    PyObject *callable;  /* borrowed: the ctypes caller keeps it alive */
    int n;               /* calls to make */
    int done;            /* calls that returned without an exception */
};

static void *cthread_main(void *arg)
{
    struct cthread_job *job = arg;
    PyGILState_STATE state = PyGILState_Ensure();
    for (int i = 0; i < job->n; i++) {
        PyObject *res = PyObject_CallObject(job->callable, NULL);
        if (res == NULL) {
            PyErr_Print();
            break;
        }
        Py_DECREF(res);
        job->done++;
    }
    PyGILState_Release(state);
    return NULL;
}

/* Returns the number of successful calls, or -1 if no thread was started. */
int run_in_c_thread(PyObject *callable, int n)
{
    struct cthread_job job = { callable, n, 0 };
    pthread_t tid;
    if (pthread_create(&tid, NULL, cthread_main, &job) != 0)
        return -1;
    pthread_join(tid, NULL);
    return job.done;
}

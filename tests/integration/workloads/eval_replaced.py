"""run.py evalhook: the program puts CPython's default frame evaluator back
(as a debugger installing its own would replace ours) after before() x3;
after() x5 runs after that. Prints "done"."""
import ctypes


def before():
    pass


def after():
    pass


def main():
    for _ in range(3):
        before()
    api = ctypes.pythonapi
    api.PyInterpreterState_Main.restype = ctypes.c_void_p
    api._PyInterpreterState_SetEvalFrameFunc.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    api._PyInterpreterState_SetEvalFrameFunc.restype = None
    default = ctypes.cast(api._PyEval_EvalFrameDefault, ctypes.c_void_p).value
    api._PyInterpreterState_SetEvalFrameFunc(api.PyInterpreterState_Main(), default)
    for _ in range(5):
        after()
    print("done")


main()

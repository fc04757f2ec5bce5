"""Copied as sitecustomize.py by production.py (program_handler, before):
installs a SIGUSR2 handler during start-up, before libpyprof starts at the
cpython.run_file audit event."""
import os
import signal

got = []


def site_usr2(signum, frame):
    os.write(1, b"handled by sitecustomize\n")  # not print: may interrupt one
    got.append(signum)


signal.signal(signal.SIGUSR2, site_usr2)

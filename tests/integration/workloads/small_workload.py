"""Small workload: tick() is called 5 times.  With argument `chdir` the script
changes into a new subdirectory `elsewhere` before it ends (the profile must
still be written in the starting directory)."""
import os
import sys


def tick(i):
    return i * i


def main():
    total = sum(tick(i) for i in range(5))
    print("small workload:", total)
    if len(sys.argv) > 1 and sys.argv[1] == "chdir":
        os.makedirs("elsewhere", exist_ok=True)
        os.chdir("elsewhere")


main()

#!/usr/bin/env python3
"""CPU seconds per command in an uptime window, from trace-fig7b.sh's
sampler (`T <uptime>`, then `ps -e -o pid=,comm=,times=` every 2 s).

usage: cpu_by_process.py LOAD FROM_S TO_S
"""
import collections
import sys


def main():
    lo, hi = float(sys.argv[2]), float(sys.argv[3])
    samples = []  # (uptime, {pid: (comm, cpu seconds)})
    for line in open(sys.argv[1]):
        f = line.split()
        if f and f[0] == 'T':
            samples.append((float(f[1]), {}))
        elif samples and len(f) == 3 and f[0].isdigit() and f[2].isdigit():
            samples[-1][1][f[0]] = (f[1], int(f[2]))
    inside = [s for s in samples if lo <= s[0] <= hi]
    first, last = inside[0], inside[-1]
    by_comm = collections.Counter()
    for pid, (comm, cpu) in last[1].items():
        by_comm[comm] += cpu - first[1].get(pid, (comm, 0))[1]
    print(f'{first[0]:.0f}-{last[0]:.0f} s: {sum(by_comm.values())} CPU-s of '
          f'{2 * (last[0] - first[0]):.0f} (2 vCPUs)')
    for comm, cpu in by_comm.most_common(6):
        print(f'  {comm:20s} {cpu}')


if __name__ == '__main__':
    main()

#!/usr/bin/env python3
"""Where fio's read(2) and write(2) spend their time on a dfuse.ko mount, and
how long they stay inside the lease (which a release waits for), from a
trace of trace-fig7b.sh.

usage: ftrace_syscalls.py TRACE FROM_S TO_S
"""
import collections
import sys

from ftrace_calls import child_time, parse, quantiles, window


def main():
    calls = window(parse(sys.argv[1]), sys.argv[2:])
    for op in ('fuse_file_write_iter', 'fuse_file_read_iter', 'fuse_open', 'fuse_flush'):
        ops = [c for c in calls if c['name'] == op]
        print(op, quantiles([c['dur'] for c in ops]))
        names = {k['name'] for c in ops for k in c['children']} | {'dfuse_lease_enter'}
        for name in sorted(names):
            print('   ', name, quantiles([child_time(c, name) for c in ops]))
        print('    not in a traced callee',
              quantiles([c['dur'] - sum(k['dur'] for k in c['children']) for c in ops]))
        entered = []
        for c in ops:
            enter = [k for k in c['children'] if k['name'] == 'dfuse_lease_enter']
            leave = [k for k in c['children'] if k['name'] == 'dfuse_lease_exit']
            if enter and leave:
                entered.append((leave[-1]['start'] - enter[0]['start']) * 1e6 - enter[0]['dur'])
        print('    inside the lease (enter returned to exit)', quantiles(entered))
    enters = [c for c in calls if c['name'] == 'dfuse_lease_enter']
    print('dfuse_lease_enter', quantiles([c['dur'] for c in enters]))
    inside = collections.defaultdict(list)
    for c in enters:
        for k in c['children']:
            inside[k['name']].append(k['dur'])
    for name, durs in sorted(inside.items()):
        print('   ', name, quantiles(durs))


if __name__ == '__main__':
    main()

#!/usr/bin/env python3
"""Breaks dfuse.ko's lease releases and upcalls down, from a function_graph
trace (trace-fig7.sh: funcgraph-abstime, funcgraph-proc, trace_clock mono).

usage: ftrace_calls.py TRACE [FROM_S TO_S]   (uptime window, e.g. one point)
"""
import collections
import re
import sys

LINE = re.compile(r'^\s*([\d.]+) \|\s+(\d+)\)\s+(\S+)-(\d+)\s+\|\s*([!#*@$+ ]*)\s*([\d.]*)\s*'
                  r'(?:us)?\s*\|\s*(.*)$')


def parse(path):
    """Every traced call: dicts with name, start (s), dur (us), comm, children."""
    stacks = collections.defaultdict(list)
    calls = []
    for raw in open(path):
        m = LINE.match(raw)
        if not m:
            continue
        ts, _cpu, comm, pid, _mark, dur, fn = m.groups()
        fn = fn.strip()
        name = fn.split('(')[0].replace(' [dfuse]', '')
        stack = stacks[pid]
        if fn.endswith('{'):  # entry of a call with traced callees
            stack.append({'name': name, 'start': float(ts), 'comm': comm, 'children': []})
            continue
        if fn.startswith('}'):  # its return
            if not stack:
                continue
            call = stack.pop()
            call['dur'] = float(dur)
        elif fn.endswith(';'):  # a leaf
            call = {'name': name, 'start': float(ts), 'dur': float(dur), 'comm': comm,
                    'children': []}
        else:
            continue
        if stack:
            stack[-1]['children'].append(call)
        calls.append(call)
    return calls


def quantiles(us):
    """'n=.. p10 p50 p90 p99 max sum' of durations in microseconds, as ms."""
    if not us:
        return 'n=0'
    xs = sorted(us)
    n = len(xs)
    p = lambda f: xs[min(n - 1, int(f * n))] / 1000
    return (f'n={n} p10={p(.1):.2f} p50={p(.5):.2f} p90={p(.9):.2f} p99={p(.99):.2f} '
            f'max={xs[-1] / 1000:.1f} sum={sum(xs) / 1e6:.2f}s (ms)')


def child_time(call, name):
    return sum(k['dur'] for k in call['children'] if k['name'] == name)


def window(calls, argv):
    lo = float(argv[0]) if argv else 0
    hi = float(argv[1]) if len(argv) > 1 else float('inf')
    return [c for c in calls if lo <= c['start'] <= hi]


def main():
    calls = window(parse(sys.argv[1]), sys.argv[2:])
    releases = [c for c in calls if c['name'] == 'dfuse_lease_release']
    print('release', quantiles([c['dur'] for c in releases]))
    for part in ('dfuse_lease_linger', 'dfuse_write_back', 'invalidate_inode_pages2'):
        print(' ', part, quantiles([child_time(c, part) for c in releases]))
    # What no traced callee covers: waiting for the entered tasks (users)
    # and for a release still running.
    print('  residual (wait users / previous release)',
          quantiles([c['dur'] - sum(k['dur'] for k in c['children']) for c in releases]))
    write_backs = [c for c in calls if c['name'] == 'dfuse_write_back']
    for part in ('filemap_fdatawrite', 'filemap_fdatawait_keep_errors', 'sync_inode_metadata'):
        print('   wb.' + part, quantiles([child_time(c, part) for c in write_backs]))
    print('   wb residual (wait WRITE replies)',
          quantiles([c['dur'] - sum(k['dur'] for k in c['children']) for c in write_backs]))
    print('upcall', quantiles([c['dur'] for c in calls if c['name'] == 'dfuse_lease_upcall']))


if __name__ == '__main__':
    main()

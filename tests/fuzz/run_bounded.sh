#!/bin/sh
# run_bounded.sh TARGET SEED_DIR SECONDS ARTIFACT_PREFIX
#
# Runs a libFuzzer target over its seed corpus, then lets it explore for
# SECONDS more, with new inputs kept in a scratch corpus (the seeds in the
# repository stay as they are). Fails on any crash, leak, sanitizer report,
# timeout or excess memory; the input is kept as ARTIFACT_PREFIX*.
set -eu
if [ $# -ne 4 ]; then
  echo "usage: $0 TARGET SEED_DIR SECONDS ARTIFACT_PREFIX" >&2
  exit 2
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$1" -max_total_time="$3" -timeout=30 -rss_limit_mb=2048 -print_final_stats=1 \
  -artifact_prefix="$4" "$work" "$2"

#!/usr/bin/env bash
# Prints the ABI of Debian 12's current kernel (e.g. 6.1.0-56-amd64), read
# from the linux-image-amd64 meta-package: it moves at point releases and
# old packages leave the mirror, so it is never hard-coded.
set -euo pipefail
K=$(apt-cache depends linux-image-amd64 2>/dev/null |
	awk '/Depends: linux-image-[0-9]/ { sub("linux-image-", "", $2); print $2; exit }')
if [ -z "$K" ]; then
	echo "kernel-abi: cannot resolve linux-image-amd64 (run apt-get update)" >&2
	exit 1
fi
echo "$K"

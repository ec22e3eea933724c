#!/usr/bin/env bash
# Builds dfuse.ko: FUSE with kernel-level leases, for Debian 12's kernel.
#   kernel/build.sh [--out DIR] [--check]
# Derives the current Debian kernel ABI, installs its headers and the
# linux-source-6.1 package (apt), extracts and renames fs/fuse
# (make-source.sh), applies patches/*.patch, adds dfuse/*.[ch] and builds
# against the headers. Also fetches the matching kernel image (not
# installed: unpacked for the VM testbed). --check runs checkpatch.pl on
# the project's patch and sources. Output: DIR/dfuse.ko (default
# build/kernel/, relative to the repository).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
out=$repo/build/kernel
check=0
while [ $# -gt 0 ]; do
	case $1 in
	--out) out=$2; shift 2 ;;
	--check) check=1; shift ;;
	-h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "build.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
done
mkdir -p "$out"
out=$(cd "$out" && pwd)

K=$("$here/kernel-abi.sh")
echo "kernel: Debian ABI $K"
"$repo/tools/setup-deps.sh" kernel "linux-headers-$K"
build=/lib/modules/$K/build
[ -d "$build" ] || { echo "kernel: $build missing after installing headers" >&2; exit 1; }
tarball=$(ls /usr/src/linux-source-6.1.tar.xz)

# The kernel image the VM boots, unpacked (installing it would pull in
# systemd and initramfs-tools).
kroot=$out/kroot
if [ ! -e "$kroot/boot/vmlinuz-$K" ]; then
	echo "kernel: fetching linux-image-$K"
	rm -rf "$kroot" "$out"/linux-image-*.deb
	(cd "$out" && apt-get download -q -o APT::Sandbox::User=root "linux-image-$K" >/dev/null)
	dpkg-deb -x "$out"/linux-image-"$K"_*.deb "$kroot"
	depmod -b "$kroot" "$K"
	rm -f "$out"/linux-image-*.deb
fi

# Renamed pristine source, cached by the source package version.
version=$(dpkg-query -W -f='${Version}' linux-source-6.1)
pristine=$out/pristine-$version
if [ ! -f "$pristine/.done" ]; then
	echo "kernel: extracting fs/fuse from linux-source-6.1 $version"
	rm -rf "$out"/pristine-*
	"$here/make-source.sh" "$tarball" "$pristine"
	touch "$pristine/.done"
fi

src=$out/src
rm -rf "$src"
cp -a "$pristine" "$src"
rm -f "$src/.done" "$src/Kbuild"
for p in "$here"/patches/*.patch; do
	patch -s -p1 -d "$src" < "$p" || { echo "kernel: $(basename "$p") does not apply" >&2; exit 1; }
done
cp "$here"/dfuse/*.[ch] "$src/"
cat > "$src/Kbuild" <<'KBUILD'
obj-m := dfuse.o
dfuse-y := dev.o dir.o file.o inode.o control.o xattr.o acl.o readdir.o ioctl.o lease.o dirlease.o
dfuse-$(CONFIG_FUSE_DAX) += dax.o
KBUILD

echo "kernel: building dfuse.ko"
make -s -C "$build" M="$src" modules 2>&1 | grep -v "Skipping BTF generation" || true
[ -f "$src/dfuse.ko" ] || { echo "kernel: build failed" >&2; exit 1; }
cp "$src/dfuse.ko" "$out/dfuse.ko"
echo "$K" > "$out/kernel-abi"

if [ "$check" = 1 ]; then
	cp=$out/checkpatch/scripts/checkpatch.pl
	if [ ! -f "$cp" ]; then
		mkdir -p "$out/checkpatch"
		tar -xJf "$tarball" -C "$out/checkpatch" --strip-components=1 \
			linux-source-6.1/scripts/checkpatch.pl linux-source-6.1/scripts/spelling.txt \
			linux-source-6.1/scripts/const_structs.checkpatch
	fi
	"$cp" --no-tree --quiet --strict "$here"/patches/*.patch
	"$cp" --no-tree --quiet --strict -f "$here"/dfuse/*.[ch]
	echo "kernel: checkpatch clean"
fi
echo "kernel: $out/dfuse.ko"

#!/usr/bin/env bash
# Makes the renamed fs/fuse source tree that dfuse.ko is built from:
#   kernel/make-source.sh LINUX_SOURCE_TAR_XZ OUTDIR
# Extracts fs/fuse from Debian's linux-source package and renames what would
# clash with the stock fuse.ko (exports, misc device, file system types,
# sysfs directory, slab caches), so both modules can be loaded together.
# Nothing of the kernel's source is kept in the repository. Every edit is
# checked: a pattern that no longer matches (a new 6.1.x) fails loudly.
set -euo pipefail

tarball=${1:?usage: $0 LINUX_SOURCE_TAR_XZ OUTDIR}
out=${2:?usage: $0 LINUX_SOURCE_TAR_XZ OUTDIR}
files=(dev.c dir.c file.c inode.c control.c xattr.c acl.c readdir.c ioctl.c dax.c fuse_i.h)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
top=$(basename "$tarball" .tar.xz)  # linux-source-6.1
tar -xJf "$tarball" -C "$tmp" "$top/fs/fuse"
rm -rf "$out"
mkdir -p "$out"
for f in "${files[@]}"; do cp "$tmp/$top/fs/fuse/$f" "$out/"; done
cd "$out"

# edit FILE SED-EXPRESSION CHECK-REGEX: applies the edit, then requires the
# check to match (proof the edit happened).
edit() {
	sed -i -e "$2" "$1"
	grep -q -e "$3" "$1" || { echo "make-source: edit '$2' did not apply to $1" >&2; exit 1; }
}

# drop FILE LINE: deletes an exact line, which must have been there.
drop() {
	grep -qxF -e "$2" "$1" || { echo "make-source: '$2' not found in $1" >&2; exit 1; }
	grep -vxF -e "$2" "$1" > "$1.new" && mv "$1.new" "$1"
}

# No exported symbols: a second module exporting fuse's names cannot load.
for f in *.c; do sed -i -e '/^EXPORT_SYMBOL\(_GPL\)\?(.*);$/d' "$f"; done
if grep -q '^EXPORT_SYMBOL' ./*.c; then echo "make-source: exports left" >&2; exit 1; fi

# No autoload aliases: the copy must never be loaded for /dev/fuse.
drop dev.c 'MODULE_ALIAS_MISCDEV(FUSE_MINOR);'
drop dev.c 'MODULE_ALIAS("devname:fuse");'
edit dev.c 's/\.minor = FUSE_MINOR,/.minor = MISC_DYNAMIC_MINOR,/' 'MISC_DYNAMIC_MINOR'
edit dev.c 's/\.name  = "fuse",/.name  = "dfuse",/' '"dfuse"'
edit dev.c 's/kmem_cache_create("fuse_request"/kmem_cache_create("dfuse_request"/' '"dfuse_request"'
edit inode.c 's/\.name\t\t= "fuse",/.name\t\t= "dfuse",/' '= "dfuse",'
edit inode.c 's/^MODULE_ALIAS_FS("fuse");$/MODULE_ALIAS_FS("dfuse");/' 'MODULE_ALIAS_FS("dfuse")'
edit inode.c 's/\.name\t\t= "fuseblk",/.name\t\t= "dfuseblk",/' '= "dfuseblk",'
edit inode.c 's/^MODULE_ALIAS_FS("fuseblk");$/MODULE_ALIAS_FS("dfuseblk");/' 'MODULE_ALIAS_FS("dfuseblk")'
edit inode.c 's/kmem_cache_create("fuse_inode"/kmem_cache_create("dfuse_inode"/' '"dfuse_inode"'
edit inode.c 's/kobject_create_and_add("fuse", fs_kobj)/kobject_create_and_add("dfuse", fs_kobj)/' '"dfuse", fs_kobj'
edit control.c 's/\.name\t\t= "fusectl",/.name\t\t= "dfusectl",/' '"dfusectl"'
edit control.c 's/^MODULE_ALIAS_FS("fusectl");$/MODULE_ALIAS_FS("dfusectl");/' 'MODULE_ALIAS_FS("dfusectl")'
edit inode.c 's/^MODULE_DESCRIPTION("Filesystem in Userspace");$/MODULE_DESCRIPTION("Filesystem in Userspace with kernel-level leases (DFUSE)");/' 'DFUSE'

cat > Kbuild <<'KBUILD'
obj-m := dfuse.o
dfuse-y := dev.o dir.o file.o inode.o control.o xattr.o acl.o readdir.o ioctl.o
dfuse-$(CONFIG_FUSE_DAX) += dax.o
KBUILD
echo "make-source: renamed fs/fuse from $(basename "$tarball") in $out"

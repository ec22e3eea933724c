#!/usr/bin/env bash
# Installs every Debian 12 package the project needs. Idempotent: packages
# already present are not reinstalled, and apt is only asked when something
# is missing. Usage: tools/setup-deps.sh [build|test|kernel|all] [EXTRA_PACKAGE...]
# (kernel: what dfuse.ko and its qemu testbed need; kernel/build.sh adds the
# headers of the current Debian kernel ABI as an extra package.)
set -euo pipefail

build_pkgs=(cmake g++ make ninja-build pkg-config git
  libfuse3-dev fuse3 libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libcli11-dev libspdlog-dev nlohmann-json3-dev libgtest-dev libgmock-dev libbenchmark-dev
  libssl-dev)
test_pkgs=(python3 python3-pytest python3-matplotlib fio iproute2 attr procps psmisc util-linux
  etcd-server etcd-client ansible ansible-lint openssh-server openssh-client
  clang libclang-rt-14-dev python3-cryptography)
kernel_pkgs=(linux-headers-amd64 linux-source-6.1 qemu-system-x86 busybox-static cpio
  xz-utils kmod bc gcc make patch perl)

case "${1:-test}" in
  build) want=("${build_pkgs[@]}") ;;
  test) want=("${build_pkgs[@]}" "${test_pkgs[@]}") ;;
  kernel) want=("${kernel_pkgs[@]}") ;;
  all) want=("${build_pkgs[@]}" "${test_pkgs[@]}" "${kernel_pkgs[@]}") ;;
  *) echo "usage: $0 [build|test|kernel|all] [EXTRA_PACKAGE...]" >&2; exit 2 ;;
esac
want+=("${@:2}")

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#want[@]} packages present"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "setup: missing packages: ${missing[*]}; run as root (or install them) first" >&2
  exit 1
fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"

#!/bin/bash
# Builds the Linux guest's initramfs (cpio newc, gzip) from our own recipe:
#   /init           guest/linux/init (busybox sh)
#   /bin/busybox    from Debian's busybox-static:arm64 (fetch.sh); /bin/sh links to it
#   /bin/memwork    guest/linux/memwork.c, compiled here with aarch64-linux-gnu-gcc -static
#   /dev/console    character device 5 1: without it the kernel opens no console for /init,
#                   and /init prints nothing
# Usage: mkinitramfs.sh BUSYBOX OUT.cpio.gz. Installs cpio and the cross compiler if missing
# (Debian 12, as root), as the Makefile's `setup` target does for the rest.
set -euo pipefail

BUSYBOX=${1:?usage: mkinitramfs.sh BUSYBOX OUT.cpio.gz}
OUT=${2:?usage: mkinitramfs.sh BUSYBOX OUT.cpio.gz}
HERE=$(cd "$(dirname "$0")" && pwd)

missing=""
command -v cpio >/dev/null || missing="$missing cpio"
command -v aarch64-linux-gnu-gcc >/dev/null || missing="$missing gcc-aarch64-linux-gnu"
[ -e /usr/aarch64-linux-gnu/lib/libc.a ] || missing="$missing libc6-dev-arm64-cross"
if [ -n "$missing" ]; then
  echo "linux-artifacts: apt-get install$missing"
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing
fi

root=$(mktemp -d "$(dirname "$OUT")/initramfs.XXXXXX")
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,dev,proc,sys,mnt,tmp}

install -m 0755 "$BUSYBOX" "$root/bin/busybox"
# /bin/sh for the kernel to run /init with; /init installs the other applets' links itself
# (busybox --install: the host cannot run an arm64 busybox to ask it for its applet list).
ln -s busybox "$root/bin/sh"
aarch64-linux-gnu-gcc -static -O2 -s -Wall -Wextra -Werror -o "$root/bin/memwork" "$HERE/memwork.c"
install -m 0755 "$HERE/init" "$root/init"
# Needs root (mknod), as the rest of `make setup` does.
mknod -m 0600 "$root/dev/console" c 5 1

(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --owner=0:0 --quiet) | gzip -9n > "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
echo "linux-artifacts: $OUT ($(stat -c %s "$OUT") bytes)"

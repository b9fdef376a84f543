#!/bin/bash
# Fetches the Linux guest's pieces from Debian 12's arm64 archive into $OUT (target/linux):
#   Image          the kernel of the current linux-image-arm64 (a raw arm64 Image; zcat'ed if gzip)
#   busybox        busybox-static's /bin/busybox (statically linked: the initramfs needs nothing else)
#   kernel.version "<package> <version>" of the kernel used, for reports
# The .debs stay in $OUT/deb: a second run downloads nothing while the archive's current kernel is
# the one cached. Run as root on Debian 12 (it adds the arm64 architecture to dpkg if needed).
set -euo pipefail

OUT=${1:?usage: fetch.sh OUT_DIR}
DEB=$OUT/deb
mkdir -p "$DEB"

# dpkg must know arm64 before apt lists arm64 packages; update the lists only when they lack it.
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  echo "linux-artifacts: dpkg --add-architecture arm64"
  dpkg --add-architecture arm64
fi
if ! apt-cache show busybox-static:arm64 >/dev/null 2>&1; then
  echo "linux-artifacts: apt-get update (arm64 lists)"
  apt-get update -q
fi

# The current kernel and busybox packages and their versions, from apt's lists: the metapackage
# names the current ABI's kernel package (linux-image-6.1.0-N-arm64).
resolve() {
  kpkg=$(apt-cache depends linux-image-arm64:arm64 | sed -n 's/^ *Depends: \(linux-image-[0-9][^:]*\):arm64$/\1/p' | head -n1)
  if [ -z "$kpkg" ]; then
    echo "linux-artifacts: cannot tell the kernel package from 'apt-cache depends linux-image-arm64:arm64'" >&2
    exit 1
  fi
  kver=$(apt-cache policy "$kpkg:arm64" | sed -n 's/^ *Candidate: //p')
  bver=$(apt-cache policy busybox-static:arm64 | sed -n 's/^ *Candidate: //p')
}

# $1 package, $2 version: the cached .deb's path on stdout, downloading it first if absent.
# apt-get names files <pkg>_<version with ':' as %3a>_arm64.deb.
deb_of() {
  local file
  file="$DEB/$1_${2//:/%3a}_arm64.deb"
  if [ ! -s "$file" ]; then
    echo "linux-artifacts: apt-get download $1:arm64=$2" >&2
    # apt's sandbox user (_apt) cannot write here: download as root, without apt's warning.
    (cd "$DEB" && apt-get download -q -o APT::Sandbox::User=root "$1:arm64=$2" >&2)
  fi
  [ -s "$file" ] || { echo "linux-artifacts: $file missing after download" >&2; return 1; }
  echo "$file"
}

fetch_debs() {
  kdeb=$(deb_of "$kpkg" "$kver") || return 1
  bdeb=$(deb_of busybox-static "$bver") || return 1
}

resolve
if ! fetch_debs; then
  # Old lists can name a version the archive has dropped (security updates replace kernels).
  echo "linux-artifacts: download failed: apt-get update, then once more"
  apt-get update -q
  resolve
  fetch_debs
fi

tmp=$(mktemp -d "$OUT/unpack.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# Only the two files we need (the kernel package also holds ~300 MB of modules).
dpkg-deb --fsys-tarfile "$kdeb" | tar -x -C "$tmp" --wildcards './boot/vmlinuz-*'
dpkg-deb --fsys-tarfile "$bdeb" | tar -x -C "$tmp" ./bin/busybox

vmlinuz=$(echo "$tmp"/boot/vmlinuz-*)
if [ "$(head -c2 "$vmlinuz" | od -An -tx1 | tr -d ' ')" = "1f8b" ]; then
  zcat "$vmlinuz" > "$tmp/Image"
else
  cp "$vmlinuz" "$tmp/Image"
fi
# An arm64 Image has "ARM\x64" at offset 0x38 (Documentation/arch/arm64/booting.rst).
if [ "$(dd if="$tmp/Image" bs=1 skip=56 count=4 status=none | od -An -tx1 | tr -d ' ')" != "41524d64" ]; then
  echo "linux-artifacts: $vmlinuz is not an arm64 Image (no ARM\\x64 magic at 0x38)" >&2
  exit 1
fi

mv "$tmp/Image" "$OUT/Image"
mv "$tmp/bin/busybox" "$OUT/busybox"
# The package's own dates would make both look older than this script to make: date them now.
touch "$OUT/Image" "$OUT/busybox"
echo "$kpkg $kver" > "$OUT/kernel.version"
echo "linux-artifacts: $OUT/Image from $kpkg $kver, $OUT/busybox from busybox-static $bver"

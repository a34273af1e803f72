#!/usr/bin/env bash
# Makes a local Debian base image from Debian's packages, for machines that cannot pull one
# from a registry: debootstrap --variant=minbase, then docker import. Prints the tag.
#
#   docker/make-base.sh                 # storgo-base:bookworm
#   BASE_TAG=my/base:1 SUITE=trixie docker/make-base.sh
#
# Needs root (debootstrap), debootstrap and a Debian mirror (MIRROR, default deb.debian.org).
# An image with that tag already present is kept.
set -euo pipefail
tag=${BASE_TAG:-storgo-base:bookworm}
suite=${SUITE:-bookworm}
mirror=${MIRROR:-http://deb.debian.org/debian}

if docker image inspect "$tag" >/dev/null 2>&1; then
  echo "$tag"
  exit 0
fi
command -v debootstrap >/dev/null || { echo "make-base: debootstrap is not installed (apt-get install debootstrap)" >&2; exit 1; }
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase "$suite" "$root" "$mirror" >&2
# Smaller: no package lists, docs, caches, translations or character-set converters in the
# image (storgo prints English and UTF-8 only; glibc needs gconv only for iconv to other
# charsets). About 60 MB instead of 106.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/cache/debconf/*-old \
  "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
  "$root"/usr/share/locale/* "$root"/usr/share/i18n/* "$root"/usr/lib/*-linux-gnu/gconv
tar -C "$root" -c . | docker import --change 'CMD ["/bin/bash"]' - "$tag" >&2
echo "$tag"

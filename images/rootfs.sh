#!/usr/bin/env bash
# Assembles the runtime root filesystem of one image from images/runtime-files.txt: the shared
# libraries BINARY needs, CA certificates, users, /tmp. The binary itself is not copied (it is
# the image's second layer). Run by the Dockerfile's builder stage and by scripts/build-images.sh,
# so every image is made of the same files.
# Usage: images/rootfs.sh LIST OUT-DIR BINARY     (OUT-DIR must not exist yet)
set -euo pipefail

if [ $# -ne 3 ]; then
  echo "usage: $0 LIST OUT-DIR BINARY" >&2
  exit 2
fi
list=$1 out=$2 binary=$3
repo=$(cd "$(dirname "$0")/.." && pwd)

fail() {
  echo "rootfs.sh: $*" >&2
  exit 1
}

[ -r "$list" ] || fail "cannot read the runtime list $list"
[ -x "$binary" ] || fail "$binary is not an executable"
[ ! -e "$out" ] || fail "$out exists already"

# The libraries the binary loads, as "soname path" (ldd prints "name => path (addr)" for a library
# and "path (addr)" for the loader; the vDSO has no file).
needed=$(ldd "$binary" | awk '
  $2 == "=>" && $3 == "not" { print "MISSING " $1; next }
  $2 == "=>"                { print $1 " " $3; next }
  $1 ~ /^\//                { n = split($1, parts, "/"); print parts[n] " " $1 }
') || fail "ldd $binary failed (is it a dynamically linked binary of this machine's architecture?)"
if grep -q '^MISSING ' <<<"$needed"; then
  fail "$binary needs libraries this system does not have: $(sed -n 's/^MISSING //p' <<<"$needed" | tr '\n' ' ')"
fi

# `install -D` copies a file (resolving symlinks) with its parent directories, root-owned 0755.
copy() { # SOURCE DEST MODE
  install -D -m "$3" "$(readlink -f "$1")" "$out$2"
}

# Debian records paths as packaged (/lib/...); on a merged-/usr system the file may be found under
# /usr as well. Either proves the library is the package's.
owned_by() { # PATH PACKAGE
  local path=$1 package=$2 candidate
  for candidate in "$path" "$(readlink -f "$path")" "${path#/usr}" "/usr${path}"; do
    if dpkg-query -S "$candidate" 2>/dev/null | grep -q "^$package\(:[a-z0-9]*\)\?: "; then
      return 0
    fi
  done
  return 1
}

# Directories that `install -D` creates get 0755 whatever the caller's umask.
umask 022
mkdir -p "$out"
declare -A listed=()
line_no=0
while IFS= read -r line || [ -n "$line" ]; do
  line_no=$((line_no + 1))
  line=${line%%#*}
  read -r kind path arg extra <<<"$line" || true
  [ -n "${kind:-}" ] || continue
  where="$list:$line_no"
  if [ -z "${path:-}" ] || [ -z "${arg:-}" ] || [ -n "${extra:-}" ]; then
    fail "$where: expected '$kind PATH ARGUMENT', got '$line'"
  fi
  case $kind in
    lib)
      listed[$path]=1
      library=$(awk -v soname="$path" '$1 == soname { print $2 }' <<<"$needed")
      [ -n "$library" ] || continue # another architecture's loader, or not needed by this binary
      owned_by "$library" "$arg" || fail "$where: $library ($path) is not from the Debian package $arg"
      copy "$library" "$library" 0755
      ;;
    file)
      [ -r "$path" ] || fail "$where: $path does not exist here (Debian package $arg installed?)"
      dpkg-query -W -f='${Status}' "$arg" 2>/dev/null | grep -q 'install ok installed' ||
        fail "$where: the Debian package $arg is not installed"
      copy "$path" "$path" 0644
      ;;
    repo)
      [ -r "$repo/$arg" ] || fail "$where: $repo/$arg does not exist"
      copy "$repo/$arg" "$path" 0644
      ;;
    dir)
      [[ $arg =~ ^[0-7]{3,4}$ ]] || fail "$where: '$arg' is not an octal mode"
      install -d -m "$arg" "$out$path"
      ;;
    *)
      fail "$where: unknown kind '$kind' (lib, file, repo or dir)"
      ;;
  esac
done <"$list"

while read -r soname _; do
  [ -n "${listed[$soname]:-}" ] ||
    fail "$binary needs $soname, which $list does not list: add it with its Debian package (dpkg -S $soname)"
done <<<"$needed"

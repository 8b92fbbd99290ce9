# Sourced by the install scripts (not run). `apt_install [APT-OPTION...] PACKAGE...` installs
# Debian packages quietly, with sudo when not root, after an `apt-get update` (once per script run,
# or again after `apt_sources_changed`).
_abstore_sudo() {
  if [ "$(id -u)" -ne 0 ]; then sudo "$@"; else "$@"; fi
}

apt_sources_changed() {
  _abstore_apt_updated=""
}

apt_install() {
  echo "$(basename "$0" .sh): apt-get install $*"
  if [ -z "${_abstore_apt_updated:-}" ]; then
    _abstore_sudo apt-get update -qq
    _abstore_apt_updated=1
  fi
  _abstore_sudo env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# `apt_add_source FILE LINE`: an apt source of its own (e.g. backports for one package).
apt_add_source() {
  if [ ! -f "$1" ]; then
    echo "$2" | _abstore_sudo tee "$1" >/dev/null
    apt_sources_changed
  fi
}

# Sourced by the scripts here: apt_install WHO PACKAGE... installs the
# Debian packages given (as root with apt-get), or prints the command to
# run and exits 1. WHO names the calling script in its messages. Does
# nothing when no package is given.
apt_install() {
  local who=$1
  shift
  (($#)) || return 0
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "$who: installing $*" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
  else
    echo "$who: missing $*; install with:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y $*" >&2
    exit 1
  fi
}

# Sourced by bin/run and bin/test: make sure the machine has what Millrace needs.
# Idempotent and quiet when everything is already there.

MILLRACE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$MILLRACE_ROOT/.venv"

log() { printf '\033[1m==>\033[0m %s\n' "$*" >&2; }

apt_install() {
  # apt_install PACKAGE... : install Debian packages that are missing (needs root).
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  log "Installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

ensure_venv() {
  # ensure_venv LOCKFILE : a virtualenv in .venv with exactly the pinned packages.
  local lock="$1"
  local stamp="$VENV/.installed-$(basename "$lock")"
  local want
  # The stamp covers every lock file, since one includes another with -r.
  want="$(cat "$MILLRACE_ROOT"/requirements*.lock | sha256sum | cut -d' ' -f1)"
  if [ ! -x "$VENV/bin/python" ]; then
    log "Creating the virtualenv in .venv"
    python3 -m venv "$VENV"
  fi
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    log "Installing Python packages from $(basename "$lock")"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$lock"
    # The project itself, editable: `import pipelines.sdk` works from any folder in the venv.
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -e "$MILLRACE_ROOT"
    echo "$want" > "$stamp"
  fi
}
